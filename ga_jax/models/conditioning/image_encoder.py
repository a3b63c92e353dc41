"""A small trainable image encoder for offline configs: trained with each flow stage's DiT
(no pretrained weights to fetch), for images of the synthetic set. A flow stage's training
may start it from an image-text run's export (condition.init_from, read by the flow task
with `read_pretrained`; ga_jax/train/tasks/image_text.py) instead of a random init. Only
training reads that file: a trained stage's own file holds the encoder it ended with.

images [B, S, S, 3] in [0, 1] -> patchify (a linear map of p x p patches, like a stride-p
conv) + learned position embeddings -> `depth` pre-norm transformer blocks -> LayerNorm ->
tokens [B, (S/p)^2, width]; pooled = the mean of the tokens [B, width].
Config fields (condition.*): image_size (default 64), patch (8), width (256), depth (4),
num_heads (4), mlp_dim (4 x width), init_from ('' = a random start).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.models.common.layers import LayerNorm, dense
from ga_jax.models.common.options import ModelOptions
from ga_jax.models.common.stack import BlockStack
from ga_jax.models.common.transformer import TransformerBlock
from ga_jax.models.conditioning.build import Conditioner, batch_of, field
from ga_jax.models.conditioning.images import prepare_images
from ga_jax.weights.model_files import read_model_file


class SmallImageEncoder(nn.Module):
    """images [B, S, S, 3] -> (tokens [B, (S/patch)^2, width], pooled [B, width])."""

    patch: int = 8
    width: int = 256
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 1024
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, s, s2, _ = images.shape
        p = self.patch
        if s != s2 or s % p:
            raise ValueError(
                f"SmallImageEncoder: images: expected square [B, S, S, 3] with S divisible by "
                f"patch {p}, got {images.shape}"
            )
        g = s // p
        x = images.astype(jnp.float32) * 2.0 - 1.0
        x = x.reshape(b, g, p, g, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * 3)
        x = dense(
            self.width,
            (None, "embed"),
            name="patch_embed",
            dtype=self.options.dtype,
            param_dtype=self.options.param_dtype,
        )(x)
        pos = self.param(
            "position_embeddings",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), ("tokens", "embed")),
            (g * g, self.width),
            self.options.param_dtype,
        )
        x = x + pos.astype(x.dtype)
        x = BlockStack(
            TransformerBlock,
            dict(
                num_heads=self.num_heads,
                head_dim=self.width // self.num_heads,
                mlp_dim=self.mlp_dim,
                options=self.options,
            ),
            self.depth,
            scan_layers=self.options.scan_layers,
            remat_policy=self.options.remat_policy,
            name="blocks",
        )(x)
        tokens = LayerNorm(name="norm", dtype=jnp.float32, param_dtype=self.options.param_dtype)(x)
        return tokens, jnp.mean(tokens, axis=1)


class ImageEncoderConditioner(Conditioner):
    trainable = True

    def __init__(self, cfg: Any):
        self.image_size = int(field(cfg, "image_size", 64))
        width = int(field(cfg, "width", 256))
        self.module = SmallImageEncoder(
            patch=int(field(cfg, "patch", 8)),
            width=width,
            depth=int(field(cfg, "depth", 4)),
            num_heads=int(field(cfg, "num_heads", 4)),
            mlp_dim=int(field(cfg, "mlp_dim", 4 * width)),
        )
        if self.image_size % self.module.patch:
            raise ValueError(
                f"condition.image_size: {self.image_size} must be divisible by condition.patch "
                f"{self.module.patch}"
            )
        self.context_dim = self.pooled_dim = width

    def read_pretrained(self, path: str) -> Any:
        """The encoder's weights in an image-text run's model file, checked against this
        encoder's shape fields."""
        config, params, _ = read_model_file(path)
        where = f"condition.init_from: {path}"
        if config.get("task") != "image_text" or "encoder" not in params:
            raise ValueError(
                f"{where}: expected a model file of an image-text run (task 'image_text'), "
                f"found task {config.get('task')!r}"
            )
        theirs = ImageEncoderConditioner(config.condition).shape_fields()
        for name, mine in self.shape_fields().items():
            if mine != theirs[name]:
                raise ValueError(
                    f"{where}: its encoder has condition.{name} = {theirs[name]!r}, this "
                    f"config {mine!r}; set them equal"
                )
        return params["encoder"]

    def shape_fields(self) -> dict[str, int]:
        """The fields that decide the encoder's parameter shapes, with defaults filled in."""
        m = self.module
        return dict(
            image_size=self.image_size,
            patch=m.patch,
            width=m.width,
            depth=m.depth,
            num_heads=m.num_heads,
            mlp_dim=m.mlp_dim,
        )

    def init(self, rng: jax.Array) -> Any:
        s = self.image_size
        return self.module.init(rng, jnp.zeros((1, s, s, 3)))["params"]

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        images = batch_of(captions, images, "images", "image_encoder")
        return {"images": prepare_images(images, self.image_size, "image_encoder")}

    def apply(self, params, inputs):
        return self.module.apply({"params": params}, inputs["images"])


def with_values(boxed: Any, values: Any, where: str) -> Any:
    """`boxed` (leaves possibly nn.Partitioned) with its values replaced by `values` (a plain
    tree of the same structure and shapes)."""
    is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731
    want = jax.tree.structure(nn.unbox(boxed))
    if jax.tree.structure(values) != want:
        raise ValueError(f"{where}: its encoder's parameter tree differs from this encoder's")

    def replace(box, value):
        target = box.value if is_box(box) else box
        if tuple(target.shape) != tuple(np.shape(value)):
            raise ValueError(
                f"{where}: parameter of shape {np.shape(value)}, this encoder's is {target.shape}"
            )
        value = jnp.asarray(value, target.dtype)
        return box.replace_boxed(value) if is_box(box) else value

    return jax.tree.map(replace, boxed, values, is_leaf=is_box)
