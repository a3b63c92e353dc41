"""The 3D VAE decoder trunk (DESIGN.md section 3, steps 1-3): a per-token adaLN-Zero DiT.

    h [B, P, C] -> c = MLP(h) [B, P, D]       per-token conditioning
    x = learned per-index tokens [1, P, D]    (the token stream; no xyz input)
    x = DiT blocks(x, c) [B, P, D]            adaLN-Zero modulation from c, full attention

The DiT block is the generic adaLN-Zero block (ga_jax/models/common/adaln.py). The surfel
head (surfel_head.py) turns the features into surfels.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common import BlockStack, DiTBlock, Mlp, ModelOptions, constrain

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """h [B, P, latent_dim] -> features [B, P, width] (DiT over the P point tokens)."""

    num_points: int = 768
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    cond_hidden: int = 10
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        opts = self.options
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
            options=opts,
            name="cond_mlp",
        )(h.astype(opts.dtype))
        tokens = self.param(
            "token_embed",
            nn.with_logical_partitioning(
                nn.initializers.truncated_normal(0.02), (None, "tokens", "embed")
            ),
            (1, self.num_points, self.width),
            opts.param_dtype,
        )
        x = jnp.broadcast_to(tokens.astype(opts.dtype), (h.shape[0], self.num_points, self.width))
        return BlockStack(
            DiTBlock,
            dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, options=opts),
            num_layers=self.depth,
            scan_layers=opts.scan_layers,
            remat_policy=opts.remat_policy,
            name="blocks",
        )(x, constrain(c))
