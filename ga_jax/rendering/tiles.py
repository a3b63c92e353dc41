"""Stage 2 of rendering: bin splats into screen tiles, sorted by (tile, depth)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kernels.config import TileConfig
from kernels.types import Splats, TileIntersections


def tile_rects(splats: Splats, height: int, width: int, config: TileConfig) -> jax.Array:
    """[N, 4] int32 tile rectangle (x0, y0, x1, y1), half-open, empty for invalid splats."""
    rows, cols = config.grid(height, width)
    ts = float(config.tile_size)
    lo = jnp.floor((splats.means2d - splats.extents) / ts)
    hi = jnp.floor((splats.means2d + splats.extents) / ts) + 1
    # Clip in float first: far-off-screen splats can have coordinates beyond int32.
    grid = jnp.array([cols, rows], jnp.float32)
    lo = jnp.clip(lo, 0, grid).astype(jnp.int32)
    hi = jnp.clip(hi, 0, grid).astype(jnp.int32)
    hi = jnp.where(splats.valid[:, None], jnp.maximum(hi, lo), lo)
    return jnp.concatenate([lo, hi], axis=-1)


def default_capacity(num_surfels: int, height: int, width: int, config: TileConfig) -> int:
    """A capacity that holds every pair for surfels a few tiles wide (overflow is reported)."""
    rows, cols = config.grid(height, width)
    return int(8 * num_surfels + 2 * rows * cols)


@functools.partial(jax.jit, static_argnames=("height", "width", "config", "capacity"))
def intersect_tiles(
    splats: Splats,
    height: int,
    width: int,
    config: TileConfig = TileConfig(),
    capacity: int | None = None,
) -> TileIntersections:
    """Sorted surfel-tile pairs of one view (splats [N]); vmap for batches.

    Pairs are ordered by tile, then centre depth, then surfel index (the order of the 2DGS
    reference's 64-bit tile|depth keys, with ties broken deterministically). `capacity` is the
    static number of pair slots; the true count is returned so callers can detect overflow.
    """
    num = splats.depths.shape[0]
    rows, cols = config.grid(height, width)
    num_tiles = rows * cols
    if capacity is None:
        capacity = default_capacity(num, height, width, config)

    rect = jax.lax.stop_gradient(tile_rects(splats, height, width, config))
    span_x = rect[:, 2] - rect[:, 0]
    counts = span_x * (rect[:, 3] - rect[:, 1])
    order = jnp.argsort(
        jnp.where(splats.valid, jax.lax.stop_gradient(splats.depths), jnp.inf), stable=True
    ).astype(jnp.int32)
    counts_sorted = counts[order]
    ends = jnp.cumsum(counts_sorted)
    starts = ends - counts_sorted
    total = ends[-1] if num else jnp.int32(0)

    slot = jnp.arange(capacity, dtype=jnp.int32)
    rank = jnp.minimum(jnp.searchsorted(ends, slot, side="right"), max(num - 1, 0))
    rank = rank.astype(jnp.int32)
    local = slot - starts[rank]
    surfel = order[rank]
    width_tiles = jnp.maximum(span_x[surfel], 1)
    tile = (rect[surfel, 1] + local // width_tiles) * cols + rect[surfel, 0] + local % width_tiles
    in_use = slot < total

    if num_tiles * max(num, 1) < np.iinfo(np.int32).max:
        # One int32 key (tile, depth rank) sorts ~5x faster than a multi-operand sort on CPU.
        key = jnp.where(in_use, tile * num + rank, np.iinfo(np.int32).max)
        key = jnp.sort(key)
        used = key != np.iinfo(np.int32).max
        tile_sorted = jnp.where(used, key // max(num, 1), num_tiles)
        surfel_sorted = jnp.where(used, order[key % max(num, 1)], -1)
    else:
        tile_key = jnp.where(in_use, tile, num_tiles)
        tile_sorted, rank_sorted = jax.lax.sort((tile_key, rank), num_keys=2)
        surfel_sorted = jnp.where(tile_sorted < num_tiles, order[rank_sorted], -1)

    tile_index = jnp.arange(num_tiles, dtype=jnp.int32)
    range_start = jnp.searchsorted(tile_sorted, tile_index, side="left")
    range_end = jnp.searchsorted(tile_sorted, tile_index, side="right")
    return TileIntersections(
        surfel_ids=surfel_sorted.astype(jnp.int32),
        tile_ids=tile_sorted.astype(jnp.int32),
        tile_ranges=jnp.stack([range_start, range_end], axis=-1).astype(jnp.int32),
        count=total.astype(jnp.int32),
    )
