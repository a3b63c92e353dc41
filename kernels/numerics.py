"""Numerically safe pieces shared by every compositing implementation (same forward values).

Ray-splat intersection (u, v) = (q_x, q_y) / q_z: a ray nearly parallel to the splat plane
has a tiny q_z, so |u| or |v| is astronomically large. The 3D Gaussian there is exactly 0 in
float32 and the pixel uses the screen-space filter instead, so alpha does not depend on u, v.
But reverse mode still multiplies a zero cotangent by du/dq_z = -q_x / q_z^2, which
overflows to inf once q_z^2 underflows: 0 * inf = NaN, and one such pair poisons the whole
gradient (seen in VAE training). Such "far" pairs get a constant (u, v) far outside the
Gaussian's support instead, with no gradient: identical alpha, finite backward.

The hit depth z = u T_w.x + v T_w.y + T_w.z (the reference at e0ed020 uses it for every pair,
also where the filter wins, and skips the pair when z < near) does depend on the true u, v
there: its sign decides the near test and its value enters the depth outputs. Far pairs
compute it from q directly, (q_x T_w.x + q_y T_w.y) / q_z + T_w.z, with no gradient through
the first term (its derivative overflows like u's) and that term clipped to +-1e12 (float32
would give inf for a denormal q_z, and inf * 0 = NaN in the backward pass).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ray_splat_uv", "hit_depth"]

# |u| or |v| above this is > 1e12 standard deviations: exp(-rho / 2) is 0 in float32 long before.
_FAR = 1e6
# Bound on the far pairs' depth term (camera units); nothing rendered is within 1e8 of it.
_FAR_DEPTH = 1e12


def ray_splat_uv(q_x: jax.Array, q_y: jax.Array, q_z: jax.Array):
    """(hit, u, v, q_z_used, far): hit = q_z != 0 (the reference's test); u, v = q_x / q_z,
    q_y / q_z, or _FAR (constant) where they would exceed it (far); q_z_used is the divisor (1
    there), for hand-written backward passes."""
    hit = q_z != 0
    far = jnp.abs(q_z) * _FAR <= jnp.maximum(jnp.abs(q_x), jnp.abs(q_y))
    q_z = jnp.where(far, 1.0, q_z)
    u = jnp.where(far, _FAR, q_x / q_z)
    v = jnp.where(far, _FAR, q_y / q_z)
    return hit, u, v, q_z, far


def hit_depth(q_x, q_y, q_z, u, v, far, t_w) -> jax.Array:
    """Camera z of the ray-splat intersection, u T_w.x + v T_w.y + T_w.z (t_w: the three
    components of T_w; q_z the raw one, not ray_splat_uv's divisor). Far pairs: see above."""
    t_w0, t_w1, t_w2 = t_w
    safe_q_z = jnp.where(q_z == 0, 1.0, q_z)
    far_term = jax.lax.stop_gradient(
        jnp.clip((q_x * t_w0 + q_y * t_w1) / safe_q_z, -_FAR_DEPTH, _FAR_DEPTH)
    )
    return jnp.where(far, far_term, u * t_w0 + v * t_w1) + t_w2
