"""Linen building blocks shared by every model (the VAE now, the flow DiTs next).

    options      ModelOptions: dtype, param_dtype, attention_impl, attention_chunk_size,
                 scan_layers, remat_policy (one hashable field `options` per module)
    layers       logical axis names and rules, constrain, dense, LayerNorm
    attention    dot_product_attention (xla / chunked / cudnn), HeadDense, Attention
    mlp          Mlp (GELU), GegluFeedForward
    transformer  TransformerBlock (pre-norm)
    adaln        modulate, DiTBlock (adaLN-Zero)
    embeddings   nerf_positional_encoding
    stack        remat by policy name, BlockStack (nn.scan or an unrolled loop)

Conventions (CONVENTIONS.md items 5, 10-12): every parameter carries logical axis names;
`dtype` is the compute dtype, `param_dtype` the storage dtype; norms, softmax and everything
numerically delicate run in float32.
"""

from ga_jax.models.common.adaln import DiTBlock, modulate
from ga_jax.models.common.attention import Attention, HeadDense, dot_product_attention
from ga_jax.models.common.embeddings import nerf_positional_encoding
from ga_jax.models.common.layers import (
    ACTIVATION_AXES,
    LOGICAL_AXIS_RULES,
    LayerNorm,
    constrain,
    dense,
)
from ga_jax.models.common.mlp import GegluFeedForward, Mlp
from ga_jax.models.common.options import ATTENTION_IMPLEMENTATIONS, Dtype, ModelOptions
from ga_jax.models.common.stack import REMAT_POLICIES, BlockStack, remat
from ga_jax.models.common.transformer import TransformerBlock

__all__ = [
    "ACTIVATION_AXES",
    "ATTENTION_IMPLEMENTATIONS",
    "LOGICAL_AXIS_RULES",
    "REMAT_POLICIES",
    "Attention",
    "BlockStack",
    "DiTBlock",
    "Dtype",
    "GegluFeedForward",
    "HeadDense",
    "LayerNorm",
    "Mlp",
    "ModelOptions",
    "TransformerBlock",
    "constrain",
    "dense",
    "dot_product_attention",
    "modulate",
    "nerf_positional_encoding",
    "remat",
]
