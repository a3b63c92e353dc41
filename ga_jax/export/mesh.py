"""A triangle mesh of the surfels, fused from rendered depth (TSDF fusion, as 2DGS extracts
its meshes), written as OBJ or GLB with per-vertex colours.

1. Render the surfels (render_surfels through ga_jax.export.media.render_views) from `views`
   orbit cameras on each ring of `elevations_deg` (ga_jax.rendering.cameras.orbit_cameras:
   OpenCV cameras at distance `radius` looking at the origin, the data's intrinsics). A pixel
   sees the surface where its alpha > alpha_threshold (0.5), at the expected depth
   RenderOutput.depth / alpha.
   That depth is camera z (the z of each ray-surfel hit, composited: kernels/reference.py),
   not the distance along the ray, so it compares directly with a voxel's camera z.
2. Integrate into a truncated signed distance grid of resolution^3 voxels over the box
   [-b, b]^3 (voxel size h = 2 b / resolution, centres at -b + (i + 0.5) h), b = 0.5 (the
   data's box) or, when drawn surfels (opacity >= 0.5) reach beyond it, their largest
   |coordinate| plus a margin, rounded up to 0.05; the cameras' distance grows with b so
   that they frame the box alike (a generated object can overshoot the data's box). Each voxel
   centre is projected into each view (pixel (row i, col j) covers x in [j, j + 1), y in
   [i, i + 1)); with sdf = depth - z and truncation tau = truncation_voxels h, a view
   observes
     clip(sdf / tau, -1, 1)  where the pixel sees the surface and sdf >= -tau
                             (sdf > tau: free space in front of the surface, +1);
     +1                      where the pixel sees nothing (free space carving: the ray
                             leaves the object's silhouette, so every voxel on it is outside);
     nothing                 behind the surface (sdf < -tau: occluded), outside the image,
                             or where the pixel's depth puts its surface point outside the
                             box grown by tau (an untrusted depth, below).
   The TSDF is the plain average of the observations (weight 1 each). Untrusted depths: a
   surfel seen edge-on at a silhouette can win the rasterizer's low-pass filter while its
   ray-plane hit lies far away (kernels/reference.py), and the pixel's composited depth
   with it (a small fraction of the seen pixels on a sphere, but up to 100 units deep). Such a
   pixel would carve the object's inside, so it is left out.
3. Extract the zero level set with skimage.measure.marching_cubes, only over observed voxels
   (the object's interior is never observed, and treating it as either sign would make a
   second surface), inside a one-voxel border of +1 that closes surfaces cut by the box.
   Triangles wind counter-clockwise seen from outside (normals point out, volume > 0).
4. Colour each vertex with the colour of the nearest surfel centre among the surfels the
   rasterizer can draw (opacity >= 1/255).

Defaults: 128^3 voxels, 3 rings x 8 views of 256 px (accuracy on a sphere:
tests/export/test_mesh.py). fuse_mesh raises ValueError ("no surface found") when no pixel
sees the surfels or the fused grid has no zero crossing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from ga_jax.export.media import render_views
from ga_jax.export.ply import checked_surfel_arrays
from ga_jax.export.points import point_colours
from ga_jax.rendering.cameras import Cameras, orbit_cameras
from ga_jax.rendering.surfels import Surfels

if TYPE_CHECKING:  # imported where used: `import ga_jax.export` stays light
    import trimesh

__all__ = [
    "MESH_SUFFIXES",
    "fuse_mesh",
    "fuse_tsdf",
    "fusion_cameras",
    "fusion_half_box",
    "voxel_centres",
    "write_mesh",
]

MESH_SUFFIXES = (".obj", ".glb")
HALF_BOX = 0.5  # the object box [-0.5, 0.5]^3 (the data's normalisation), the smallest used
# skimage calls the orientation of our grid (negative inside) "descent": its faces then wind
# counter-clockwise seen from outside (checked by the volume sign in tests/export/test_mesh.py).
GRADIENT = "descent"


def fusion_cameras(
    views: int = 8,
    size: int = 256,
    elevations_deg: Sequence[float] = (-45.0, 0.0, 45.0),
    radius: float = 1.7,
) -> Cameras:
    """`views` orbit cameras (size x size pixels) on each ring of elevations_deg, one batch
    [len(elevations_deg) * views]; each ring's azimuths start at 0."""
    rings = [orbit_cameras(views, size, size, radius, float(e)) for e in elevations_deg]
    return Cameras(
        jnp.concatenate([c.cam2world for c in rings]),
        jnp.concatenate([c.intrinsics for c in rings]),
        size,
        size,
    )


def voxel_centres(resolution: int, half: float = HALF_BOX) -> np.ndarray:
    """float64 [R, R, R, 3] voxel centres of the box [-half, half]^3, indexed [x, y, z]."""
    h = 2 * half / resolution
    axis = -half + (np.arange(resolution) + 0.5) * h
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def fusion_half_box(means: np.ndarray, opacities: np.ndarray, margin: float = 0.02) -> float:
    """The half-width of the fusion box: HALF_BOX, or the drawn surfels' (opacity >= 0.5)
    largest |coordinate| plus `margin`, rounded up to 0.05, when that is larger."""
    drawn = np.asarray(means)[np.asarray(opacities) >= 0.5]
    reach = float(np.max(np.abs(drawn))) + margin if drawn.size else 0.0
    return max(HALF_BOX, float(np.ceil(reach / 0.05 - 1e-9) * 0.05))


def fuse_tsdf(
    depth: np.ndarray,
    alpha: np.ndarray,
    cameras: Cameras,
    resolution: int = 128,
    truncation_voxels: float = 3.0,
    alpha_threshold: float = 0.5,
    half: float = HALF_BOX,
) -> tuple[np.ndarray, np.ndarray]:
    """TSDF fusion (module docstring, step 2) of depth maps [C, H, W] (camera z where the
    pixel sees the surface; any value elsewhere) with alpha [C, H, W] from cameras [C], over
    the box [-half, half]^3.

    Returns tsdf float32 [R, R, R] in [-1, 1] (+1 where unobserved; negative inside) and the
    number of observations int32 [R, R, R] per voxel, both indexed [x, y, z].
    """
    depth = np.asarray(depth, np.float64)
    alpha = np.asarray(alpha, np.float64)
    num_views, height, width = alpha.shape
    if depth.shape != alpha.shape or (cameras.height, cameras.width) != (height, width):
        raise ValueError(
            f"fuse_tsdf: depth {depth.shape} and alpha {alpha.shape}: expected the same shape "
            f"[C, {cameras.height}, {cameras.width}] as the cameras"
        )
    h = 2 * half / resolution
    tau = truncation_voxels * h
    axis = -half + (np.arange(resolution) + 0.5) * h  # voxel_centres' coordinates

    def affine(weights: np.ndarray, offset: float) -> np.ndarray:
        """w . p + offset at every voxel centre p, flat [R^3]: separable on the grid, so
        three broadcast 1-D terms instead of a [R^3, 3] matrix product per view."""
        x, y, z = (w * axis for w in weights)
        return (x[:, None, None] + y[None, :, None] + z[None, None, :] + offset).reshape(-1)

    total = np.zeros(resolution**3)
    count = np.zeros(resolution**3, np.int32)
    world2cam = np.asarray(cameras.world2cam, np.float64)
    cam2world = np.asarray(cameras.cam2world, np.float64)
    intrinsics = np.asarray(cameras.intrinsics, np.float64)
    # Each pixel centre's ray at camera z = 1, [C, H, W, 3] (pixel centres at j + 0.5, i + 0.5).
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([cols, rows, np.ones_like(cols)], axis=-1)
    rays = np.einsum("cij,hwj->chwi", np.linalg.inv(intrinsics), pixels)
    surface = np.einsum("cij,chwj->chwi", cam2world[:, :3, :3], rays * depth[..., None])
    surface = surface + cam2world[:, None, None, :3, 3]
    with np.errstate(invalid="ignore"):
        trusted = np.all(np.abs(surface) <= half + tau, axis=-1)
    seen_all = alpha > alpha_threshold
    for v in range(num_views):
        # Camera z and the homogeneous pixel coordinates K (R p + t) of every voxel centre.
        project = intrinsics[v] @ world2cam[v, :3]  # [3, 4]
        z = affine(world2cam[v, 2, :3], world2cam[v, 2, 3])
        ahead = z > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            col = np.floor(affine(project[0, :3], project[0, 3]) / z)
            row = np.floor(affine(project[1, :3], project[1, 3]) / z)
        inside = ahead & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        idx = np.flatnonzero(inside)
        r, c = row[idx].astype(np.int64), col[idx].astype(np.int64)
        seen = seen_all[v, r, c]
        sdf = np.where(seen, depth[v, r, c] - z[idx], np.inf)  # inf: the ray misses
        use = (sdf >= -tau) & (trusted[v, r, c] | ~seen)
        idx = idx[use]
        total[idx] += np.minimum(sdf[use] / tau, 1.0)
        count[idx] += 1
    tsdf = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    shape = (resolution,) * 3
    return tsdf.reshape(shape).astype(np.float32), count.reshape(shape)


def _cubes(observed: np.ndarray) -> np.ndarray:
    """Marching cubes' mask: True at a cube's far corner [i + 1, j + 1, k + 1] when all 8 of
    its corners are observed. skimage (0.26) tests the mask at that corner only, so a cube
    with an unobserved corner would otherwise still be meshed (tests/export/test_mesh.py
    would see the second surface)."""
    r = observed.shape[0] - 1
    mask = np.zeros_like(observed)
    mask[1:, 1:, 1:] = np.logical_and.reduce(
        [observed[i : i + r, j : j + r, k : k + r] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    )
    return mask


def _no_surface(detail: str) -> ValueError:
    return ValueError(f"fuse_mesh: no surface found: {detail}")


def fuse_mesh(
    surfels: Surfels,
    *,
    resolution: int = 128,
    views: int = 8,
    size: int = 256,
    elevations_deg: Sequence[float] = (-45.0, 0.0, 45.0),
    radius: float = 1.7,
    truncation_voxels: float = 3.0,
    alpha_threshold: float = 0.5,
    backend: str = "xla",
) -> trimesh.Trimesh:
    """A trimesh.Trimesh of one object's surfels (module docstring): vertices float64 [V, 3]
    in world units inside the fusion box (fusion_half_box), faces int [F, 3] wound outward,
    vertex colours uint8 RGBA [V, 4] of the nearest drawable surfel. radius: the cameras'
    distance for the [-0.5, 0.5]^3 box, scaled with a larger fusion box.

    surfels: one object's Surfels (means [N, 3], quaternions [N, 4] (w, x, y, z), scales
    [N, 2], opacities [N], colors [N, 3] rgb). backend: render_surfels' backend ('native'
    is the fastest on CPU). Raises ValueError naming the field for bad surfels, and
    "fuse_mesh: no surface found: ..." when nothing is rendered or no zero crossing is fused.
    """
    import trimesh
    from skimage.measure import marching_cubes

    arrays = checked_surfel_arrays(surfels, "fuse_mesh")
    if arrays["means"].shape[0] == 0:
        raise _no_surface("surfels: expected at least one surfel, got none")
    half = fusion_half_box(arrays["means"], arrays["opacities"])
    cameras = fusion_cameras(views, size, elevations_deg, radius * half / HALF_BOX)
    out = render_views(surfels, cameras, backend=backend, where="fuse_mesh")
    alpha = np.asarray(out.alpha)
    if not np.any(alpha > alpha_threshold):
        raise _no_surface(
            f"no pixel of the {alpha.shape[0]} views has alpha > {alpha_threshold} (are the "
            f"surfels transparent, tiny, or outside the cameras' view of [-{half}, {half}]^3?)"
        )
    depth = np.asarray(out.expected_depth())
    tsdf, count = fuse_tsdf(
        depth, alpha, cameras, resolution, truncation_voxels, alpha_threshold, half
    )
    observed = count > 0
    if not (np.any(tsdf[observed] < 0) and np.any(tsdf[observed] > 0)):
        raise _no_surface(f"the fused TSDF has no zero crossing inside [-{half}, {half}]^3")
    # A +1 border closes surfaces that the box cuts; it counts as observed.
    tsdf = np.pad(tsdf, 1, constant_values=1.0)
    observed = np.pad(observed, 1, constant_values=True)
    h = 2 * half / resolution
    try:
        verts, faces, _, _ = marching_cubes(
            tsdf, level=0.0, spacing=(h, h, h), gradient_direction=GRADIENT, mask=_cubes(observed)
        )
    except (ValueError, RuntimeError) as e:
        raise _no_surface(f"marching cubes: {e}") from e
    if len(faces) == 0:
        raise _no_surface("marching cubes found no triangles on the fused TSDF")
    # Padded index p is voxel p - 1, centred at -half + (p - 0.5) h.
    verts = verts + (-half - 0.5 * h)
    drawable = arrays["opacities"] >= 1 / 255
    source = surfels
    if np.any(drawable):
        source = Surfels(**{name: value[drawable] for name, value in arrays.items()})
    rgb = point_colours(verts, source)
    colours = np.concatenate(
        [np.round(np.clip(rgb, 0, 1) * 255), np.full((len(verts), 1), 255)], axis=1
    ).astype(np.uint8)
    return trimesh.Trimesh(verts, faces, vertex_colors=colours, process=False)


def write_mesh(path: str | os.PathLike, mesh: trimesh.Trimesh) -> Path:
    """Write a trimesh.Trimesh as Wavefront OBJ (.obj, vertex colours as `v x y z r g b`) or
    binary glTF (.glb, COLOR_0) chosen by the path's suffix; returns the path. Raises
    ValueError naming the file for another suffix or an empty mesh."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(
            f"{path}: expected a mesh file suffix among {', '.join(MESH_SUFFIXES)}, got "
            f"{path.suffix!r}"
        )
    if len(getattr(mesh, "faces", ())) == 0:
        raise ValueError(f"{path}: mesh: expected at least one triangle, got none")
    mesh.export(path, file_type=suffix[1:])
    return path
