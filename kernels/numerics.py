"""Numerically safe pieces shared by every compositing implementation (same forward values).

Ray-splat intersection (u, v) = (q_x, q_y) / q_z: a ray nearly parallel to the splat plane
has a tiny q_z, so |u| or |v| is astronomically large. The 3D Gaussian there is exactly 0 in
float32 and the pixel uses the screen-space filter instead, so the forward value does not
depend on u, v. But reverse mode still multiplies a zero cotangent by du/dq_z = -q_x / q_z^2,
which overflows to inf once q_z^2 underflows: 0 * inf = NaN, and one such pair poisons the
whole gradient (seen in VAE training). Such pairs get a constant (u, v) far outside the
Gaussian's support instead, with no gradient: identical forward, finite backward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ray_splat_uv"]

# |u| or |v| above this is > 1e12 standard deviations: exp(-rho / 2) is 0 in float32 long before.
_FAR = 1e6


def ray_splat_uv(q_x: jax.Array, q_y: jax.Array, q_z: jax.Array):
    """(hit, u, v, q_z_used): hit = q_z != 0 (the reference's test); u, v = q_x / q_z,
    q_y / q_z, or _FAR (constant) where they would exceed it; q_z_used is the divisor (1 there),
    for hand-written backward passes."""
    hit = q_z != 0
    far = jnp.abs(q_z) * _FAR <= jnp.maximum(jnp.abs(q_x), jnp.abs(q_y))
    q_z = jnp.where(far, 1.0, q_z)
    u = jnp.where(far, _FAR, q_x / q_z)
    v = jnp.where(far, _FAR, q_y / q_z)
    return hit, u, v, q_z
