"""Classifier-free guidance for the flow stages (DESIGN.md section 6;
../shared/notes/peer_samplers_and_evaluation.md for the interval and the rescale).

Training drops the condition of a sample with probability p (default 0.1; jointly: every
condition tensor of that sample replaced by the null condition, zeros by default, DESIGN.md
section 9), so one network learns both the conditional and the unconditional velocity.
Sampling combines them:

  v = v_u + s (v_c - v_u)                    (s = 1: the conditional velocity alone)

only while t lies in the guidance interval [lo, hi]; outside it the conditional velocity is
used and the unconditional call is skipped (lax.cond). Inside it the network runs once on the
stacked batch [condition; null] rather than twice, so a guided velocity evaluation is one
network call (what the samplers' NFE counts) on twice the rows.

Guidance rescale (Lin et al. 2024, factor phi in [0, 1]) in the data-estimate form the peers
use: convert both velocities to data estimates x1 at the same x_t, scale the guided one to the
conditional one's standard deviation (per sample, over all other axes), mix
x1 = phi x1_rescaled + (1 - phi) x1_guided and convert back at the same x_t. The conversion
is linear in x1 at fixed x_t, so it is written as a correction of the guided velocity,
v + phi (x1_rescaled - x1_guided) dv/dx1, and phi = 0 is plain guidance exactly. At the data
end dv/dx1 = a' - b' a / b grows as 1 / b(t) (x_t is then the data estimate itself): the
rescale is off where b(t) < 1e-3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ga_jax.flow.paths import coefficients, data_estimate

__all__ = ["Guidance", "GuidedVelocity", "drop_condition", "guided_velocity", "guide"]

_RESCALE_MIN_NOISE = 1e-3


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Sampling-time guidance: scale s, interval [lo, hi] in t, rescale factor phi, path."""

    scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    rescale: float = 0.0
    path: str = "gvp"

    def __post_init__(self):
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"guidance interval: expected 0 <= lo <= hi <= 1, got {self.interval}")
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"guidance rescale: expected in [0, 1], got {self.rescale}")
        coefficients(self.path, 0.0)  # names the path when unknown

    @property
    def active(self) -> bool:
        """Whether an unconditional prediction is ever needed."""
        return self.scale != 1.0


def drop_condition(
    rng: jax.Array, condition: Any, null_condition: Any = None, p: float = 0.1
) -> Any:
    """Each sample's whole condition (every leaf [B, ...]) replaced by the null condition's
    (leaves [...] or [B, ...]; None: zeros) with probability p: one Bernoulli draw per sample
    shared by all leaves, so the network never sees half a condition."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout: p: expected in [0, 1], got {p}")
    leaves = jax.tree.leaves(condition)
    if not leaves:
        return condition
    if null_condition is None:
        null_condition = jax.tree.map(jnp.zeros_like, condition)
    drop = jax.random.bernoulli(rng, p, (leaves[0].shape[0],))

    def choose(c, n):
        mask = drop.reshape(drop.shape + (1,) * (c.ndim - 1))
        return jnp.where(mask, jnp.broadcast_to(n, c.shape), c)

    return jax.tree.map(choose, condition, null_condition)


def guided_velocity(
    v_cond: jax.Array, v_uncond: jax.Array, x_t: jax.Array, t: jax.Array, guidance: Guidance
) -> jax.Array:
    """Guidance and rescale (float32) of one prediction pair [B, ...] at x_t [B, ...] and a
    scalar time t inside the interval (the caller checks the interval)."""
    v_cond, v_uncond = v_cond.astype(jnp.float32), v_uncond.astype(jnp.float32)
    x_t = x_t.astype(jnp.float32)
    v = v_uncond + guidance.scale * (v_cond - v_uncond)
    if guidance.rescale == 0.0:
        return v
    path = guidance.path
    x1_cond = data_estimate(path, x_t, v_cond, t)
    x1_guided = data_estimate(path, x_t, v, t)
    axes = tuple(range(1, v.ndim))
    ratio = jnp.std(x1_cond, axis=axes, keepdims=True) / jnp.maximum(
        jnp.std(x1_guided, axis=axes, keepdims=True), 1e-12
    )
    a, b, da, db = coefficients(path, t)
    # dv/dx1 at fixed x_t: v = da x1 + db (x_t - a x1) / b.
    safe_b = jnp.maximum(b, _RESCALE_MIN_NOISE)
    dv_dx1 = jnp.where(b < _RESCALE_MIN_NOISE, 0.0, da - db * a / safe_b)
    return v + guidance.rescale * (ratio - 1.0) * x1_guided * dv_dx1


class GuidedVelocity:
    """The guided velocity function built by `guide` (see there). Hashable and equal for
    equal (velocity, guidance, null_condition identity), so the samplers, which take the
    velocity as a static argument, compile once per model and guidance, not once per call."""

    def __init__(self, velocity: Callable[..., jax.Array], guidance: Guidance, null_condition):
        self.velocity, self.guidance, self.null_condition = velocity, guidance, null_condition

    def _key(self):
        null = self.null_condition
        return (self.velocity, self.guidance, None if null is None else id(null))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other) -> bool:
        return isinstance(other, GuidedVelocity) and self._key() == other._key()

    def __call__(self, x, t, args):
        params, condition = args
        lo, hi = self.guidance.interval
        null = self.null_condition
        if null is None:
            null = jax.tree.map(jnp.zeros_like, condition)

        def both(_):
            nulls = jax.tree.map(lambda c, n: jnp.broadcast_to(n, c.shape), condition, null)
            stacked = jax.tree.map(lambda c, n: jnp.concatenate([c, n]), condition, nulls)
            out = self.velocity(jnp.concatenate([x, x]), t, (params, stacked))
            v_c, v_u = jnp.split(out, 2)
            return guided_velocity(v_c, v_u, x, t, self.guidance)

        def conditional(_):  # float32 like the guided branch (lax.cond needs one type)
            return self.velocity(x, t, (params, condition)).astype(jnp.float32)

        return jax.lax.cond((t >= lo) & (t <= hi), both, conditional, None)


def guide(
    velocity: Callable[..., jax.Array], guidance: Guidance, null_condition: Any = None
) -> Callable[..., jax.Array]:
    """A velocity function (x, t, (params, condition)) -> float32 v [B, ...] with guidance,
    built from the network's velocity(x, t, (params, condition)) for x [B, ...] and condition
    leaves [B, ...]; null_condition leaves [...] or [B, ...] (None: zeros, as in training).
    Inside the interval lo <= t <= hi the network runs once on the stacked batch
    [condition; null] (2B rows); outside it on the condition alone. Scale 1 returns
    `velocity` itself: guidance is then the conditional prediction with no extra call."""
    if not guidance.active:
        return velocity
    return GuidedVelocity(velocity, guidance, null_condition)
