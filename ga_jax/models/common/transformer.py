"""The pre-norm transformer block (ViT style): x + Attn(LN(x)); x + MLP(LN(x))."""

from __future__ import annotations

import flax.linen as nn
import jax

from ga_jax.models.common.attention import Attention
from ga_jax.models.common.layers import LayerNorm, constrain
from ga_jax.models.common.mlp import Mlp
from ga_jax.models.common.options import ModelOptions

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)); x + MLP(LN(x)). x: [B, L, E] -> [B, L, E].

    options: dtype, param_dtype, attention_impl, attention_chunk_size (stack it with
    BlockStack for scan_layers / remat_policy).
    """

    num_heads: int
    head_dim: int
    mlp_dim: int
    qkv_bias: bool = True
    qk_norm: bool = True
    gelu_approximate: bool = False
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        opts = self.options
        norm_kw = dict(dtype=opts.dtype, param_dtype=opts.param_dtype)
        x = constrain(x)
        x = x + Attention(
            self.num_heads,
            self.head_dim,
            qkv_bias=self.qkv_bias,
            qk_norm=self.qk_norm,
            options=opts,
            name="attn",
        )(LayerNorm(name="norm1", **norm_kw)(x))
        x = x + Mlp(self.mlp_dim, gelu_approximate=self.gelu_approximate, options=opts, name="mlp")(
            LayerNorm(name="norm2", **norm_kw)(x)
        )
        return constrain(x)
