"""The data every compositing implementation takes and returns (one camera view)."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Splats(NamedTuple):
    """Surfels projected into one view (output of ga_jax.rendering.project_surfels).

    Pixel convention: pixel (row i, col j) covers [j, j+1) x [i, i+1) and its centre is at
    (x, y) = (j + 0.5, i + 0.5).
    """

    means2d: jax.Array  # [N, 2] low-pass filter centre: the 3-sigma ellipse's box centre, px
    transforms: jax.Array  # [N, 3, 3] rows T_u, T_v, T_w: splat (u, v, 1) -> homogeneous pixel
    depths: jax.Array  # [N] camera z of the surfel centre (the sort key)
    normals: jax.Array  # [N, 3] unit normal in camera space, flipped to face the camera
    opacities: jax.Array  # [N] in [0, 1]
    colors: jax.Array  # [N, D] any number of channels
    extents: jax.Array  # [N, 2] half size (x, y) of a box about means2d holding alpha >= 1/255
    valid: jax.Array  # [N] bool: False for culled surfels (behind near plane, degenerate)


class CompositeOutput(NamedTuple):
    """Per-pixel results for one view, float32."""

    color: jax.Array  # [H, W, D] sum w_i c_i + T_final * background
    alpha: jax.Array  # [H, W] 1 - T_final
    depth: jax.Array  # [H, W] sum w_i z_i (not divided by alpha)
    median_depth: jax.Array  # [H, W] z of the last surfel composited while T > 0.5, else 0
    normal: jax.Array  # [H, W, 3] sum w_i n_i, camera space (not normalised)
    distortion: jax.Array  # [H, W] sum_{i<j} w_i w_j (m_i - m_j)^2


class TileIntersections(NamedTuple):
    """Surfel-tile pairs of one view sorted by (tile, centre depth, surfel index).

    Built by ga_jax.rendering.intersect_tiles with a static capacity M; slots past `count`
    hold surfel id -1 and tile id n_tiles.
    """

    surfel_ids: jax.Array  # [M] int32
    tile_ids: jax.Array  # [M] int32
    tile_ranges: jax.Array  # [n_tiles, 2] int32 [start, end) into the sorted slots
    count: jax.Array  # [] int32 pairs found; > M means the capacity overflowed
