"""Rendering the views of an object: pixel rays, adaptive anti-aliasing, the G-buffer maps.

Pixel (row i, col j) has its centre at (j + 0.5, i + 0.5); depth is t * (camera z of the unit
ray), normals are the caster's analytic world normals (raycast.py). Anti-aliasing is
adaptive: every pixel's centre ray is cast; pixels whose 3x3 neighbourhood changes hit/miss,
part, or jumps in depth are re-rendered with S x S (default 4 x 4) stratified sub-pixel rays:
colour and alpha (the soft alpha: the fraction of sub-pixel rays that hit) are their means;
depth and normal stay the centre ray's exact values where all sub-samples hit (every
alpha = 1 pixel unprojects exactly onto the surface) and are blended only where the pixel is
partially covered (depth ~ alpha * z, as in the data). Features thinner than a pixel that no
centre ray hits are therefore missed.
"""

from __future__ import annotations

import numpy as np

from ga_jax.data.synthetic.objects import SyntheticObject
from ga_jax.data.synthetic.raycast import bounding_radius, cast_rays

__all__ = ["render_views"]

# A second difference of depth (metres) between neighbouring centre rays that marks a
# self-occlusion edge.
_DEPTH_EDGE = 0.02


def _pixel_rays(
    obj: SyntheticObject,
    cameras: np.ndarray,
    views: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    resolution: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World origins, unit directions, camera-z of the unit directions and the `near` mask
    (the ray meets a part's bounding sphere) of rays through image points (xs, ys) in pixels
    of views `views` (all [N], views sorted ascending)."""
    cam2world = cameras[:, :16].reshape(-1, 4, 4).astype(np.float64)
    k = cameras[:, 16:].reshape(-1, 3, 3).astype(np.float64)
    origins = np.empty((len(views), 3), np.float32)
    dirs = np.empty((len(views), 3), np.float32)
    cz = np.empty(len(views), np.float64)
    near = np.zeros(len(views), bool)
    bounds = np.searchsorted(views, np.arange(cameras.shape[0] + 1))
    for v in range(cameras.shape[0]):
        sl = slice(bounds[v], bounds[v + 1])
        if sl.start == sl.stop:
            continue
        fx, fy = k[v, 0, 0] * resolution, k[v, 1, 1] * resolution
        cx, cy = k[v, 0, 2] * resolution, k[v, 1, 2] * resolution
        cam = np.stack([(xs[sl] - cx) / fx, (ys[sl] - cy) / fy, np.ones(sl.stop - sl.start)], -1)
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        world = cam @ cam2world[v, :3, :3].T
        dirs[sl] = world
        origins[sl] = cam2world[v, :3, 3]
        cz[sl] = cam[:, 2]
        # A ray from o meets the sphere (c, rho) iff its angle to c - o is at most
        # asin(rho / |c - o|): one dot product per ray and part.
        for part in obj.parts:
            rel = part.centre - cam2world[v, :3, 3]
            dist = np.linalg.norm(rel)
            rho = bounding_radius(part) * 1.001 + 1e-6
            if dist <= rho:
                near[sl] = True
                continue
            near[sl] |= world @ (rel / dist) >= np.sqrt(1.0 - (rho / dist) ** 2) - 1e-6
    return origins, dirs, cz, near


def _neighbourhood_edges(label: np.ndarray, z: np.ndarray) -> np.ndarray:
    """bool [V, H, W]: pixels to supersample.

    A pixel is an edge when its 3x3 neighbourhood changes label (miss / part), which covers
    both sides of every silhouette and part boundary, or when it sits at a depth
    discontinuity of one part (a self-occlusion, e.g. a torus's inner rim): there the second
    difference of the depth along a row or column exceeds _DEPTH_EDGE, which a smooth surface
    (first differences can be large on slanted faces) does not reach away from silhouettes.
    """
    v, h, w = label.shape
    lab = np.pad(label, ((0, 0), (1, 1), (1, 1)), mode="edge")
    edge = np.zeros(label.shape, bool)
    for di in range(3):
        for dj in range(3):
            edge |= lab[:, di : di + h, dj : dj + w] != label
    zz = np.pad(z, ((0, 0), (1, 1), (1, 1)), mode="edge")
    # Only within one part (label changes are handled above; the background's 0 is no depth).
    same_row = (lab[:, 1:-1, :-2] == label) & (lab[:, 1:-1, 2:] == label) & (label >= 0)
    same_col = (lab[:, :-2, 1:-1] == label) & (lab[:, 2:, 1:-1] == label) & (label >= 0)
    rows = same_row & (np.abs(zz[:, 1:-1, :-2] - 2 * z + zz[:, 1:-1, 2:]) > _DEPTH_EDGE)
    cols = same_col & (np.abs(zz[:, :-2, 1:-1] - 2 * z + zz[:, 2:, 1:-1]) > _DEPTH_EDGE)
    jump = rows | cols
    # Both pixels of a jump, as for label changes.
    jump[:, :, 1:] |= rows[:, :, :-1]
    jump[:, :, :-1] |= rows[:, :, 1:]
    jump[:, 1:] |= cols[:, :-1]
    jump[:, :-1] |= cols[:, 1:]
    return edge | jump


def render_views(
    obj: SyntheticObject, cameras: np.ndarray, resolution: int, supersample: int = 4
) -> dict[str, np.ndarray]:
    """Render views of an object with c.npy rows `cameras` [V, 25] at H = W = resolution.

    Returns float32 arrays: `rgb` [V, H, W, 3] straight colour over white (c a + 1 - a),
    `alpha` [V, H, W], `depth` [V, H, W] z-depth (0 background, ~alpha * z at edges),
    `normal` [V, H, W, 3] unit world normals ((0, -1, 0) on the background), i.e. the
    arguments of ga_jax.data.gbuffer.write_chunk. Pixel (i, j) has its centre at
    (j + 0.5, i + 0.5). Edge pixels (see the module docstring) average supersample^2
    stratified rays for colour and alpha; their depth and normal are the centre ray's where
    all sub-samples hit and blended otherwise.
    """
    cameras = np.asarray(cameras, np.float32)
    num_views, size = cameras.shape[0], resolution
    vv, ii, jj = np.meshgrid(np.arange(num_views), np.arange(size), np.arange(size), indexing="ij")
    vv, ii, jj = vv.reshape(-1), ii.reshape(-1), jj.reshape(-1)
    origins, dirs, cz, near = _pixel_rays(obj, cameras, vv, jj + 0.5, ii + 0.5, size)
    t, part, normal, colour = cast_rays(obj, origins, dirs, near)
    hit = np.isfinite(t)
    z = np.where(hit, t * cz, 0.0)
    alpha = hit.astype(np.float64)
    premult = colour * hit[:, None]
    normal = np.where(hit[:, None], normal, 0.0).astype(np.float64)

    shape = (num_views, size, size)
    edge = _neighbourhood_edges(part.reshape(shape), z.reshape(shape)).reshape(-1)
    idx = np.nonzero(edge)[0]
    if idx.size:
        s = supersample
        offsets = (np.arange(s) + 0.5) / s
        ox, oy = np.meshgrid(offsets, offsets, indexing="xy")
        ox, oy = ox.reshape(-1), oy.reshape(-1)
        sv = np.repeat(vv[idx], s * s)
        sx = (jj[idx][:, None] + ox[None, :]).reshape(-1)
        sy = (ii[idx][:, None] + oy[None, :]).reshape(-1)
        o2, d2, cz2, near2 = _pixel_rays(obj, cameras, sv, sx, sy, size)
        t2, _, n2, c2 = cast_rays(obj, o2, d2, near2)
        hit2 = np.isfinite(t2)
        m = len(idx)
        cover = hit2.reshape(m, -1).mean(1)
        premult[idx] = (c2 * hit2[:, None]).reshape(m, s * s, 3).mean(1)
        # Depth and normal stay those of the exact centre ray where the pixel is fully covered
        # (so that every alpha = 1 pixel unprojects onto the surface); partially covered pixels
        # blend like the data: depth = mean over sub-samples with 0 for misses (~alpha * z),
        # normal = the normalised mean of the hit normals.
        keep = (cover < 1) | ~hit[idx]
        partial = idx[keep]
        alpha[idx] = cover
        z[partial] = np.where(hit2, t2 * cz2, 0.0).reshape(m, -1).mean(1)[keep]
        normal[partial] = np.where(hit2[:, None], n2, 0.0).reshape(m, s * s, 3).sum(1)[keep]
    norm = np.linalg.norm(normal, axis=-1, keepdims=True)
    background = np.array([0.0, -1.0, 0.0])
    normal = np.where(norm > 1e-8, normal / np.maximum(norm, 1e-8), background)
    rgb = premult + (1.0 - alpha)[:, None]
    return {
        "rgb": rgb.reshape(shape + (3,)).astype(np.float32),
        "alpha": alpha.reshape(shape).astype(np.float32),
        "depth": z.reshape(shape).astype(np.float32),
        "normal": normal.reshape(shape + (3,)).astype(np.float32),
    }
