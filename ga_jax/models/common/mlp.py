"""Feed-forward blocks: the GELU Mlp (transformer MLPs, small latent MLPs) and the SD-style
GEGLU feed-forward."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common.layers import dense
from ga_jax.models.common.options import ModelOptions

__all__ = ["GegluFeedForward", "Mlp"]


class Mlp(nn.Module):
    """Linear -> GELU -> Linear. x: [..., E] -> [..., out_dim or E].

    axes: logical names of (input, hidden, output) widths; the defaults suit transformer
    MLPs, the latent MLPs pass ('latent', None, ...) (a name may not repeat in one kernel).
    options: dtype and param_dtype.
    """

    hidden_dim: int
    out_dim: int | None = None
    gelu_approximate: bool = False
    axes: tuple[str | None, str | None, str | None] = ("embed", "mlp", "embed")
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.options.dtype, param_dtype=self.options.param_dtype)
        out_dim = self.out_dim or x.shape[-1]
        x = dense(self.hidden_dim, self.axes[:2], name="fc1", **kw)(x)
        x = nn.gelu(x, approximate=self.gelu_approximate)
        return dense(out_dim, self.axes[1:], name="fc2", **kw)(x)


class GegluFeedForward(nn.Module):
    """SD-style GEGLU FFN: Linear(E -> 2H), a * gelu(gate), Linear(H -> E). x: [..., E].

    options: dtype and param_dtype.
    """

    hidden_dim: int
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.options.dtype, param_dtype=self.options.param_dtype)
        a, gate = jnp.split(
            dense(2 * self.hidden_dim, ("embed", "mlp"), name="proj", **kw)(x), 2, -1
        )
        return dense(x.shape[-1], ("mlp", "embed"), name="out", **kw)(a * nn.gelu(gate, False))
