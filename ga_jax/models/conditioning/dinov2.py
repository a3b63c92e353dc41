"""DINOv2 ViT-L/14 with registers (the paper's image condition) as a Linen module, reading
the public safetensors layout of facebook/dinov2-with-registers-large (transformers'
Dinov2WithRegistersModel names; ../shared/notes/pretrained_weights_and_samplers.md 2b).

Forward (images [B, S, S, 3] in [0, 1], S divisible by 14; 518 at paper size):
  ImageNet normalisation -> 14 x 14 stride-14 patch embedding (row-major tokens) -> [CLS] +
  patches, plus position embeddings (the stored grid resized bicubically with antialiasing to
  the image's grid when it differs, as transformers' with-registers model does) -> the
  register tokens inserted after CLS (they get no position embedding): order
  [CLS, R_1..R_r, patches] -> blocks x += ls1 * Attn(LN1 x); x += ls2 * MLP(LN2 x) (LayerNorm
  eps 1e-6, qkv biases, exact GELU) -> final LayerNorm.
Output: tokens = the patch tokens [B, (S/14)^2, D] (x_norm_patchtokens), pooled = CLS [B, D]
(x_norm_clstoken); the registers are dropped.
Config fields (condition.*): weights (the .safetensors file; required), image_size (518),
preset 'large' (1024 wide, 24 layers, 16 heads, 4 registers, 37 x 37 stored grid) or 'tiny'
(tests), or the fields width / depth / num_heads / num_registers / grid themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.models.common.attention import Attention
from ga_jax.models.common.layers import LayerNorm
from ga_jax.models.common.mlp import Mlp
from ga_jax.models.common.options import ModelOptions
from ga_jax.models.common.stack import BlockStack
from ga_jax.models.conditioning.build import Conditioner, batch_of, field
from ga_jax.models.conditioning.images import prepare_images

PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS = {
    "large": dict(width=1024, depth=24, num_heads=16, num_registers=4, grid=37),
    "tiny": dict(width=32, depth=2, num_heads=4, num_registers=4, grid=4),
}


class Dinov2Block(nn.Module):
    num_heads: int
    mlp_dim: int
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        opts = self.options
        width = x.shape[-1]
        kw = dict(epsilon=1e-6, dtype=jnp.float32, param_dtype=opts.param_dtype)
        ones = nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",))
        ls1 = self.param("layer_scale1", ones, (width,), opts.param_dtype)
        ls2 = self.param("layer_scale2", ones, (width,), opts.param_dtype)
        h = Attention(
            self.num_heads, width // self.num_heads, qkv_bias=True, options=opts, name="attn"
        )(LayerNorm(name="norm1", **kw)(x))
        x = x + ls1 * h
        h = Mlp(self.mlp_dim, gelu_approximate=False, options=opts, name="mlp")(
            LayerNorm(name="norm2", **kw)(x)
        )
        return x + ls2 * h


class Dinov2(nn.Module):
    """images [B, S, S, 3] in [0, 1] -> (patch tokens [B, (S/14)^2, width], CLS [B, width])."""

    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    num_registers: int = 4
    grid: int = 37  # the stored position grid (518 / 14)
    options: ModelOptions = ModelOptions()

    @nn.compact
    def tokens(self, images: jax.Array) -> jax.Array:
        """Every token after the final norm, [B, 1 + registers + patches, width]."""
        b, s, s2, _ = images.shape
        if s != s2 or s % PATCH:
            raise ValueError(
                f"Dinov2: images: expected square [B, S, S, 3] with S divisible by 14, got "
                f"{images.shape}"
            )
        d = self.width
        x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
        x = nn.Conv(
            d,
            (PATCH, PATCH),
            strides=(PATCH, PATCH),
            padding="VALID",
            param_dtype=self.options.param_dtype,
            name="patch_embed",
        )(x)
        g = s // PATCH
        x = x.reshape(b, g * g, d)
        zeros = nn.initializers.zeros_init()
        cls = self.param("cls_token", zeros, (1, 1, d), self.options.param_dtype)
        pos = self.param(
            "position_embeddings",
            nn.initializers.normal(0.02),
            (1, 1 + self.grid * self.grid, d),
            self.options.param_dtype,
        )
        patch_pos = pos[0, 1:]
        if g != self.grid:
            patch_pos = jax.image.resize(
                patch_pos.reshape(self.grid, self.grid, d), (g, g, d), "cubic", antialias=True
            ).reshape(g * g, d)
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
        x = x + jnp.concatenate([pos[:, :1], patch_pos[None]], axis=1)
        if self.num_registers:
            reg = self.param(
                "register_tokens", zeros, (1, self.num_registers, d), self.options.param_dtype
            )
            x = jnp.concatenate(
                [x[:, :1], jnp.broadcast_to(reg, (b,) + reg.shape[1:]), x[:, 1:]], axis=1
            )
        if self.depth:  # depth 0 (tests): the embeddings and the final norm alone
            x = BlockStack(
                Dinov2Block,
                dict(num_heads=self.num_heads, mlp_dim=4 * d, options=self.options),
                self.depth,
                scan_layers=self.options.scan_layers,
                remat_policy=self.options.remat_policy,
                name="blocks",
            )(x)
        return LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(x)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = self.tokens(images)
        return x[:, 1 + self.num_registers :], x[:, 0]


def convert_hf_state(state: dict[str, np.ndarray], model: Dinov2, where: str) -> dict:
    """Our parameters from transformers' Dinov2(WithRegisters)Model state (torch layout,
    names without a 'dinov2.' prefix), shapes checked against `model`; an error names the
    file and the key."""
    d, h = model.width, model.num_heads
    hd = d // h

    def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise ValueError(f"{where}: missing key {key!r}")
        value = np.asarray(state[key], np.float32)
        if value.shape != shape:
            raise ValueError(f"{where}: {key!r}: expected shape {shape}, got {value.shape}")
        return value

    e = "embeddings."
    params: dict[str, Any] = {
        "cls_token": get(e + "cls_token", (1, 1, d)),
        "position_embeddings": get(e + "position_embeddings", (1, 1 + model.grid**2, d)),
        "patch_embed": {
            "kernel": get(e + "patch_embeddings.projection.weight", (d, 3, PATCH, PATCH)).transpose(
                2, 3, 1, 0
            ),
            "bias": get(e + "patch_embeddings.projection.bias", (d,)),
        },
        "norm": {"scale": get("layernorm.weight", (d,)), "bias": get("layernorm.bias", (d,))},
    }
    if model.num_registers:
        params["register_tokens"] = get(e + "register_tokens", (1, model.num_registers, d))
    layers = []
    for i in range(model.depth):
        p = f"encoder.layer.{i}."
        a = p + "attention."

        def proj(name, a=a):
            return {
                "kernel": get(a + f"attention.{name}.weight", (d, d)).T.reshape(d, h, hd),
                "bias": get(a + f"attention.{name}.bias", (d,)).reshape(h, hd),
            }

        layers.append(
            {
                "norm1": {
                    "scale": get(p + "norm1.weight", (d,)),
                    "bias": get(p + "norm1.bias", (d,)),
                },
                "norm2": {
                    "scale": get(p + "norm2.weight", (d,)),
                    "bias": get(p + "norm2.bias", (d,)),
                },
                "attn": {
                    "query": proj("query"),
                    "key": proj("key"),
                    "value": proj("value"),
                    "out": {
                        "kernel": get(a + "output.dense.weight", (d, d)).T.reshape(h, hd, d),
                        "bias": get(a + "output.dense.bias", (d,)),
                    },
                },
                "layer_scale1": get(p + "layer_scale1.lambda1", (d,)),
                "layer_scale2": get(p + "layer_scale2.lambda1", (d,)),
                "mlp": {
                    "fc1": {
                        "kernel": get(p + "mlp.fc1.weight", (4 * d, d)).T,
                        "bias": get(p + "mlp.fc1.bias", (4 * d,)),
                    },
                    "fc2": {
                        "kernel": get(p + "mlp.fc2.weight", (d, 4 * d)).T,
                        "bias": get(p + "mlp.fc2.bias", (d,)),
                    },
                },
            }
        )
    if not layers:
        pass
    elif model.options.scan_layers:
        params["blocks"] = {"layers": jax.tree.map(lambda *xs: np.stack(xs), *layers)}
    else:
        params["blocks"] = {f"layers_{i}": layer for i, layer in enumerate(layers)}
    return jax.tree.map(jnp.asarray, params)


def read_safetensors(path: str | Path, model: Dinov2) -> dict:
    """Our parameters from a with-registers safetensors file (transformers' names; a
    'dinov2.' prefix is accepted)."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"condition dinov2: {path}: no such weights file")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"condition dinov2: {path}: unreadable safetensors ({e})") from e
    state = {k.removeprefix("dinov2."): v for k, v in state.items()}
    return convert_hf_state(state, model, f"condition dinov2: {path}")


class Dinov2Conditioner(Conditioner):
    def __init__(self, cfg: Any):
        preset = dict(PRESETS[field(cfg, "preset", "large")])
        for name in preset:
            preset[name] = int(field(cfg, name, preset[name]))
        self.module = Dinov2(**preset)
        self.weights = field(cfg, "weights", "")
        self.image_size = int(field(cfg, "image_size", 518))
        if self.image_size % PATCH:
            raise ValueError(
                f"condition.image_size: expected a multiple of 14, got {self.image_size}"
            )
        self.context_dim = self.pooled_dim = self.module.width
        self.context_length = (self.image_size // PATCH) ** 2  # the patch tokens

    def load(self) -> Any:
        if not self.weights:
            raise ValueError(
                "condition.weights: dinov2 needs a local .safetensors file (nothing is downloaded)"
            )
        return read_safetensors(self.weights, self.module)

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        images = batch_of(captions, images, "images", "dinov2")
        return {"images": prepare_images(images, self.image_size, "dinov2")}

    def apply(self, params, inputs):
        return self.module.apply({"params": params}, inputs["images"])
