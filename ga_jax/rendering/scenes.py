"""Random surfel scenes for tests, benchmarks and demos."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ga_jax.rendering.surfels import Surfels

# Scale of the VAE's surfel head: softplus(pre) * SCALE_UNIT, softplus(0) -> 0.0045 (DESIGN 3).
SCALE_UNIT = 0.006492


@functools.partial(
    jax.jit, static_argnames=("num", "channels", "scale_pre_std", "on_sphere", "radius")
)
def random_surfels(
    key: jax.Array,
    num: int,
    channels: int = 3,
    scale_pre_std: float = 0.5,
    on_sphere: bool = True,
    radius: float = 0.35,
) -> Surfels:
    """num random surfels inside the [-0.45, 0.45]^3 object box.

    Sizes follow the VAE's scale activation: softplus(N(0, scale_pre_std)) * 0.006492, i.e.
    around 4.5 mm, the size the decoder starts from. With on_sphere the centres lie on a
    sphere of `radius` with jitter, which gives the depth complexity of a real object.
    """
    k_pos, k_rot, k_scale, k_opac, k_col, k_jit = jax.random.split(key, 6)
    if on_sphere:
        direction = jax.random.normal(k_pos, (num, 3))
        direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
        means = direction * (radius + 0.02 * jax.random.normal(k_jit, (num, 1)))
    else:
        means = jax.random.uniform(k_pos, (num, 3), minval=-0.45, maxval=0.45)
    pre = scale_pre_std * jax.random.normal(k_scale, (num, 2))
    return Surfels(
        means=means,
        quaternions=jax.random.normal(k_rot, (num, 4)),
        scales=jax.nn.softplus(pre) * SCALE_UNIT,
        opacities=jax.random.uniform(k_opac, (num,), minval=0.05, maxval=1.0),
        colors=jax.random.uniform(k_col, (num, channels)),
    )


# Three discs per point, normals along x, y and z (w, x, y, z): a point is visible from every
# direction, as no single disc is when seen edge-on.
_AXIS_DISCS = jnp.array(
    [[1.0, 0.0, 0.0, 0.0], [0.70710678, 0.0, 0.70710678, 0.0], [0.70710678, -0.70710678, 0.0, 0.0]]
)
_LOW, _HIGH = jnp.array([0.15, 0.35, 0.85]), jnp.array([0.95, 0.55, 0.1])


def point_surfels(xyz: jax.Array, radius: float = 0.01, box: float = 0.45) -> Surfels:
    """A point cloud [..., P, 3] as surfels [..., 3P] to look at: three orthogonal discs of
    std `radius` per point, coloured from blue (z = -box) to orange (z = box) by height."""
    lead = xyz.shape[:-1]
    means = jnp.repeat(xyz, 3, axis=-2)
    quaternions = jnp.broadcast_to(_AXIS_DISCS, lead + (3, 4)).reshape(means.shape[:-1] + (4,))
    height = jnp.clip((means[..., 2:3] + box) / (2 * box), 0.0, 1.0)
    return Surfels(
        means=means,
        quaternions=quaternions,
        scales=jnp.full(means.shape[:-1] + (2,), radius, xyz.dtype),
        opacities=jnp.full(means.shape[:-1], 0.9, xyz.dtype),
        colors=(1.0 - height) * _LOW + height * _HIGH,
    )
