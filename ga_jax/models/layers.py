"""Shared Linen building blocks: attention, MLPs, NeRF positional encoding, adaLN helpers,
and the scan/remat wrapper for stacks of identical blocks.

Conventions (CONVENTIONS.md items 5, 10-12):
- Every parameter carries logical axis names (`nn.with_logical_partitioning`); the names
  used here are 'embed' (model width), 'mlp' (hidden width of MLPs and adaLN outputs),
  'heads', 'kv' (per-head width), 'layers' (added by scan), 'conv_in'/'conv_out' (conv
  kernels), 'norm' (norm scales/biases), 'tokens' (learned per-index tokens) and 'latent'
  (the small latent MLPs). `LOGICAL_AXIS_RULES` maps them to mesh axes; a config may
  override it (`config.mesh.rules`).
- Activations of token streams are constrained with ('batch', 'length', 'embed').
- `dtype` is the compute dtype (bf16 on accelerators), `param_dtype` the storage dtype
  (f32). Norms, softmax and everything numerically delicate run in float32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.parallel.mesh import DEFAULT_RULES

__all__ = [
    "ACTIVATION_AXES",
    "LOGICAL_AXIS_RULES",
    "REMAT_POLICIES",
    "Attention",
    "BlockStack",
    "Dtype",
    "GegluFeedForward",
    "HeadDense",
    "LayerNorm",
    "Mlp",
    "TransformerBlock",
    "constrain",
    "dense",
    "dot_product_attention",
    "modulate",
    "nerf_positional_encoding",
    "remat",
]

Dtype = Any

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


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """adaLN modulation x * (1 + scale) + shift (shapes broadcast; per token here)."""
    return x * (1 + scale) + shift


def nerf_positional_encoding(x: jax.Array, num_freqs: int = 10) -> jax.Array:
    """NeRF encoding [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(K-1) x), cos(2^(K-1) x)].

    x: [..., C] (xyz in world units, no pi factor). Returns [..., C * (1 + 2K)] float32,
    ordered as above with each term C wide (63 dims for C=3, K=10).
    """
    x = x.astype(jnp.float32)
    parts = [x]
    for k in range(num_freqs):
        parts += [jnp.sin(x * 2.0**k), jnp.cos(x * 2.0**k)]
    return jnp.concatenate(parts, axis=-1)


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
        return jax.nn.dot_product_attention(
            q, k, v, scale=scale, mask=mask, implementation="cudnn"
        )
    if implementation != "chunked":
        raise ValueError(
            f"attention_impl: expected 'xla', 'chunked' or 'cudnn', got {implementation!r}"
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
    xavier_uniform sees the flattened fans (prod(in_dims), prod(features)).
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
    float32, which keeps logits bounded in bf16 training.
    """

    num_heads: int
    head_dim: int
    out_features: int | None = None
    qkv_bias: bool = False
    qk_norm: bool = False
    attention_impl: str = "xla"
    attention_chunk_size: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        key_mask: jax.Array | None = None,  # [B, Lk] bool, see dot_product_attention
    ) -> jax.Array:
        context = x if context is None else context
        proj = functools.partial(
            HeadDense,
            features=(self.num_heads, self.head_dim),
            axes=("embed", "heads", "kv"),
            use_bias=self.qkv_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        q = proj(name="query")(x)
        k = proj(name="key")(context)
        v = proj(name="value")(context)
        if self.qk_norm:
            norm = functools.partial(
                nn.RMSNorm,
                epsilon=1e-6,
                dtype=jnp.float32,
                param_dtype=self.param_dtype,
                scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("kv",)),
            )
            q = norm(name="query_norm")(q.astype(jnp.float32)).astype(self.dtype)
            k = norm(name="key_norm")(k.astype(jnp.float32)).astype(self.dtype)
        out = dot_product_attention(
            q,
            k,
            v,
            implementation=self.attention_impl,
            chunk_size=self.attention_chunk_size,
            key_mask=key_mask,
        )
        return HeadDense(
            features=(self.out_features or x.shape[-1],),
            axes=("heads", "kv", "embed"),
            num_in_axes=2,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="out",
        )(out)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear. x: [..., E] -> [..., out_dim or E].

    axes: logical names of (input, hidden, output) widths; the defaults suit transformer
    MLPs, the latent MLPs pass ('latent', None, ...) (a name may not repeat in one kernel).
    """

    hidden_dim: int
    out_dim: int | None = None
    gelu_approximate: bool = False
    axes: tuple[str | None, str | None, str | None] = ("embed", "mlp", "embed")
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        out_dim = self.out_dim or x.shape[-1]
        x = dense(self.hidden_dim, self.axes[:2], name="fc1", **kw)(x)
        x = nn.gelu(x, approximate=self.gelu_approximate)
        return dense(out_dim, self.axes[1:], name="fc2", **kw)(x)


class GegluFeedForward(nn.Module):
    """SD-style GEGLU FFN: Linear(E -> 2H), a * gelu(gate), Linear(H -> E). x: [..., E]."""

    hidden_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        a, gate = jnp.split(
            dense(2 * self.hidden_dim, ("embed", "mlp"), name="proj", **kw)(x), 2, -1
        )
        return dense(x.shape[-1], ("mlp", "embed"), name="out", **kw)(a * nn.gelu(gate, False))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)); x + MLP(LN(x)). x: [B, L, E] -> [B, L, E]."""

    num_heads: int
    head_dim: int
    mlp_dim: int
    qkv_bias: bool = True
    qk_norm: bool = True
    gelu_approximate: bool = False
    attention_impl: str = "xla"
    attention_chunk_size: int = 1024
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = constrain(x)
        x = x + Attention(
            self.num_heads,
            self.head_dim,
            qkv_bias=self.qkv_bias,
            qk_norm=self.qk_norm,
            attention_impl=self.attention_impl,
            attention_chunk_size=self.attention_chunk_size,
            name="attn",
            **kw,
        )(LayerNorm(name="norm1", **kw)(x))
        x = x + Mlp(self.mlp_dim, gelu_approximate=self.gelu_approximate, name="mlp", **kw)(
            LayerNorm(name="norm2", **kw)(x)
        )
        return constrain(x)


REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": None,  # recompute everything in the backward pass
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def remat(module_cls: type[nn.Module], policy: str, *, prevent_cse: bool = True):
    """`module_cls` wrapped in nn.remat with the named policy ('none' returns it as is)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat_policy: expected one of {sorted(REMAT_POLICIES)}, got {policy!r}")
    if policy == "none":
        return module_cls
    return nn.remat(module_cls, policy=REMAT_POLICIES[policy], prevent_cse=prevent_cse)


class BlockStack(nn.Module):
    """`num_layers` copies of `block_cls(**block_kwargs)` applied in sequence.

    Each block maps (x, *args) -> x; args (e.g. a conditioning tensor) are shared by all
    blocks. scan_layers=True runs one nn.scan over stacked parameters (leading 'layers'
    axis; params under `<name>/layers/...`), giving one compiled block; False unrolls a loop
    (params under `<name>/layers_<i>/...`). The two hold the same numbers: stack or unstack
    the leaves to convert. remat_policy wraps each block in nn.remat (see REMAT_POLICIES).
    """

    block_cls: type[nn.Module]
    block_kwargs: dict
    num_layers: int
    scan_layers: bool = True
    remat_policy: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, *args: jax.Array) -> jax.Array:
        # prevent_cse is only needed outside scan (scan already blocks the CSE it guards).
        block = remat(self.block_cls, self.remat_policy, prevent_cse=not self.scan_layers)
        kwargs = dict(self.block_kwargs)
        if not self.scan_layers:
            for i in range(self.num_layers):
                x = block(**kwargs, name=f"layers_{i}")(x, *args)
            return x

        def body(module, carry, *shared):
            return module(carry, *shared), None

        scanned = nn.scan(
            body,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast,) * len(args),
            length=self.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, _ = scanned(block(**kwargs, name="layers"), x, *args)
        return x
