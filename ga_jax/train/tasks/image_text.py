"""Pretraining the small image encoder against captions (CLIP-style), as a task of the loop.

    python -m launch.train --config=configs/image_text/synthetic.py --workdir=W

The paper conditions its image stages on a frozen DINOv2; the offline small configs have no
pretrained image network, and an encoder trained from scratch through the flow loss alone
learns colour but hardly shape (docs/results.md, the linear probe). This task gives it a
contrastive start: the encoder's pooled token and the frozen MiniLM embedding of the
object's caption are projected to a shared space and matched by a symmetric InfoNCE loss
(CLIP, Radford et al. 2021) with a learned temperature. Captions repeat across objects of
the same shape, colour and size, so every image whose caption equals the text's is a
positive: the targets are uniform over the equal captions of the batch (the multi-positive
form; with distinct captions it is CLIP's loss). A flow stage starts its encoder from the
exported run with condition.init_from (ga_jax/train/tasks/flow.py).

Data: the flow stages' latent datasets with conditioning views (ga_jax/data/flow_loader.py,
use_images): one random view of each object per read. The caption embeddings come from
MiniLM once per distinct caption, on the host (CaptionFeatureCache).

Parameters: {'encoder': the SmallImageEncoder's, 'image_proj', 'text_proj': Dense to
config.model.embed_dim, 'log_scale': the logit scale's log}. Evaluation: for each held-out
image, whether the caption scoring highest among the batch's captions is its own
(retrieval), and the loss on the fixed batches.
"""

from __future__ import annotations

import zlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ga_jax.models.conditioning.build import build_conditioner
from ga_jax.models.conditioning.caption_cache import CaptionFeatureCache
from ga_jax.models.conditioning.image_encoder import ImageEncoderConditioner
from ga_jax.train.task import Task

# CLIP's initial temperature (1 / 0.07) and its cap (100), as logs.
_INIT_LOG_SCALE = float(np.log(1 / 0.07))
_MAX_LOG_SCALE = float(np.log(100.0))


def caption_groups(captions: list[str]) -> np.ndarray:
    """int32 [B]: a 31-bit CRC of each caption: equal captions, equal groups, whichever
    process built its block of the batch."""
    return np.asarray([zlib.crc32(c.encode()) & 0x7FFFFFFF for c in captions], np.int32)


def multi_positive_clip_loss(
    image: jax.Array, text: jax.Array, groups: jax.Array, log_scale: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(loss per sample [B], logits [B, B]) of L2-normalised embeddings image / text [B, D]:
    the mean of the image-to-text and text-to-image cross entropies against targets uniform
    over the samples of the same caption group."""
    logits = jnp.exp(jnp.minimum(log_scale, _MAX_LOG_SCALE)) * image @ text.T
    same = (groups[:, None] == groups[None, :]).astype(jnp.float32)
    targets = same / jnp.sum(same, axis=1, keepdims=True)
    image_to_text = optax.softmax_cross_entropy(logits, targets)
    text_to_image = optax.softmax_cross_entropy(logits.T, targets)
    return 0.5 * (image_to_text + text_to_image), logits


def _normalised(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ImageTextTask(Task):
    """The image encoder of config.condition against config.text (a frozen text encoder)."""

    log_metrics = ("retrieval",)

    def __init__(self, config):
        self.config = config
        self.image = build_conditioner(config.condition)
        if not isinstance(self.image, ImageEncoderConditioner):
            raise ValueError(
                f"condition.name: the image-text task trains the small image encoder "
                f"('image_encoder'), got {config.condition.name!r}"
            )
        if config.condition.get("init_from", ""):
            raise ValueError("condition.init_from: the image-text task trains the encoder anew")
        text = build_conditioner(config.text)
        if text.trainable:
            raise ValueError(f"text.name: expected a frozen text encoder, got {config.text.name!r}")
        self.captions = CaptionFeatureCache(text)
        dim = int(config.model.embed_dim)
        self.image_proj = nn.Dense(dim, use_bias=False)
        self.text_proj = nn.Dense(dim, use_bias=False)
        self.text_dim = text.pooled_dim

    def init_params(self, rng: jax.Array) -> Any:
        k_enc, k_img, k_txt = jax.random.split(rng, 3)
        return {
            "encoder": self.image.init(k_enc),
            "image_proj": self.image_proj.init(k_img, jnp.zeros((1, self.image.pooled_dim)))[
                "params"
            ],
            "text_proj": self.text_proj.init(k_txt, jnp.zeros((1, self.text_dim)))["params"],
            "log_scale": jnp.asarray(_INIT_LOG_SCALE, jnp.float32),
        }

    def _loss(self, params, batch):
        _, pooled = self.image.apply(params["encoder"], {"images": batch["images"]})
        image = _normalised(self.image_proj.apply({"params": params["image_proj"]}, pooled))
        text = _normalised(self.text_proj.apply({"params": params["text_proj"]}, batch["text"]))
        return multi_positive_clip_loss(image, text, batch["groups"], params["log_scale"])

    def loss(self, params, batch, rngs, step, frozen, extra):
        per_sample, logits = self._loss(params, batch)
        loss = jnp.mean(per_sample)
        metrics = {
            "total": loss,
            "clip": loss,
            "retrieval": jnp.mean(_retrieved(logits, batch["groups"])),
            "logit_scale": jnp.exp(params["log_scale"]),
        }
        return loss, (metrics, None)

    def evaluate(self, params, batch, frozen):
        per_sample, logits = self._loss(params, batch)
        return {"clip": per_sample, "retrieval": _retrieved(logits, batch["groups"])}, None

    # -- data ---------------------------------------------------------------------------------

    def train_data(self):
        from ga_jax.data.flow_loader import make_flow_loader  # noqa: PLC0415 - keeps grain out

        return make_flow_loader(self._images_only(self.config.data))

    def eval_data(self) -> list[Any]:
        from ga_jax.data.flow_loader import make_flow_loader  # noqa: PLC0415

        count = self.config.train.eval_batches
        if self.config.train.eval_every_steps <= 0 or count <= 0:
            return []
        loader = make_flow_loader(self._images_only(self.config.eval_data))
        return [b for _, b in zip(range(count), loader, strict=False)]

    @staticmethod
    def _images_only(data):
        if not data.use_images:
            raise ValueError("data.use_images: the image-text task reads conditioning views")
        return data

    def abstract_batch(self, num_points: int) -> dict[str, Any]:
        b, s = int(self.config.data.batch_size), self.image.image_size
        return {
            "images": jax.ShapeDtypeStruct((b, s, s, 3), jnp.float32),
            "text": jax.ShapeDtypeStruct((b, self.text_dim), jnp.float32),
            "groups": jax.ShapeDtypeStruct((b,), jnp.int32),
        }

    def device_batch(self, host_batch) -> dict[str, Any]:
        captions = [str(c) for c in host_batch["caption"]]
        return {
            "images": self.image.prepare(images=host_batch["image"])["images"],
            "text": self.captions.features(captions)["pooled"],
            "groups": caption_groups(captions),
        }


def _retrieved(logits: jax.Array, groups: jax.Array) -> jax.Array:
    """float [B]: 1 where the caption scoring highest for image i is i's own caption."""
    best = jnp.argmax(logits, axis=1)
    return (groups[best] == groups).astype(jnp.float32)
