"""The train state of any task, built sharded from its abstract shape (CONVENTIONS.md 4, 8).

    abstract, shardings = abstract_train_state(task, optimizer, mesh, rules, rng, ema=False)
    state = jax.jit(init, out_shardings=shardings)(rng)        # create_train_state
    state = checkpointer.restore(step, abstract)               # or restore: nothing random

The state's shapes come from jax.eval_shape of the task's init, their shardings from the
parameters' logical axis names (ga_jax.parallel.mesh.logical_shardings), so neither a fresh
nor a restored state is ever materialised whole on one device, and a restore never builds a
random state first.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from ga_jax.parallel.mesh import logical_shardings

__all__ = ["TrainState", "abstract_train_state", "create_train_state", "ema_update"]


@struct.dataclass
class TrainState:
    """step, params and their optimiser state; ema_params (a moving average of params, when
    train.ema_decay > 0) and extra (state a task trains beside its parameters, e.g. the VAE's
    PatchGAN discriminator and its optimiser state) are None when unused."""

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any = None
    extra: Any = None


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """ema <- decay ema + (1 - decay) params, leaf by leaf, in the parameters' dtype."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema, params)


def _init_fn(task, optimizer: optax.GradientTransformation, ema: bool):
    # Both task inits get the same key: a task derives its own streams from it.
    def init(rng, params=None):
        if params is None:
            params = nn.unbox(task.init_params(rng))
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            ema_params=params if ema else None,
            extra=task.init_extra(rng),
        )

    return init


def abstract_train_state(task, optimizer, mesh, rules, rng, *, ema: bool = False):
    """(abstract state, shardings): jax.ShapeDtypeStructs carrying their shardings (a restore
    target) and the TrainState of NamedShardings (jit out_shardings).

    Parameters shard by their logical axis names; the optimiser state's parameter-shaped parts
    (Adam moments) like their parameters (optax.tree_utils.tree_map_params), its other leaves
    (counts) replicated; EMA parameters like the parameters; the task's extra state by
    task.extra_shardings (replicated by default).
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    boxed = jax.eval_shape(task.init_params, rng)
    param_shardings = logical_shardings(boxed, mesh, rules)
    abstract = jax.eval_shape(_init_fn(task, optimizer, ema), rng)
    opt_shardings = optax.tree_utils.tree_map_params(
        optimizer,
        # Moments of parameters outside an optimiser group are optax.MaskedNode: keep them.
        lambda leaf, sharding: leaf if isinstance(leaf, optax.MaskedNode) else sharding,
        abstract.opt_state,
        param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )
    shardings = TrainState(
        step=replicated,
        params=param_shardings,
        opt_state=opt_shardings,
        ema_params=param_shardings if ema else None,
        extra=task.extra_shardings(abstract.extra, mesh),
    )
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )
    return abstract, shardings


def create_train_state(task, optimizer, mesh, rules, rng, *, ema: bool = False, params=None):
    """(state, shardings): a fresh state at step 0 created already sharded by a jitted init;
    with `params` (sharded as the state's parameters) those instead of random ones."""
    _, shardings = abstract_train_state(task, optimizer, mesh, rules, rng, ema=ema)
    init = jax.jit(_init_fn(task, optimizer, ema), out_shardings=shardings)
    return init(rng, params), shardings
