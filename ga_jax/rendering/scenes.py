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
