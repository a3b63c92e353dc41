"""What a flow stage is beyond its DiT, shared by its training task and the Pipeline:
its parameters {'dit'[, 'condition']} (the second for a trainable conditioner) and the DiT as
the velocity function the samplers integrate (ga_jax/flow/samplers.py).

The samplers call v(x, t, args) with a scalar t; guidance (ga_jax/flow/guidance.py) passes
args = (params_slot, condition) and replaces only the condition by its null, on a batch it
doubles to [condition; null]. So the stage-1 xyz that stage 2 reads, which guidance must not
null, rides in the params slot: args = ((dit_params, xyz or None), {'context', 'pooled'}),
and xyz is tiled to x's batch when guidance has doubled it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ga_jax.models.flow.dit import PointDiT


def init_stage_params(model: PointDiT, conditioner: Any, rng: jax.Array) -> dict[str, Any]:
    """{'dit': the DiT's parameters[, 'condition': the trainable conditioner's]} (leaves
    boxed with logical axis names). Shapes do not depend on the point or token counts."""
    dit_rng, cond_rng = jax.random.split(rng)
    n = 4
    xyz = jnp.zeros((1, n, 3)) if model.xyz_condition else None
    params = {
        "dit": model.init(
            dit_rng,
            jnp.zeros((1, n, model.in_dim)),
            jnp.zeros((1,)),
            jnp.zeros((1, 1, model.context_dim)),
            jnp.zeros((1, model.pooled_dim)),
            xyz,
        )["params"]
    }
    if conditioner.trainable:
        params["condition"] = conditioner.init(cond_rng)
    return params


class SwitchedPoints(NamedTuple):
    """Stage 2's points changing during one sample: `before` [B0, P, 3] while t < t_switch,
    `after` from then on. An edit rerun with strength s < 1 (Pipeline.edit) sees the original
    geometry until t = 1 - s, so the trajectory up to there is the original sample's, then the
    edited geometry."""

    before: jax.Array
    after: jax.Array
    t_switch: jax.Array


@dataclasses.dataclass(frozen=True)
class StageVelocity:
    """v(x [B, P, D], t scalar, ((dit_params, xyz [B0, P, 3] | SwitchedPoints | None),
    condition)) -> [B, P, D] float32. Hashable (the samplers take it as a static argument):
    equal for equal modules, so building it again does not recompile."""

    model: PointDiT

    def __call__(self, x: jax.Array, t: jax.Array, args: Any) -> jax.Array:
        (params, xyz), condition = args
        if isinstance(xyz, SwitchedPoints):
            xyz = jnp.where(t < xyz.t_switch, xyz.before, xyz.after)
        if xyz is not None and xyz.shape[0] != x.shape[0]:
            xyz = jnp.tile(xyz, (x.shape[0] // xyz.shape[0], 1, 1))
        t = jnp.full((x.shape[0],), t, jnp.float32)
        return self.model.apply(
            {"params": params}, x, t, condition["context"], condition["pooled"], xyz
        )
