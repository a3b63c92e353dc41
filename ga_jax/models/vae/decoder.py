"""The 3D VAE decoder trunk (DESIGN.md section 3, steps 1-3): a per-token adaLN-Zero DiT.

    h [B, P, C] -> c = MLP(h) [B, P, D]       per-token conditioning
    x = learned per-index tokens [1, P, D]    (the token stream; no xyz input)
    x = DiT blocks(x, c) [B, P, D]            adaLN-Zero modulation from c, full attention

The surfel head (surfel_head.py) turns the features into surfels.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.layers import (
    Attention,
    BlockStack,
    Dtype,
    LayerNorm,
    Mlp,
    constrain,
    dense,
    modulate,
)

__all__ = ["DiTBlock", "Decoder"]


class DiTBlock(nn.Module):
    """adaLN-Zero block with per-token conditioning. x, c: [B, L, D] -> [B, L, D].

    (shift, scale, gate) x 2 = Linear(SiLU(c)) (zero init, so the block starts as the
    identity); x += gate_a * Attn(modulate(LN(x))); x += gate_m * MLP(modulate(LN(x))), LN
    without affine parameters, attention with qkv bias and QK-RMSNorm, GELU(tanh) MLP.
    """

    num_heads: int
    mlp_dim: int
    attention_impl: str = "xla"
    attention_chunk_size: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = x.shape[-1]
        x = constrain(x)
        mod = dense(
            6 * width,
            ("embed", "mlp"),
            kernel_init=nn.initializers.zeros_init(),
            name="adaln",
            **kw,
        )(nn.silu(c))
        # Modulation in float32: scale/shift act on normalised activations.
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.split(
            mod.astype(jnp.float32), 6, axis=-1
        )
        norm = LayerNorm(use_affine=False, dtype=jnp.float32, param_dtype=self.param_dtype)
        h = modulate(norm(x), shift_a, scale_a).astype(self.dtype)
        h = Attention(
            self.num_heads,
            width // self.num_heads,
            qkv_bias=True,
            qk_norm=True,
            attention_impl=self.attention_impl,
            attention_chunk_size=self.attention_chunk_size,
            name="attn",
            **kw,
        )(h)
        x = x + (gate_a * h).astype(self.dtype)
        h = modulate(norm(x), shift_m, scale_m).astype(self.dtype)
        h = Mlp(self.mlp_dim, gelu_approximate=True, name="mlp", **kw)(h)
        x = x + (gate_m * h).astype(self.dtype)
        return constrain(x)


class Decoder(nn.Module):
    """h [B, P, latent_dim] -> features [B, P, width] (DiT over the P point tokens)."""

    num_points: int = 768
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    cond_hidden: int = 10
    scan_layers: bool = True
    remat_policy: str = "none"
    attention_impl: str = "xla"
    attention_chunk_size: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if h.ndim != 3 or h.shape[1] != self.num_points:
            raise ValueError(
                f"h: expected [B, num_points={self.num_points}, C] (the decoder has one learned "
                f"token per point index), got {h.shape}"
            )
        c = Mlp(
            self.cond_hidden,
            self.width,
            gelu_approximate=True,
            axes=("latent", None, "embed"),
            name="cond_mlp",
            **kw,
        )(h.astype(self.dtype))
        tokens = self.param(
            "token_embed",
            nn.with_logical_partitioning(
                nn.initializers.truncated_normal(0.02), (None, "tokens", "embed")
            ),
            (1, self.num_points, self.width),
            self.param_dtype,
        )
        x = jnp.broadcast_to(tokens.astype(self.dtype), (h.shape[0], self.num_points, self.width))
        return BlockStack(
            DiTBlock,
            dict(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                attention_impl=self.attention_impl,
                attention_chunk_size=self.attention_chunk_size,
                **kw,
            ),
            num_layers=self.depth,
            scan_layers=self.scan_layers,
            remat_policy=self.remat_policy,
            name="blocks",
        )(x, constrain(c))
