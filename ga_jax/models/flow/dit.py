"""The point DiT of both flow stages (DESIGN.md section 6): a PixArt-style transformer over
the latent's points, conditioned on a global vector (time + pooled condition) through
AdaLN-single and on condition tokens through cross-attention.

    v = PointDiT(...)(x, t, context, pooled, xyz=None)
        x [B, N, in_dim] the noisy stage data, t [B] in [0, 1] (0 noise, 1 data; fed to the
        sinusoid as is, as the reference's flow transport does), context [B, L, context_dim]
        condition tokens, pooled [B, pooled_dim], xyz [B, N, 3] the stage-1 points (stage 2
        only) -> v [B, N, out_dim] float32

No positional embedding: the network is permutation-equivariant over the points.

The module tree follows the reference's classes at NIRVANALAN/GaussianAnything 3cf3fde
(dit/dit_i23d.py, dit/dit_trilatent.py, dit/dit_models_xformers.py), so that a converter can
map released weights one to one. Reference name -> ours:

  x_embedder.fc1 / fc2                      x_embedder/fc1, fc2 (GELU tanh between)
  xyz_pos_embed.xyz_projection (stage 2)    xyz_pos_embed (on NeRF-PE(xyz / xyz_scale))
  t_embedder.mlp.0 / mlp.2                  t_embedder_mlp_0, t_embedder_mlp_2 (256-d
                                            sinusoid, SiLU between)
  pooled_vec_embedder (image) or
  cap_embedder (text): LayerNorm + Linear   pooled_embedder_norm, pooled_embedder_linear
                                            (zero init)
  adaLN_modulation.1 (shared)               adaLN_modulation (SiLU -> Linear, zero init)
  blocks.i.scale_shift_table                blocks/layers/scale_shift_table (6, D)
  blocks.i.norm1 / norm2 (RMSNorm)          norm1, norm2
  blocks.i.attn.qkv / proj / q_norm / k_norm  attn/query, key, value (qkv split in three),
                                            out, query_norm, key_norm
                                            (blocks/layers_i/... with scan_layers off)
  blocks.i.mlp (xformers FusedMLP, exact GELU)  mlp/fc1, fc2
  blocks.i.cross_attn_dino (image) or
  blocks.i.cross_attn (text): to_q/k/v, q_norm/k_norm, to_out.0
                                            cross_attn/query, key, value, query_norm,
                                            key_norm, out
  blocks.i.prenorm_ca_dino / prenorm_ca_text  prenorm_ca
  blocks.i.attention_y_norm (text)          context_norm (RMSNorm of the text tokens)
  final_layer (image: T2IFinalLayer, a (2, D) table + g; text: FinalLayer, SiLU -> Linear
  from g)                                   final_layer_scale_shift_table or
                                            final_layer_adaLN_modulation, final_layer_linear

Block order: condition 'image' is CA -> SA -> FFN (the reference's
ImageCondDiTBlockPixelArtRMSNormClayLRM); 'text' is SA -> CA -> FFN
(PixelArtTextCondDiTBlock). Self-attention and FFN are gated and modulated by
(scale_shift_table + AdaLN(g)); cross-attention is a plain pre-norm residual.

Not carried over (parameters the reference classes build but never use; counted in
tests/models/flow/test_dit.py): the image model's clip_text_proj and clip_spatial_proj
(2 x 2,099,200 at paper size) and each image block's attention_y_norm (1,024 per block).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common.adaln import modulate
from ga_jax.models.common.attention import Attention
from ga_jax.models.common.embeddings import nerf_positional_encoding
from ga_jax.models.common.layers import LayerNorm, constrain, dense
from ga_jax.models.common.mlp import Mlp
from ga_jax.models.common.options import ModelOptions
from ga_jax.models.common.stack import BlockStack

CONDITIONS = ("image", "text")
# The reference's RMSNorm epsilon (dit/norm.py and apex's default).
RMS_EPS = 1e-5
FREQUENCY_DIM = 256
_T_INIT = nn.initializers.normal(0.02)
_ZERO = nn.initializers.zeros_init()


def timestep_embedding(t: jax.Array, dim: int = FREQUENCY_DIM, max_period: float = 1e4):
    """[cos(t f_k), sin(t f_k)] with f_k = max_period^(-k / (dim/2)): t [B] -> [B, dim]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def rms_norm(name: str, param_dtype) -> nn.RMSNorm:
    """RMSNorm with a learned scale (float32), the reference's epsilon."""
    return nn.RMSNorm(
        epsilon=RMS_EPS,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
        name=name,
    )


def scale_shift_table(module: nn.Module, name: str, rows: int, width: int, param_dtype):
    """PixArt's learned (rows, width) modulation table, initialised N(0, 1 / width)."""

    def init(key, shape, dtype):
        return jax.random.normal(key, shape, dtype) / math.sqrt(width)

    return module.param(
        name, nn.with_logical_partitioning(init, (None, "embed")), (rows, width), param_dtype
    )


class PointDiTBlock(nn.Module):
    """x [B, N, D], modulation m [B, 6, D] (the shared AdaLN output), context [B, L, Dc]."""

    num_heads: int
    mlp_dim: int
    condition: str
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array, mod: jax.Array, context: jax.Array) -> jax.Array:
        opts = self.options
        width = x.shape[-1]
        x = constrain(x)
        table = scale_shift_table(self, "scale_shift_table", 6, width, opts.param_dtype)
        m = table[None].astype(jnp.float32) + mod  # [B, 6, D]
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.split(m, 6, axis=1)
        head_dim = width // self.num_heads
        attention = dict(qk_norm=True, norm_epsilon=RMS_EPS, options=opts)

        def cross_attention(x):
            h = rms_norm("prenorm_ca", opts.param_dtype)(x).astype(opts.dtype)
            c = context
            if self.condition == "text":
                c = rms_norm("context_norm", opts.param_dtype)(c)
            h = Attention(self.num_heads, head_dim, name="cross_attn", **attention)(
                h, c.astype(opts.dtype)
            )
            return x + h.astype(x.dtype)

        def self_attention(x):
            h = modulate(rms_norm("norm1", opts.param_dtype)(x), shift_a, scale_a)
            h = Attention(self.num_heads, head_dim, qkv_bias=True, name="attn", **attention)(
                h.astype(opts.dtype)
            )
            return x + (gate_a * h).astype(x.dtype)

        if self.condition == "image":
            x = self_attention(cross_attention(x))
        else:
            x = cross_attention(self_attention(x))
        h = modulate(rms_norm("norm2", opts.param_dtype)(x), shift_m, scale_m)
        h = Mlp(self.mlp_dim, gelu_approximate=False, options=opts, name="mlp")(
            h.astype(opts.dtype)
        )
        x = x + (gate_m * h).astype(x.dtype)
        return constrain(x)


class PointDiT(nn.Module):
    """The stage DiT (module docstring). Fields:

    in_dim, out_dim    3 for stage 1 (xyz), the latent width C for stage 2
    width, depth, num_heads, mlp_dim   the transformer (paper: 1024, 24, 16, 4096)
    condition          'image' (CA -> SA -> FFN, T2I final layer) | 'text' (SA -> CA -> FFN,
                       DiT final layer)
    context_dim        width of the condition tokens (DINOv2 1024, CLIP text 768, ...)
    pooled_dim         width of the pooled condition vector
    xyz_condition      stage 2: add Linear(NeRF-PE(xyz / xyz_scale)) to the input tokens
    xyz_scale, pe_frequencies   that encoding's input scale (the object box, 0.45) and
                       frequency count (10: 63 channels)
    options            ModelOptions (dtype, param_dtype, scan_layers, remat_policy, attention)
    """

    in_dim: int
    out_dim: int
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    condition: str = "image"
    context_dim: int = 1024
    pooled_dim: int = 1024
    xyz_condition: bool = False
    xyz_scale: float = 0.45
    pe_frequencies: int = 10
    options: ModelOptions = ModelOptions()

    def _check(self, x, t, context, pooled, xyz) -> None:
        b = x.shape[0] if x.ndim == 3 else None
        expected = {
            "x": (x.shape, (b, x.shape[1] if x.ndim == 3 else None, self.in_dim)),
            "t": (t.shape, (b,)),
            "context": (
                context.shape,
                (b, context.shape[1] if context.ndim == 3 else None, self.context_dim),
            ),
            "pooled": (pooled.shape, (b, self.pooled_dim)),
        }
        if self.xyz_condition:
            if xyz is None:
                raise ValueError("PointDiT: xyz: required by a stage-2 model (xyz_condition)")
            expected["xyz"] = (xyz.shape, (b, x.shape[1] if x.ndim == 3 else None, 3))
        names = {
            "x": "[B, N, in_dim]",
            "t": "[B]",
            "context": "[B, L, context_dim]",
            "pooled": "[B, pooled_dim]",
            "xyz": "[B, N, 3]",
        }
        for name, (got, want) in expected.items():
            if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
                raise ValueError(
                    f"PointDiT: {name}: expected shape {names[name]} = {want}, got {got}"
                )

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        context: jax.Array,
        pooled: jax.Array,
        xyz: jax.Array | None = None,
    ) -> jax.Array:
        if self.condition not in CONDITIONS:
            raise ValueError(
                f"PointDiT.condition: expected one of {CONDITIONS}, got {self.condition!r}"
            )
        self._check(x, t, context, pooled, xyz)
        opts = self.options
        kw = dict(dtype=opts.dtype, param_dtype=opts.param_dtype)
        d = self.width

        # The global vector g: time + pooled condition.
        g = timestep_embedding(t)
        g = dense(d, (None, "embed"), kernel_init=_T_INIT, name="t_embedder_mlp_0", **kw)(g)
        g = dense(d, ("mlp", "embed"), kernel_init=_T_INIT, name="t_embedder_mlp_2", **kw)(
            nn.silu(g)
        )
        p = LayerNorm(epsilon=1e-5, **kw, name="pooled_embedder_norm")(pooled)
        g = g + dense(d, (None, "embed"), kernel_init=_ZERO, name="pooled_embedder_linear", **kw)(p)
        g = g.astype(jnp.float32)
        mod = dense(6 * d, ("embed", "mlp"), kernel_init=_ZERO, name="adaLN_modulation", **kw)(
            nn.silu(g)
        )
        mod = mod.astype(jnp.float32).reshape(-1, 6, d)  # [B, 6, D]

        # Per-point tokens.
        h = Mlp(
            d,
            d,
            gelu_approximate=True,
            axes=(None, "mlp", "embed"),
            options=opts,
            name="x_embedder",
        )(x.astype(opts.dtype))
        if self.xyz_condition:
            pe = nerf_positional_encoding(xyz / self.xyz_scale, self.pe_frequencies)
            h = h + dense(d, (None, "embed"), name="xyz_pos_embed", **kw)(pe.astype(opts.dtype))

        h = BlockStack(
            PointDiTBlock,
            dict(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                condition=self.condition,
                options=opts,
            ),
            self.depth,
            scan_layers=opts.scan_layers,
            remat_policy=opts.remat_policy,
            name="blocks",
        )(h.astype(opts.dtype), mod, context.astype(opts.dtype))

        # Final layer: LN without affine, (shift, scale) from g, zero-init linear.
        if self.condition == "image":
            table = scale_shift_table(self, "final_layer_scale_shift_table", 2, d, opts.param_dtype)
            shift, scale = jnp.split(table[None].astype(jnp.float32) + g[:, None], 2, axis=1)
        else:
            m = dense(
                2 * d,
                ("embed", "mlp"),
                kernel_init=_ZERO,
                name="final_layer_adaLN_modulation",
                **kw,
            )(nn.silu(g))
            shift, scale = jnp.split(m.astype(jnp.float32)[:, None], 2, axis=-1)
        h = modulate(LayerNorm(use_affine=False, dtype=jnp.float32)(h), shift, scale)
        out = dense(
            self.out_dim, ("embed", None), kernel_init=_ZERO, name="final_layer_linear", **kw
        )(h.astype(opts.dtype))
        return out.astype(jnp.float32)
