"""render_surfels: project -> intersect tiles -> composite, batched over objects and cameras."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import PartitionSpec

from ga_jax.parallel.mesh import context_batch_axes
from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.project import project_surfels
from ga_jax.rendering.surfels import Surfels, check_surfels
from ga_jax.rendering.tiles import default_capacity, intersect_tiles
from kernels.api import IMPLEMENTATIONS, composite
from kernels.config import TileConfig, default_config
from kernels.native_composite import composite_native_views


@struct.dataclass
class RenderOutput:
    """Renders of surfels [..., N] by cameras [..., C]: every image field has leading [..., C].

    depth is the accumulated sum w_i z_i (divide by alpha for the expected depth, see
    `expected_depth`); normals are accumulated, not normalised.
    """

    rgb: jax.Array  # [..., C, H, W, D] composited over the background
    alpha: jax.Array  # [..., C, H, W]
    depth: jax.Array  # [..., C, H, W] sum w z (camera z)
    median_depth: jax.Array  # [..., C, H, W] z of the last surfel composited while T > 0.5
    normal_cam: jax.Array  # [..., C, H, W, 3] camera space
    normal_world: jax.Array  # [..., C, H, W, 3] world space
    distortion: jax.Array  # [..., C, H, W]
    num_intersections: jax.Array  # [..., C] surfel-tile pairs needed
    overflow: jax.Array  # [..., C] bool: pairs beyond the capacity were dropped

    def expected_depth(self, eps: float = 1e-6) -> jax.Array:
        return self.depth / jnp.maximum(self.alpha, eps)


def _per_device(fn, num_rows: int):
    """fn over rows [V, ...] run by each device on its own rows when a mesh context splits
    batches (ga_jax.parallel.mesh.rules_context), else fn itself.

    The compositors are custom calls (the native FFI kernel, a compiled Pallas kernel) with no
    partitioning rule: under GSPMD every device would gather the whole global batch of splats
    and composite all of it. Views are independent and the flattened [objects x views] rows of
    a batch split over the batch axes in contiguous blocks, so shard_map over those axes keeps
    each device on the views of its own objects, with no communication.
    """
    axes = context_batch_axes()
    mesh = jax.sharding.get_abstract_mesh()
    shards = math.prod(mesh.shape[a] for a in axes)
    if not axes or num_rows % shards:
        return fn
    spec = PartitionSpec(axes)
    return jax.shard_map(fn, in_specs=spec, out_specs=spec, check_vma=False)


def _check_cameras(cameras: Cameras) -> None:
    if cameras.cam2world.shape[-2:] != (4, 4):
        raise ValueError(f"cameras.cam2world: expected [..., 4, 4], got {cameras.cam2world.shape}")
    if cameras.intrinsics.shape != cameras.cam2world.shape[:-2] + (3, 3):
        raise ValueError(
            f"cameras.intrinsics: expected {cameras.cam2world.shape[:-2] + (3, 3)}, "
            f"got {cameras.intrinsics.shape}"
        )
    for name in ("cam2world", "intrinsics"):
        value = getattr(cameras, name)
        if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"cameras.{name}: contains NaN or inf")
    if cameras.height < 1 or cameras.width < 1:
        raise ValueError(
            f"cameras: image size must be positive, got {cameras.height}x{cameras.width}"
        )


def render_surfels(
    surfels: Surfels,
    cameras: Cameras,
    background: jax.Array | None = None,
    *,
    backend: str = "xla",
    config: TileConfig | None = None,
    capacity: int | None = None,
    check_inputs: bool = False,
) -> RenderOutput:
    """Render surfels [..., N] with cameras [..., C] (see Surfels, Cameras for conventions).

    background: [D] or [..., C, D] colour behind the surfels (default black).
    backend: 'xla' (default), 'pallas', 'native' (C++ CPU kernel, the fastest on CPU),
      'dense' (all-pairs oracle) or 'cuda' (optional package).
    config: tile settings (default `default_config(backend)`).
    capacity: surfel-tile pair slots per view (static; default `default_capacity`; unused by
      'native'). A concrete (non-traced) render that overflows raises; under jit check
      `overflow`.
    Differentiable w.r.t. means, quaternions, scales, opacities, colours (and background).
    """
    if backend not in IMPLEMENTATIONS:
        raise ValueError(f"backend: expected one of {IMPLEMENTATIONS}, got {backend!r}")
    config = config or default_config(backend)
    if check_inputs:
        check_surfels(surfels)
        _check_cameras(cameras)
    lead = surfels.means.shape[:-2]
    num_views = cameras.cam2world.shape[-3]
    channels = surfels.colors.shape[-1]
    height, width = cameras.height, cameras.width
    # Outputs follow the surfels' dtype: float64 under jax_enable_x64 ('xla', 'dense'), for
    # gradient checks in double precision; float32 otherwise.
    dtype = surfels.means.dtype
    if background is None:
        background = jnp.zeros((channels,), dtype)
    background = jnp.asarray(background, dtype)
    if background.shape[-1] != channels:
        raise ValueError(
            f"background: expected last dim {channels} (colour channels), got {background.shape}"
        )
    background = jnp.broadcast_to(background, lead + (num_views, channels))

    splats = project_surfels(surfels, cameras, config)  # [..., C, N, ...]
    flat = lambda x: x.reshape((-1,) + x.shape[len(lead) + 1 :])
    splats_v = jax.tree.map(flat, splats)
    if capacity is None and backend != "native":
        capacity = default_capacity(surfels.num, height, width, config)

    def composite_views(splats_v, background_v):
        """(composited images, pairs per view) of a stack of views [V, ...]."""
        if backend == "native":  # bins by itself, with no capacity: nothing can overflow
            return composite_native_views(splats_v, height, width, background_v, config)
        isect = jax.vmap(lambda s: intersect_tiles(s, height, width, config, capacity))(splats_v)
        out = composite(
            splats_v, isect, height, width, background_v, config, implementation=backend
        )
        return out, isect.count

    out, count = _per_device(composite_views, flat(background).shape[0])(splats_v, flat(background))
    overflow = jnp.zeros_like(count, bool) if backend == "native" else count > capacity
    unflat = lambda x: x.reshape(lead + (num_views,) + x.shape[1:])
    if not isinstance(overflow, jax.core.Tracer) and bool(jnp.any(overflow)):
        raise RuntimeError(
            f"render_surfels: {int(jnp.max(count))} surfel-tile pairs in a view exceed "
            f"capacity={capacity}; pass a larger capacity"
        )
    normal_cam = unflat(out.normal)
    rot = cameras.cam2world[..., :3, :3]  # [..., C, 3, 3]
    normal_world = jnp.einsum("...ij,...hwj->...hwi", rot, normal_cam)
    return RenderOutput(
        rgb=unflat(out.color),
        alpha=unflat(out.alpha),
        depth=unflat(out.depth),
        median_depth=unflat(out.median_depth),
        normal_cam=normal_cam,
        normal_world=normal_world,
        distortion=unflat(out.distortion),
        num_intersections=unflat(count),
        overflow=unflat(overflow),
    )
