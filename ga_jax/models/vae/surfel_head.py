"""Decoder features -> surfels: a base head and cascaded per-point upsamplers
(DESIGN.md section 3, steps 4-5).

Pre-activation layout of one surfel, K = 10 + colour channels (13 for RGB):
    0:3   offset  base:  xyz = fps_xyz + base_offset_scale * tanh(o)       (0.1 * 0.225)
                  child: xyz = parent_xyz + upsample_offset_scale * tanh(R) (0.225)
    3     opacity sigmoid
    4:6   scales  softplus(s) * scale_multiplier                            (0.006492)
    6:10  quaternion (w, x, y, z), L2-normalised
    10:K  colour  0.5 * tanh(c) + 0.5
Children accumulate the other pre-activations, P_child = P_parent + R, and the activations
are reapplied. Activations run in float32.

Child spread (our addition, off by default). With the paper's initialisation every child
starts exactly on its parent, and children stacked at one point receive nearly identical
gradients: in the short CPU runs the children never separated, so the object was drawn as
dots (docs/results.md). `child_spread` (metres per level) adds a learned per-child offset
`child_offsets` [f, 3] to R[0:3], initialised to that radius along f directions spread over
the sphere (a Fibonacci lattice), so children start apart and can move from there.

Colour gain (our addition, () = 1 everywhere = the paper). `color_gain` (g_0, ..., g_L), one
per level, base first, multiplies the colour columns of that level's head output before they
are accumulated: c = g_0 B + g_1 R_1 + ... Under Adam a parameter moves about lr per step
whatever its gradient's size, so a gain g makes that level's colour move g times faster and
sends a g times larger colour gradient into the decoder, without touching the geometry
channels that the heads' small learning rate protects. In the short synthetic runs object
colour stayed mostly missing with gain 1 and came with gain 10 (docs/results.md, sixth
session).

Initialisation. Base head: zero kernel; bias zero except the scales (scale_bias_init = -2.5)
and the quaternion's w (rotation_bias_init = 1). DESIGN.md says "zero weights except
rotation (weight 1)"; we read that as the identity quaternion (1, 0, 0, 0) from the bias,
since a kernel of ones would make the initial rotation depend on sum(features) and is
undefined where that sum is 0. Every base surfel then starts at its FPS point with
identical, axis-aligned attributes. Residual heads are zero-initialised, so at init every
child equals its parent.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.models.common import (
    BlockStack,
    LayerNorm,
    ModelOptions,
    TransformerBlock,
    constrain,
    dense,
)
from ga_jax.rendering.surfels import Surfels

__all__ = [
    "SurfelHead",
    "Upsampler",
    "fibonacci_directions",
    "surfel_activations",
    "surfel_bias_init",
]


def surfel_activations(
    xyz: jax.Array, pre: jax.Array, *, scale_multiplier: float = 0.006492
) -> Surfels:
    """Surfels from positions xyz [..., N, 3] and pre-activations pre [..., N, K] (float32)."""
    pre = pre.astype(jnp.float32)
    quat = pre[..., 6:10]
    quat = quat / jnp.maximum(jnp.linalg.norm(quat, axis=-1, keepdims=True), 1e-8)
    return Surfels(
        means=xyz.astype(jnp.float32),
        quaternions=quat,
        scales=jax.nn.softplus(pre[..., 4:6]) * scale_multiplier,
        opacities=jax.nn.sigmoid(pre[..., 3]),
        colors=0.5 * jnp.tanh(pre[..., 10:]) + 0.5,
    )


def _head_kernel_init(std: float):
    """Zeros (the paper) or N(0, std^2). With every head zero, no gradient reaches the decoder
    or the encoder at the first step, and the decoder's adaLN-Zero gates (also zero) make the
    path to h second order: fine over the paper's schedule, slow for a short run."""
    return nn.initializers.zeros_init() if std == 0.0 else nn.initializers.normal(std)


def surfel_bias_init(scale_bias: float = -2.5, rotation_w: float = 1.0):
    """Bias initialiser [K]: zeros, scales (4:6) = scale_bias, quaternion w (6) = rotation_w."""

    def init(key, shape, dtype=jnp.float32):
        del key
        bias = jnp.zeros(shape, dtype)
        return bias.at[4:6].set(scale_bias).at[6].set(rotation_w)

    return init


def fibonacci_directions(count: int) -> np.ndarray:
    """count unit vectors [count, 3] spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


class Upsampler(nn.Module):
    """One cascade level: every parent feature spawns `factor` children.

    features [B, N, D] -> (children [B, N*factor, D], residual pre-activations
    [B, N*factor, K] float32). Per parent: [parent; factor learned tokens] (1 + factor
    tokens) -> pre-norm transformer of `depth` blocks (attention only within that group) ->
    keep the factor outputs; residual head LN -> Linear(D -> K), zero init. Child j of parent
    n is row n * factor + j. child_spread > 0 (metres) adds the learned `child_offsets`
    [factor, 3] to R[0:3], initialised so that with zero heads child j sits child_spread
    along Fibonacci direction j from its parent (module docstring); offset_scale is the
    child offset's tanh scale (SurfelHead.upsample_offset_scale).
    """

    factor: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_channels: int = 13
    head_init_std: float = 0.0
    child_spread: float = 0.0
    offset_scale: float = 0.225
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        opts = self.options
        b, n, width = features.shape
        child_tokens = self.param(
            "child_tokens",
            nn.with_logical_partitioning(
                nn.initializers.truncated_normal(0.02), ("tokens", "embed")
            ),
            (self.factor, width),
            opts.param_dtype,
        )
        groups = jnp.concatenate(
            [
                features.reshape(b * n, 1, width).astype(opts.dtype),
                jnp.broadcast_to(child_tokens.astype(opts.dtype), (b * n, self.factor, width)),
            ],
            axis=1,
        )
        groups = BlockStack(
            TransformerBlock,
            dict(
                num_heads=self.num_heads,
                head_dim=width // self.num_heads,
                mlp_dim=self.mlp_dim,
                qkv_bias=True,
                qk_norm=True,
                gelu_approximate=True,
                options=opts,
            ),
            num_layers=self.depth,
            scan_layers=opts.scan_layers,
            remat_policy=opts.remat_policy,
            name="blocks",
        )(groups)
        children = constrain(groups[:, 1:].reshape(b, n * self.factor, width))
        f32 = dict(dtype=jnp.float32, param_dtype=opts.param_dtype)
        residual = dense(
            self.num_channels,
            ("embed", None),
            kernel_init=_head_kernel_init(self.head_init_std),
            name="head",
            **f32,
        )(LayerNorm(name="head_norm", **f32)(children))
        if self.child_spread > 0.0:
            directions = fibonacci_directions(self.factor)
            start = np.arctanh(self.child_spread * directions / self.offset_scale)
            offsets = self.param(
                "child_offsets",
                nn.with_logical_partitioning(
                    lambda key, shape, dtype: jnp.asarray(start, dtype), ("tokens", None)
                ),
                (self.factor, 3),
                opts.param_dtype,
            )
            per_child = jnp.tile(offsets.astype(jnp.float32), (n, 1))  # row n*factor+j -> j
            residual = residual.at[..., 0:3].add(per_child)
        return children, residual


class SurfelHead(nn.Module):
    """features [B, P, D], xyz [B, P, 3] -> [Surfels] per level, coarse to fine.

    Level 0 is the base head (P surfels); level i > 0 has P * prod(factors[:i]) surfels.
    levels: ((factor, depth), ...) for the upsamplers, e.g. ((8, 2), (4, 1), (3, 1)).
    """

    num_heads: int = 12
    mlp_dim: int = 3072
    levels: tuple[tuple[int, int], ...] = ((8, 2), (4, 1), (3, 1))
    color_dim: int = 3
    base_offset_scale: float = 0.1 * 0.225
    upsample_offset_scale: float = 0.225
    scale_multiplier: float = 0.006492
    scale_bias_init: float = -2.5
    rotation_bias_init: float = 1.0
    head_init_std: float = 0.0
    child_spread: tuple[float, ...] = ()
    color_gain: tuple[float, ...] = ()
    options: ModelOptions = ModelOptions()

    @property
    def num_channels(self) -> int:
        return 10 + self.color_dim

    @nn.compact
    def __call__(self, features: jax.Array, xyz: jax.Array) -> list[Surfels]:
        if xyz.shape != features.shape[:-1] + (3,):
            raise ValueError(
                f"xyz: expected {features.shape[:-1] + (3,)} to match features "
                f"{features.shape}, got {xyz.shape}"
            )
        spread = tuple(self.child_spread) or (0.0,) * len(self.levels)
        if len(spread) != len(self.levels) or not all(
            0.0 <= r < self.upsample_offset_scale for r in spread
        ):
            raise ValueError(
                f"child_spread: expected () or {len(self.levels)} radii in "
                f"[0, upsample_offset_scale={self.upsample_offset_scale}) metres, one per "
                f"level, got {self.child_spread}"
            )
        gains = tuple(self.color_gain) or (1.0,) * (len(self.levels) + 1)
        if len(gains) != len(self.levels) + 1 or not all(g > 0.0 for g in gains):
            raise ValueError(
                f"color_gain: expected () or {len(self.levels) + 1} positive gains, one per "
                f"level (base first), got {self.color_gain}"
            )

        def with_gain(head_output: jax.Array, level: int) -> jax.Array:
            if gains[level] == 1.0:
                return head_output
            return head_output.at[..., 10:].multiply(gains[level])

        f32 = dict(dtype=jnp.float32, param_dtype=self.options.param_dtype)
        pre = dense(
            self.num_channels,
            ("embed", None),
            kernel_init=_head_kernel_init(self.head_init_std),
            bias_init=surfel_bias_init(self.scale_bias_init, self.rotation_bias_init),
            name="base",
            **f32,
        )(nn.silu(features.astype(jnp.float32)))
        pre = with_gain(pre, 0)
        xyz = xyz.astype(jnp.float32) + self.base_offset_scale * jnp.tanh(pre[..., 0:3])
        outputs = [surfel_activations(xyz, pre, scale_multiplier=self.scale_multiplier)]
        for level, (factor, depth) in enumerate(self.levels):
            features, residual = Upsampler(
                factor,
                depth,
                self.num_heads,
                self.mlp_dim,
                num_channels=self.num_channels,
                head_init_std=self.head_init_std,
                child_spread=spread[level],
                offset_scale=self.upsample_offset_scale,
                options=self.options,
                name=f"upsample_{level}",
            )(features)
            xyz = jnp.repeat(xyz, factor, axis=-2) + self.upsample_offset_scale * jnp.tanh(
                residual[..., 0:3]
            )
            pre = jnp.repeat(pre, factor, axis=-2) + with_gain(residual, level + 1)
            outputs.append(surfel_activations(xyz, pre, scale_multiplier=self.scale_multiplier))
        return outputs
