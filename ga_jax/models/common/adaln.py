"""adaLN-Zero (DiT) pieces: the modulation x * (1 + scale) + shift and the DiT block whose
norms are modulated by a conditioning tensor and whose residual branches are gated, with
the modulation zero-initialised so every block starts as the identity.

The VAE decoder conditions per token (c [B, L, D]); a DiT conditioned per sample passes
c [B, 1, D], which broadcasts over the tokens.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common.attention import Attention
from ga_jax.models.common.layers import LayerNorm, constrain, dense
from ga_jax.models.common.mlp import Mlp
from ga_jax.models.common.options import ModelOptions

__all__ = ["DiTBlock", "modulate"]


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """adaLN modulation x * (1 + scale) + shift (shapes broadcast: per token or per sample)."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """adaLN-Zero block. x: [B, L, D], c: [B, L, D] or [B, 1, D] -> [B, L, D].

    (shift, scale, gate) x 2 = Linear(SiLU(c)) (zero init, so the block starts as the
    identity); x += gate_a * Attn(modulate(LN(x))); x += gate_m * MLP(modulate(LN(x))), LN
    without affine parameters, attention with qkv bias and QK-RMSNorm, GELU(tanh) MLP.
    options: dtype, param_dtype, attention_impl, attention_chunk_size (stack it with
    BlockStack for scan_layers / remat_policy).
    """

    num_heads: int
    mlp_dim: int
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        opts = self.options
        width = x.shape[-1]
        x = constrain(x)
        mod = dense(
            6 * width,
            ("embed", "mlp"),
            kernel_init=nn.initializers.zeros_init(),
            dtype=opts.dtype,
            param_dtype=opts.param_dtype,
            name="adaln",
        )(nn.silu(c))
        # Modulation in float32: scale/shift act on normalised activations.
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.split(
            mod.astype(jnp.float32), 6, axis=-1
        )
        norm = LayerNorm(use_affine=False, dtype=jnp.float32, param_dtype=opts.param_dtype)
        h = modulate(norm(x), shift_a, scale_a).astype(opts.dtype)
        h = Attention(
            self.num_heads,
            width // self.num_heads,
            qkv_bias=True,
            qk_norm=True,
            options=opts,
            name="attn",
        )(h)
        x = x + (gate_a * h).astype(opts.dtype)
        h = modulate(norm(x), shift_m, scale_m).astype(opts.dtype)
        h = Mlp(self.mlp_dim, gelu_approximate=True, options=opts, name="mlp")(h)
        x = x + (gate_m * h).astype(opts.dtype)
        return constrain(x)
