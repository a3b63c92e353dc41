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


def _ellipse_box(t_u, t_v, t_w, radius_sq):
    """Screen bounding box of the projected disk u^2 + v^2 <= radius_sq [N]: centre [N, 2],
    half size [N, 2] (at least 0.01 px, as the reference) and whether the projection is an
    ellipse (the disk stays in front of the camera plane). The 2DGS reference's compute_aabb
    with cutoff^2 = radius_sq: the conic's centre and extent from the transform rows."""
    weights = jnp.stack([radius_sq, radius_sq, -jnp.ones_like(radius_sq)], axis=-1)
    conic_d = _dot3(weights, t_w * t_w)
    is_ellipse = conic_d < 0
    f = weights / jnp.where(is_ellipse, conic_d, -1.0)[:, None]
    centre = jnp.stack([_dot3(f, t_u * t_w), _dot3(f, t_v * t_w)], axis=-1)
    half_sq = centre * centre - jnp.stack([_dot3(f, t_u * t_u), _dot3(f, t_v * t_v)], axis=-1)
    half = jnp.sqrt(jnp.maximum(half_sq, 1e-4))
    return centre, half, is_ellipse


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

    # The low-pass filter is centred on the screen bounding box of the 3-sigma ellipse
    # u^2 + v^2 = 9, whatever the opacity (the 2DGS reference's compute_aabb, cutoff 3).
    t_u, t_v, t_w = transforms[:, 0], transforms[:, 1], transforms[:, 2]
    sigma3 = jnp.full_like(opacities, 9.0)
    centre, _, is_ellipse_3 = _ellipse_box(t_u, t_v, t_w, sigma3)
    # Which pixels a surfel is evaluated on: every pixel where alpha can reach 1/255, i.e.
    # the disk out to the radius where o exp(-r^2 / 2) = 1/255 (exact w.r.t. the dense
    # oracle; the reference instead evaluates the tiles of the 3-sigma box, dropping pixels
    # beyond it where alpha <= 0.011 o). Its box has another centre (perspective), so the
    # half size about `centre` covers both, and the filter's disk around `centre`.
    cutoff_sq = 2.0 * jnp.log(jnp.maximum(opacities / config.alpha_min, 1.0))
    centre_cut, half_cut, is_ellipse_cut = _ellipse_box(t_u, t_v, t_w, cutoff_sq)
    filter_radius = jnp.sqrt(cutoff_sq / config.filter_inv_square)
    extents = jnp.maximum(jnp.abs(centre_cut - centre) + half_cut, filter_radius[:, None])
    extents = jax.lax.stop_gradient(extents)
    # A disk that reaches the camera plane projects to an unbounded conic: culled (the
    # reference keeps it only where its box formula happens to land).
    is_ellipse = is_ellipse_3 & is_ellipse_cut

    valid = (
        (depth > config.near)
        & is_ellipse
        & (cos != 0)
        & (opacities >= config.alpha_min)
        & (scales[:, 0] >= 0)
        & (scales[:, 1] >= 0)
    )
    return Splats(
        means2d=centre,
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
