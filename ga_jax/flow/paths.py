"""Probability paths between noise x0 (t = 0) and data x1 (t = 1), DESIGN.md section 6.

  "gvp"     the paper's trigonometric path: x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0,
            velocity dx_t/dt = pi / 2 (cos(pi t / 2) x1 - sin(pi t / 2) x0);
  "linear"  the rectified path: x_t = t x1 + (1 - t) x0, velocity x1 - x0.

Both are x_t = a(t) x1 + b(t) x0; a network that predicts the velocity v at (x_t, t) implies
data and noise estimates by solving the 2 x 2 system [x_t; v] = [[a, b], [a', b']] [x1; x0],
whose determinant a b' - a' b is -pi/2 (gvp) and -1 (linear) for every t: the estimates are
defined everywhere. The time direction is GaussianAnything's (t = 0 noise); peers such as
TRELLIS run the other way (../shared/notes/peer_samplers_and_evaluation.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["PATHS", "coefficients", "data_estimate", "interpolate", "noise_estimate"]

PATHS = ("gvp", "linear")


def coefficients(path: str, t: jax.Array) -> tuple[jax.Array, ...]:
    """(a, b, da/dt, db/dt) of x_t = a(t) x1 + b(t) x0 at times t (any shape; float32
    unless t is float64 under jax_enable_x64)."""
    t = _as_float(t)
    if path == "gvp":
        half_pi = 0.5 * math.pi
        s, c = jnp.sin(half_pi * t), jnp.cos(half_pi * t)
        return s, c, half_pi * c, -half_pi * s
    if path == "linear":
        one = jnp.ones_like(t)
        return t, 1.0 - t, one, -one
    raise ValueError(f"flow path: expected one of {PATHS}, got {path!r}")


def _as_float(t) -> jax.Array:
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.floating) else t.astype(jnp.float32)


def _broadcast(t: jax.Array, x: jax.Array) -> jax.Array:
    """Times [B] (or a scalar) against x [B, ...]: trailing axes added."""
    t = _as_float(t)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(path: str, x0: jax.Array, x1: jax.Array, t: jax.Array):
    """(x_t, velocity target) for noise x0 and data x1 [B, ...] at times t [B] or a scalar."""
    a, b, da, db = coefficients(path, _broadcast(t, x1))
    return a * x1 + b * x0, da * x1 + db * x0


def data_estimate(path: str, x_t: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
    """The x1 that, with some x0, gives x_t and velocity v at t (Cramer's rule)."""
    a, b, da, db = coefficients(path, _broadcast(t, x_t))
    return (db * x_t - b * v) / (a * db - b * da)


def noise_estimate(path: str, x_t: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
    """The x0 that, with some x1, gives x_t and velocity v at t."""
    a, b, da, db = coefficients(path, _broadcast(t, x_t))
    return (a * v - da * x_t) / (a * db - b * da)
