"""Multi-head attention: dot_product_attention (xla / chunked / cudnn), the head projection
HeadDense, and the Attention module (self- or cross-attention, optional QK-RMSNorm)."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common.options import ATTENTION_IMPLEMENTATIONS, Dtype, ModelOptions

__all__ = ["Attention", "HeadDense", "dot_product_attention"]

_XAVIER = nn.initializers.xavier_uniform()
_ZEROS = nn.initializers.zeros_init()


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    implementation: str = "xla",
    chunk_size: int = 1024,
    key_mask: jax.Array | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v with the softmax in float32.

    q: [B, Lq, H, D], k, v: [B, Lk, H, D] -> [B, Lq, H, D] in q.dtype.
    key_mask: optional bool [B, Lk]; keys where it is False get no weight (every row needs
      at least one True key).
    implementation:
      'xla'      plain einsums; materialises [B, H, Lq, Lk] logits.
      'chunked'  the same maths over query chunks of `chunk_size` under lax.map with each
                 chunk rematerialised, so memory is O(chunk_size * Lk): needed for the
                 encoder's joint attention over all views' tokens (32,768 at paper size).
      'cudnn'    jax.nn.dot_product_attention(implementation='cudnn') (GPU flash
                 attention; needs bf16/fp16 inputs).
    """
    scale = q.shape[-1] ** -0.5

    mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, Lk]

    def attend(qc: jax.Array) -> jax.Array:
        logits = jnp.einsum("bqhd,bkhd->bhqk", qc, k, preferred_element_type=jnp.float32)
        probs = jax.nn.softmax(logits * scale, axis=-1, where=mask).astype(v.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v)

    if implementation == "xla":
        return attend(q)
    if implementation == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, mask=mask, implementation="cudnn")
    if implementation != "chunked":
        raise ValueError(
            f"attention_impl: expected one of {ATTENTION_IMPLEMENTATIONS}, got {implementation!r}"
        )
    b, lq, h, d = q.shape
    if lq <= chunk_size:
        return attend(q)
    num_chunks = -(-lq // chunk_size)
    pad = num_chunks * chunk_size - lq
    qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
    chunks = jnp.moveaxis(qp.reshape(b, num_chunks, chunk_size, h, d), 1, 0)
    out = jax.lax.map(jax.checkpoint(attend), chunks)  # [num_chunks, B, chunk, H, D]
    out = jnp.moveaxis(out, 0, 1).reshape(b, num_chunks * chunk_size, h, d)
    return out[:, :lq]


class HeadDense(nn.Module):
    """A linear map between multi-axis shapes, e.g. [..., E] -> [..., H, D] or
    [..., H, D] -> [..., E]: kernel [*in_dims, *features] named `axes`, bias [*features].

    Used instead of nn.DenseGeneral, which initialises a flattened 2-D kernel and then
    applies the 3 logical names to it; under a mesh that constraint fails on the rank.
    xavier_uniform sees the flattened fans (prod(in_dims), prod(features)). A primitive
    like nn.Dense: it takes dtype / param_dtype, not a ModelOptions.
    """

    features: tuple[int, ...]
    axes: tuple[str | None, ...]
    num_in_axes: int = 1
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.num_in_axes
        in_dims = x.shape[-n:]
        features = tuple(self.features)
        flat = (math.prod(in_dims), math.prod(features))

        def kernel_init(key, shape, dtype=jnp.float32):
            return _XAVIER(key, flat, dtype).reshape(shape)

        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(kernel_init, self.axes),
            in_dims + features,
            self.param_dtype,
        )
        y = jnp.tensordot(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            axes=(tuple(range(-n, 0)), tuple(range(n))),
        )
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(_ZEROS, self.axes[n:]),
                features,
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y


class Attention(nn.Module):
    """Multi-head (self- or cross-) attention.

    x: [B, Lq, E], context: [B, Lk, Ec] (default x) -> [B, Lq, out_features or E].
    qk_norm: per-head RMSNorm (learned scale over the head dim) on queries and keys, in
    float32, which keeps logits bounded in bf16 training. options: dtype, param_dtype,
    attention_impl and attention_chunk_size.
    """

    num_heads: int
    head_dim: int
    out_features: int | None = None
    qkv_bias: bool = False
    qk_norm: bool = False
    norm_epsilon: float = 1e-6  # of the QK-RMSNorm (the flow DiTs use the reference's 1e-5)
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        key_mask: jax.Array | None = None,  # [B, Lk] bool, see dot_product_attention
    ) -> jax.Array:
        opts = self.options
        context = x if context is None else context
        proj = functools.partial(
            HeadDense,
            features=(self.num_heads, self.head_dim),
            axes=("embed", "heads", "kv"),
            use_bias=self.qkv_bias,
            dtype=opts.dtype,
            param_dtype=opts.param_dtype,
        )
        q = proj(name="query")(x)
        k = proj(name="key")(context)
        v = proj(name="value")(context)
        if self.qk_norm:
            norm = functools.partial(
                nn.RMSNorm,
                epsilon=self.norm_epsilon,
                dtype=jnp.float32,
                param_dtype=opts.param_dtype,
                scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("kv",)),
            )
            q = norm(name="query_norm")(q.astype(jnp.float32)).astype(opts.dtype)
            k = norm(name="key_norm")(k.astype(jnp.float32)).astype(opts.dtype)
        out = dot_product_attention(
            q,
            k,
            v,
            implementation=opts.attention_impl,
            chunk_size=opts.attention_chunk_size,
            key_mask=key_mask,
        )
        return HeadDense(
            features=(self.out_features or x.shape[-1],),
            axes=("heads", "kv", "embed"),
            num_in_axes=2,
            dtype=opts.dtype,
            param_dtype=opts.param_dtype,
            name="out",
        )(out)
