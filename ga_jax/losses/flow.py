"""The flow-matching objective of both generation stages (DESIGN.md section 6): draw noise x0
and a time t per sample, place the sample at x_t on the path and regress the network's
velocity on the path's velocity, mean squared error over every element.

The draws are separate from the loss so that a task can log them and a test can fix them:
`flow_draws` gives (x0, t) from one rng; `flow_matching_loss` takes them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ga_jax.flow.paths import interpolate
from ga_jax.flow.timesteps import sample_times

__all__ = ["flow_draws", "flow_matching_loss"]


def flow_draws(
    rng: jax.Array, x1: jax.Array, time_kind: str = "uniform", mean: float = 0.0, std: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Standard normal noise shaped like the data x1 [B, ...] and times t [B]."""
    noise_rng, time_rng = jax.random.split(rng)
    x0 = jax.random.normal(noise_rng, x1.shape, jnp.float32)
    t = sample_times(time_rng, (x1.shape[0],), time_kind, mean, std)
    return x0, t


def flow_matching_loss(
    predict: Callable[[jax.Array, jax.Array], jax.Array],
    x1: jax.Array,
    x0: jax.Array,
    t: jax.Array,
    path: str = "gvp",
) -> jax.Array:
    """mean((predict(x_t, t) - v_target)^2) in float32 for data x1, noise x0 [B, ...] and
    times t [B]; predict is the network with its condition bound."""
    x_t, target = interpolate(path, x0.astype(jnp.float32), x1.astype(jnp.float32), t)
    prediction = predict(x_t, t).astype(jnp.float32)
    if prediction.shape != target.shape:
        raise ValueError(
            f"flow_matching_loss: the prediction's shape {prediction.shape} differs from the "
            f"velocity target's {target.shape}"
        )
    return jnp.mean((prediction - target) ** 2)
