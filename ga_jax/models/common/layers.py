"""Primitive layers and sharding helpers: logical axis names, `constrain`, `dense`, `LayerNorm`.

Primitives take `dtype` / `param_dtype` directly (as flax's nn.Dense does) because callers
override them per use (float32 heads and norms); composite modules take a ModelOptions.

Logical axis names (CONVENTIONS.md item 5): 'embed' (model width), 'mlp' (hidden width of
MLPs and adaLN outputs), 'heads', 'kv' (per-head width), 'layers' (added by scan),
'conv_in'/'conv_out' (conv kernels), 'norm' (norm scales/biases), 'tokens' (learned
per-index tokens) and 'latent' (the small latent MLPs). `LOGICAL_AXIS_RULES` maps them to
mesh axes; a config may override it (`config.mesh.rules`). Token-stream activations are
constrained with ('batch', 'length', 'embed').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common.options import Dtype
from ga_jax.parallel.mesh import DEFAULT_RULES

__all__ = [
    "ACTIVATION_AXES",
    "LOGICAL_AXIS_RULES",
    "LayerNorm",
    "constrain",
    "dense",
]

# The one table of logical -> mesh axes (ga_jax/parallel/mesh.py); a config may override it.
LOGICAL_AXIS_RULES = DEFAULT_RULES

ACTIVATION_AXES = ("batch", "length", "embed")

_XAVIER = nn.initializers.xavier_uniform()
_ZEROS = nn.initializers.zeros_init()


def constrain(x: jax.Array, axes: Sequence[str | None] = ACTIVATION_AXES) -> jax.Array:
    """Logical sharding constraint on an activation (a no-op outside a mesh/rules context)."""
    return nn.with_logical_constraint(x, tuple(axes))


def dense(
    features: int,
    axes: tuple[str | None, str | None],
    *,
    use_bias: bool = True,
    kernel_init: Callable = _XAVIER,
    bias_init: Callable = _ZEROS,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Dense:
    """nn.Dense whose kernel [in, out] carries logical names `axes` and bias [out] axes[1]."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=nn.with_logical_partitioning(kernel_init, axes),
        bias_init=nn.with_logical_partitioning(bias_init, (axes[1],)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class LayerNorm(nn.Module):
    """LayerNorm over the last axis, computed in float32, returned in `dtype`.

    use_affine=False gives the parameter-free LN of adaLN blocks.
    """

    epsilon: float = 1e-6
    use_affine: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.use_affine:
            shape, axes = (x.shape[-1],), ("norm",)
            ones = nn.with_logical_partitioning(nn.initializers.ones_init(), axes)
            zeros = nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)
            y = y * self.param("scale", ones, shape, self.param_dtype)
            y = y + self.param("bias", zeros, shape, self.param_dtype)
        return y.astype(self.dtype)
