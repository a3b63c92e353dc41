"""The 3D VAE encoder (DESIGN.md section 2): multi-view images -> per-point posterior moments.

    encoder_input [B, V, S, S, 15]  (RGB, normal, Pluecker (o x d, d), xyz map)
      -> SD-VAE conv trunk with a multi-view spatial transformer in the mid block
      -> tokens [B, V*h*w, E] (h = S / f, f = 2^(len(ch_mult)-1)) + XYZ PE of each token
      -> cross-attention from the XYZ PE of the P FPS points onto the tokens (no residual)
         [+ the nearest input pixel's RGB per point, when pixel_aligned_rgb (not the paper)]
      -> pre-norm transformer over the P points -> head -> moments [B, P, 2C] (mean | logvar)

There is no view or position embedding besides the XYZ PE, so the result is invariant to
the order of the views and equivariant to the order of the FPS points (tests check both;
with pixel_aligned_rgb, up to exact distance ties between pixels of different views).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ga_jax.models.common import (
    Attention,
    BlockStack,
    Dtype,
    GegluFeedForward,
    LayerNorm,
    Mlp,
    ModelOptions,
    TransformerBlock,
    constrain,
    dense,
    nerf_positional_encoding,
    remat,
)

__all__ = [
    "ConvTrunk",
    "Downsample",
    "Encoder",
    "MultiViewTransformer",
    "PointCrossAttention",
    "ResBlock",
    "XyzEmbed",
    "cell_centre_xyz",
    "foreground_cell_xyz",
    "nearest_foreground_pixels",
]


def _conv(features, kernel, *, stride=1, padding="SAME", zero_init=False, dtype, param_dtype, name):
    init = nn.initializers.zeros_init() if zero_init else nn.initializers.lecun_normal()
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        kernel_init=nn.with_logical_partitioning(init, (None, None, "conv_in", "conv_out")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def _group_norm(num_groups: int, param_dtype: Dtype, name: str) -> nn.GroupNorm:
    # float32 statistics; the caller casts back to the compute dtype.
    return nn.GroupNorm(
        num_groups=num_groups,
        epsilon=1e-6,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )


class ResBlock(nn.Module):
    """SD-VAE ResnetBlock: (GN, SiLU, conv3x3) x 2 + (1x1 conv) shortcut.

    x: [N, H, W, Cin] -> [N, H, W, out_channels].
    """

    out_channels: int
    norm_groups: int = 32
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtype, param_dtype = self.options.dtype, self.options.param_dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        h = nn.silu(_group_norm(self.norm_groups, param_dtype, "norm1")(x)).astype(dtype)
        h = _conv(self.out_channels, 3, name="conv1", **kw)(h)
        h = nn.silu(_group_norm(self.norm_groups, param_dtype, "norm2")(h)).astype(dtype)
        h = _conv(self.out_channels, 3, name="conv2", **kw)(h)
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, name="shortcut", **kw)(x)
        return x.astype(dtype) + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding right/bottom by one (SD-VAE). [N,H,W,C] -> [N,H/2,W/2,C]."""

    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return _conv(
            x.shape[-1],
            3,
            stride=2,
            padding="VALID",
            dtype=self.options.dtype,
            param_dtype=self.options.param_dtype,
            name="conv",
        )(x)


class MultiViewTransformer(nn.Module):
    """SD spatial transformer whose first attention sees all views' tokens jointly.

    x: [B*V, h, w, C] -> same. GN -> 1x1 proj C -> D (D = heads * head_dim) -> one block
    [LN, self-attention over all V*h*w tokens of an object; LN, self-attention within each
    view; LN, GEGLU FFN D -> 2*ffn -> D] -> 1x1 proj D -> C (zero init, so the block starts
    as the identity) -> + x.
    """

    num_views: int
    num_heads: int = 8
    head_dim: int = 64
    ffn_dim: int = 2048
    norm_groups: int = 32
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        opts = self.options
        kw = dict(dtype=opts.dtype, param_dtype=opts.param_dtype)
        bv, hh, ww, channels = x.shape
        b, v = bv // self.num_views, self.num_views
        inner = self.num_heads * self.head_dim
        h = _group_norm(self.norm_groups, opts.param_dtype, "norm")(x).astype(opts.dtype)
        h = _conv(inner, 1, name="proj_in", **kw)(h)
        t = constrain(h.reshape(b, v * hh * ww, inner))
        t = t + Attention(self.num_heads, self.head_dim, options=opts, name="attn_joint")(
            LayerNorm(name="norm_joint", **kw)(t)
        )
        t = t.reshape(bv, hh * ww, inner)
        t = t + Attention(self.num_heads, self.head_dim, options=opts, name="attn_view")(
            LayerNorm(name="norm_view", **kw)(t)
        )
        t = t + GegluFeedForward(self.ffn_dim, options=opts, name="ffn")(
            LayerNorm(name="norm_ffn", **kw)(t)
        )
        h = _conv(channels, 1, zero_init=True, name="proj_out", **kw)(t.reshape(bv, hh, ww, inner))
        return x.astype(opts.dtype) + h


class ConvTrunk(nn.Module):
    """SD-VAE encoder trunk without its output conv: [B, V, S, S, Cin] -> [B, V, S/f, S/f, E].

    conv_in -> per level (channels base * ch_mult[i]): num_res_blocks ResBlocks, then a
    stride-2 downsample except after the last level -> mid ResBlock, MultiViewTransformer,
    ResBlock -> GN + SiLU. f = 2^(len(ch_mult) - 1); E = base * ch_mult[-1].
    """

    base_channels: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    norm_groups: int = 32
    mv_heads: int = 8
    mv_head_dim: int = 64
    mv_ffn_dim: int = 2048
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        opts = self.options
        b, v, s1, s2, cin = x.shape
        res_block = remat(ResBlock, opts.remat_policy)
        h = _conv(
            self.base_channels, 3, name="conv_in", dtype=opts.dtype, param_dtype=opts.param_dtype
        )(x.reshape(b * v, s1, s2, cin).astype(opts.dtype))
        for level, mult in enumerate(self.ch_mult):
            for i in range(self.num_res_blocks):
                h = res_block(
                    self.base_channels * mult,
                    self.norm_groups,
                    options=opts,
                    name=f"down_{level}_block_{i}",
                )(h)
            if level != len(self.ch_mult) - 1:
                h = Downsample(options=opts, name=f"down_{level}_downsample")(h)
        channels = h.shape[-1]
        h = res_block(channels, self.norm_groups, options=opts, name="mid_block_1")(h)
        h = remat(MultiViewTransformer, opts.remat_policy)(
            num_views=v,
            num_heads=self.mv_heads,
            head_dim=self.mv_head_dim,
            ffn_dim=self.mv_ffn_dim,
            norm_groups=self.norm_groups,
            options=opts,
            name="mid_attn",
        )(h)
        h = res_block(channels, self.norm_groups, options=opts, name="mid_block_2")(h)
        h = nn.silu(_group_norm(self.norm_groups, opts.param_dtype, "norm_out")(h)).astype(
            opts.dtype
        )
        return h.reshape(b, v, *h.shape[1:])


def cell_centre_xyz(xyz_map: jax.Array, factor: int) -> jax.Array:
    """The xyz map sampled at the centre of each factor x factor cell.

    xyz_map: [..., S, S, 3] -> [..., S/f, S/f, 3]. The centre of cell i lies at pixel
    coordinate f*i + (f-1)/2; for even f that is between the two middle pixels, so this is
    the mean of the central 2x2 pixels (what bilinear resizing with half-pixel centres gives,
    e.g. torch interpolate(mode='bilinear', align_corners=False)); for odd f the middle pixel.
    """
    *lead, s1, s2, c = xyz_map.shape
    if s1 % factor or s2 % factor:
        raise ValueError(f"encoder_input: image size {s1}x{s2} is not a multiple of {factor}")
    cells = xyz_map.reshape(*lead, s1 // factor, factor, s2 // factor, factor, c)
    mid = (
        slice(factor // 2 - 1, factor // 2 + 1)
        if factor % 2 == 0
        else slice(factor // 2, factor // 2 + 1)
    )
    return cells[..., mid, :, mid, :].astype(jnp.float32).mean(axis=(-4, -2))


def foreground_cell_xyz(xyz_map: jax.Array, factor: int) -> tuple[jax.Array, jax.Array]:
    """Per factor x factor cell: the mean xyz of its foreground pixels (xyz != 0; the data
    zeroes the background) and whether it has any. [..., S, S, 3] -> ([..., S/f, S/f, 3],
    [..., S/f, S/f] bool); cells with no foreground get xyz 0."""
    *lead, s1, s2, c = xyz_map.shape
    if s1 % factor or s2 % factor:
        raise ValueError(f"encoder_input: image size {s1}x{s2} is not a multiple of {factor}")
    xyz = xyz_map.astype(jnp.float32)
    cells = xyz.reshape(*lead, s1 // factor, factor, s2 // factor, factor, c)
    fg = jnp.any(cells != 0, axis=-1, keepdims=True).astype(jnp.float32)
    count = jnp.sum(fg, axis=(-4, -2))  # [..., S/f, S/f, 1]
    total = jnp.sum(cells * fg, axis=(-4, -2))
    return total / jnp.maximum(count, 1.0), count[..., 0] > 0


def nearest_foreground_pixels(
    encoder_input: jax.Array, fps_xyz: jax.Array, xyz_channels: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """For every point, the input pixel (over all views) whose xyz is nearest to it in 3D.

    encoder_input [B, V, S, S, C] with the world xyz map in channels xyz_channels (0 on the
    background, which is never picked); fps_xyz [B, P, 3]. Returns (the picked pixels' C
    channels [B, P, C], their distance to the point [B, P]); an object without any
    foreground pixel gets distance inf and the first pixel. A point that every view sees
    picks a pixel on its own surface patch; an occluded one the nearest surface seen, which
    the distance tells apart. Memory O(B P V S^2): meant for the small configs.
    """
    b, c = encoder_input.shape[0], encoder_input.shape[-1]
    pixels = encoder_input.reshape(b, -1, c).astype(jnp.float32)
    start, stop = xyz_channels
    xyz = pixels[..., start:stop]
    points = fps_xyz.astype(jnp.float32)
    # |p - x|^2 expanded; HIGHEST so that GPUs do not round the products to TF32.
    cross = jnp.einsum("bpk,bnk->bpn", points, xyz, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.sum(points**2, -1)[..., None] - 2.0 * cross + jnp.sum(xyz**2, -1)[:, None, :]
    d2 = jnp.where(jnp.any(xyz != 0, axis=-1)[:, None, :], jnp.maximum(d2, 0.0), jnp.inf)
    index = jnp.argmin(d2, axis=-1)  # [B, P]
    picked = jnp.take_along_axis(pixels, index[..., None], axis=1)
    return picked, jnp.sqrt(jnp.take_along_axis(d2, index[..., None], axis=-1)[..., 0])


class XyzEmbed(nn.Module):
    """Linear(NeRF-PE(xyz)): [..., 3] -> [..., features]; shared by tokens and queries."""

    features: int
    num_freqs: int = 10
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, xyz: jax.Array) -> jax.Array:
        pe = nerf_positional_encoding(xyz, self.num_freqs)
        return dense(
            self.features,
            (None, "embed"),
            dtype=self.options.dtype,
            param_dtype=self.options.param_dtype,
            name="proj",
        )(pe)


class PointCrossAttention(nn.Module):
    """Queries [B, P, E] attend to tokens [B, T, E] -> [B, P, E]; no residual connection.

    heads x head_dim inner width, no qkv bias, per-head QK-RMSNorm, output Linear -> E.
    input_norm adds LayerNorms on queries and tokens first (pre-norm, as in the
    3DShape2VecSet-style cross-attention this follows; DESIGN.md does not say; ~2E params).
    """

    num_heads: int = 8
    head_dim: int = 64
    input_norm: bool = True
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(
        self, queries: jax.Array, tokens: jax.Array, token_mask: jax.Array | None = None
    ) -> jax.Array:
        """token_mask: optional bool [B, T]; tokens where it is False are not attended to."""
        kw = dict(dtype=self.options.dtype, param_dtype=self.options.param_dtype)
        if self.input_norm:
            queries = LayerNorm(name="norm_query", **kw)(queries)
            tokens = LayerNorm(name="norm_context", **kw)(tokens)
        return Attention(
            self.num_heads,
            self.head_dim,
            qkv_bias=False,
            qk_norm=True,
            options=self.options,
            name="attn",
        )(queries, tokens, key_mask=token_mask)


class Encoder(nn.Module):
    """Multi-view G-buffer images + FPS points -> posterior moments [B, P, 2 * latent_dim].

    encoder_input: [B, V, S, S, in_channels], channels xyz_channels = (start, stop) hold the
    world xyz map; fps_xyz: [B, P, 3]. Returns float32 moments [mean | raw logvar].
    """

    in_channels: int = 15
    xyz_channels: tuple[int, int] = (12, 15)
    base_channels: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    norm_groups: int = 32
    mv_heads: int = 8
    mv_head_dim: int = 64
    mv_ffn_dim: int = 2048
    pe_num_freqs: int = 10
    cross_heads: int = 8
    cross_head_dim: int = 64
    cross_input_norm: bool = True
    # Our addition (off in the paper config): tokens take the mean xyz of their cell's
    # foreground pixels instead of the xyz at the cell centre, and the FPS points attend only
    # to tokens with foreground. For objects a few tokens wide (synthetic data at 64 px, f = 8)
    # the centre sample is usually background (xyz 0, the PE of the object's centre), and
    # ~90% of the tokens are background that every point query also attends to.
    foreground_tokens: bool = False
    # Our addition (off in the paper config): each point adds, after the cross-attention, a
    # linear embedding of the RGB of the input pixel nearest to it in 3D (over all views) and
    # of that pixel's distance (nearest_foreground_pixels). Without it the object's colour
    # reaches a point only through the f x f token cells of the trunk, and a 45-minute run's
    # latent held only ~60% of the red/green variance of the synthetic objects' colours
    # (docs/results.md, seventh session).
    pixel_aligned_rgb: bool = False
    depth: int = 3
    num_heads: int = 8
    mlp_dim: int = 1024
    head_hidden: int = 256
    quant_hidden: int = 20
    latent_dim: int = 10
    options: ModelOptions = ModelOptions()

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @nn.compact
    def __call__(self, encoder_input: jax.Array, fps_xyz: jax.Array) -> jax.Array:
        opts = self.options
        if encoder_input.ndim != 5 or encoder_input.shape[-1] != self.in_channels:
            raise ValueError(
                f"encoder_input: expected [B, V, S, S, {self.in_channels}], "
                f"got {encoder_input.shape}"
            )
        if (
            fps_xyz.ndim != 3
            or fps_xyz.shape[-1] != 3
            or fps_xyz.shape[0] != encoder_input.shape[0]
        ):
            raise ValueError(
                f"fps_xyz: expected [B={encoder_input.shape[0]}, P, 3], got {fps_xyz.shape}"
            )
        b = encoder_input.shape[0]
        start, stop = self.xyz_channels
        token_mask = None
        if self.foreground_tokens:
            token_xyz, foreground = foreground_cell_xyz(
                encoder_input[..., start:stop], self.downsample_factor
            )
            token_mask = foreground.reshape(b, -1)
            # An object with no foreground token at all (empty views) attends to every token.
            token_mask = token_mask | ~jnp.any(token_mask, axis=-1, keepdims=True)
        else:
            token_xyz = cell_centre_xyz(encoder_input[..., start:stop], self.downsample_factor)

        features = ConvTrunk(
            base_channels=self.base_channels,
            ch_mult=tuple(self.ch_mult),
            num_res_blocks=self.num_res_blocks,
            norm_groups=self.norm_groups,
            mv_heads=self.mv_heads,
            mv_head_dim=self.mv_head_dim,
            mv_ffn_dim=self.mv_ffn_dim,
            options=opts,
            name="trunk",
        )(encoder_input)
        width = features.shape[-1]
        xyz_embed = XyzEmbed(width, self.pe_num_freqs, options=opts, name="xyz_embed")
        tokens = features.reshape(b, -1, width) + xyz_embed(token_xyz.reshape(b, -1, 3))
        queries = xyz_embed(fps_xyz)
        x = PointCrossAttention(
            self.cross_heads,
            self.cross_head_dim,
            input_norm=self.cross_input_norm,
            options=opts,
            name="cross_attn",
        )(constrain(queries), constrain(tokens), token_mask)
        if self.pixel_aligned_rgb:
            # Channels 0:3 hold the RGB (ga_jax/data/transforms.py).
            pixel, distance = nearest_foreground_pixels(encoder_input, fps_xyz, self.xyz_channels)
            # tanh(d / 5 cm): ~linear for a point on the surface seen (d ~ mm), 1 when far.
            seen = jnp.tanh(distance / 0.05)[..., None]  # no foreground at all: d = inf -> 1
            x = x + dense(
                width,
                (None, "embed"),
                dtype=opts.dtype,
                param_dtype=opts.param_dtype,
                name="pixel_rgb_embed",
            )(jnp.concatenate([pixel[..., 0:3], seen], axis=-1).astype(opts.dtype))
        x = BlockStack(
            TransformerBlock,
            dict(
                num_heads=self.num_heads,
                head_dim=width // self.num_heads,
                mlp_dim=self.mlp_dim,
                qkv_bias=True,
                qk_norm=True,
                gelu_approximate=False,
                options=opts,
            ),
            num_layers=self.depth,
            scan_layers=opts.scan_layers,
            remat_policy=opts.remat_policy,
            name="blocks",
        )(x)
        # The head and the quant MLP are tiny; run them in float32 (the posterior's dtype).
        f32 = dict(dtype=jnp.float32, param_dtype=opts.param_dtype)
        x = LayerNorm(name="head_norm", **f32)(x)
        x = dense(self.head_hidden, ("embed", "mlp"), name="head_fc1", **f32)(x)
        x = nn.gelu(x, approximate=True)
        x = dense(2 * self.latent_dim, ("mlp", "latent"), name="head_fc2", **f32)(x)
        return Mlp(
            self.quant_hidden,
            2 * self.latent_dim,
            gelu_approximate=True,
            axes=("latent", None, "latent"),
            options=opts.replace(dtype=jnp.float32),
            name="quant",
        )(x)
