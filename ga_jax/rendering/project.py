"""Stage 1 of rendering: surfels -> per-view screen-space splats (the 2DGS preprocess)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.surfels import Surfels, quaternion_to_rotation
from kernels.config import TileConfig
from kernels.types import Splats


def _dot3(a: jax.Array, b: jax.Array) -> jax.Array:
    """Sum over a last axis of 3, spelled out: XLA CPU's reduce over a minor axis of 3 under
    vmap took ~12 ms at N = 73,728 for one view (0.1 ms like this)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _project_one_view(
    means, quaternions, scales, opacities, colors, world2cam, intrinsics, config: TileConfig
) -> Splats:
    """Surfels [N, ...] seen by one camera (world2cam [4,4], intrinsics [3,3] in pixels)."""
    rot = quaternion_to_rotation(quaternions)  # [N, 3, 3], columns t_u, t_v, t_w
    w_rot, w_t = world2cam[:3, :3], world2cam[:3, 3]
    # Splat-to-camera map: columns s_u R_wc t_u, s_v R_wc t_v, R_wc p + t (camera centre).
    axis_u = (rot[:, :, 0] * scales[:, 0:1]) @ w_rot.T
    axis_v = (rot[:, :, 1] * scales[:, 1:2]) @ w_rot.T
    center = means @ w_rot.T + w_t
    # Rows T_u, T_v, T_w of K [axis_u axis_v center]: pixel_h = T (u, v, 1). Written as
    # sums of scaled rows: N batched 3x3 matmuls are slow on XLA CPU (measured forward + VJP
    # of the projection 16 -> 13.6 ms at N = 73,728).
    splat2cam_rows = [jnp.stack([axis_u[:, r], axis_v[:, r], center[:, r]], -1) for r in range(3)]
    transforms = jnp.stack(
        [sum(intrinsics[r, c] * splat2cam_rows[c] for c in range(3)) for r in range(3)], axis=-2
    )  # [N, 3, 3]
    depth = center[:, 2]

    normal = rot[:, :, 2] @ w_rot.T
    # Face the camera: the reference flips n so that <n, -p_cam> > 0.
    cos = -_dot3(center, normal)
    normal = jnp.where((cos < 0)[:, None], -normal, normal)

    # Screen bounding box of the disk out to the radius where alpha reaches 1/255: beyond it
    # every pixel is skipped, so tiles outside it lose nothing (exact w.r.t. the dense oracle).
    log_arg = jnp.maximum(opacities / config.alpha_min, 1.0)
    cutoff_sq = 2.0 * jnp.log(log_arg)
    t_u, t_v, t_w = transforms[:, 0], transforms[:, 1], transforms[:, 2]
    weights = jnp.stack([cutoff_sq, cutoff_sq, -jnp.ones_like(cutoff_sq)], axis=-1)
    conic_d = _dot3(weights, t_w * t_w)
    # The projected disk is an ellipse only for conic_d < 0; else the disk reaches the camera
    # plane (never happens for visible surfels at our sizes) and the surfel is culled.
    is_ellipse = conic_d < 0
    f = weights / jnp.where(is_ellipse, conic_d, -1.0)[:, None]
    mean_x = _dot3(f, t_u * t_w)
    mean_y = _dot3(f, t_v * t_w)
    half_sq_x = mean_x * mean_x - _dot3(f, t_u * t_u)
    half_sq_y = mean_y * mean_y - _dot3(f, t_v * t_v)
    half = jnp.sqrt(jnp.maximum(jnp.stack([half_sq_x, half_sq_y], -1), 1e-4))
    # The low-pass filter keeps alpha >= 1/255 out to cutoff / sqrt(filter_inv_square) px.
    filter_radius = jnp.sqrt(cutoff_sq / config.filter_inv_square)
    extents = jax.lax.stop_gradient(jnp.maximum(half, filter_radius[:, None]))

    valid = (
        (depth > config.near)
        & is_ellipse
        & (cos != 0)
        & (opacities >= config.alpha_min)
        & (scales[:, 0] >= 0)
        & (scales[:, 1] >= 0)
    )
    return Splats(
        means2d=jnp.stack([mean_x, mean_y], axis=-1),
        transforms=transforms,
        depths=depth,
        normals=normal,
        opacities=opacities,
        colors=colors,
        extents=extents,
        valid=valid,
    )


@functools.partial(jax.jit, static_argnames=("config",))
def project_surfels(
    surfels: Surfels, cameras: Cameras, config: TileConfig = TileConfig()
) -> Splats:
    """Project surfels [..., N] into cameras [..., C]; returns Splats with leading [..., C, N].

    The leading batch dims of the surfels and the cameras must match (one set of surfels per
    object, C cameras per object). Surfels behind the near plane, edge-on to the eye or
    transparent below 1/255 come back with valid=False.
    """
    lead = surfels.means.shape[:-2]
    if cameras.cam2world.shape[:-3] != lead:
        raise ValueError(
            f"cameras: leading dims {cameras.cam2world.shape[:-3]} (before the camera axis) "
            f"must equal the surfels' leading dims {lead}"
        )
    world2cam = cameras.world2cam

    def per_object(means, quats, scales, opac, colors, w2c, intr):
        per_view = lambda w, k: _project_one_view(means, quats, scales, opac, colors, w, k, config)
        return jax.vmap(per_view)(w2c, intr)

    fn = per_object
    for _ in lead:
        fn = jax.vmap(fn)
    return fn(
        surfels.means,
        surfels.quaternions,
        surfels.scales,
        surfels.opacities,
        surfels.colors,
        world2cam,
        cameras.intrinsics,
    )
