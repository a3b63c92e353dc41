"""Times for training (sampled) and for sampling (a grid), in the paths' convention: t = 0
noise, t = 1 data (ga_jax/flow/paths.py).

Training: "uniform" t ~ U[0, 1] (the paper's), or "logit_normal" t = sigmoid(m + s n),
n ~ N(0, 1) (Esser et al. 2024), which spends more training on the middle of the path.

Sampling: a uniform grid of steps + 1 times from 0 to 1, optionally shifted towards the noise
end. Peers write the shift for noise-ness tau = 1 - t as tau' = k tau / (1 + (k - 1) tau)
(k >= 1: more steps near the noise; ../shared/notes/peer_samplers_and_evaluation.md); here
t' = 1 - tau'(1 - t), which keeps t' = 0 and t' = 1 at the ends and k = 1 the plain grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["TIME_DISTRIBUTIONS", "sample_times", "sampling_grid", "shift_times"]

TIME_DISTRIBUTIONS = ("uniform", "logit_normal")


def sample_times(
    rng: jax.Array, shape, kind: str = "uniform", mean: float = 0.0, std: float = 1.0
) -> jax.Array:
    """Training times of the given shape, float32 in [0, 1]."""
    if kind == "uniform":
        return jax.random.uniform(rng, shape, jnp.float32)
    if kind == "logit_normal":
        if not std > 0:
            raise ValueError(f"sample_times: std: expected > 0, got {std}")
        return jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape, jnp.float32))
    raise ValueError(f"sample_times: kind: expected one of {TIME_DISTRIBUTIONS}, got {kind!r}")


def shift_times(t: jax.Array, shift: float) -> jax.Array:
    """Times t moved towards the noise end (t = 0) by shift k >= 1 (module docstring)."""
    if not shift >= 1.0:
        raise ValueError(f"timestep shift: expected >= 1 (1 = no shift), got {shift}")
    t = jnp.asarray(t, jnp.float32)
    if shift == 1.0:  # the identity, without 1 - (1 - t) rounding
        return t
    tau = 1.0 - t
    return 1.0 - shift * tau / (1.0 + (shift - 1.0) * tau)


def sampling_grid(steps: int, shift: float = 1.0) -> jax.Array:
    """steps + 1 increasing times from 0 (noise) to 1 (data), float32."""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"sampling steps: expected an integer >= 1, got {steps!r}")
    return shift_times(jnp.linspace(0.0, 1.0, steps + 1, dtype=jnp.float32), shift)
