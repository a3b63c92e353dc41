"""CLIP ViT-L/14 text (the paper's text condition), through transformers' Flax CLIP, from a
local directory only (condition.weights: config.json + weights + the CLIP BPE tokenizer
files, e.g. openai/clip-vit-large-patch14 saved locally; nothing is downloaded).

What GaussianAnything feeds its text DiT (../shared/notes/pretrained_weights_and_samplers.md
section 2a):
  tokens  the last encoder layer's output BEFORE the final LayerNorm, [B, 77, 768]
          (hidden_states[-1]; last_hidden_state is its LayerNorm)
  pooled  the projected embedding of the EOT token (text_embeds), [B, 768]
Ids are built as OpenCLIP builds them, not as the HF tokenizer pads: [SOT] + BPE + [EOT],
padded with id 0 to 77; a caption too long keeps 76 tokens and its last slot is forced to
EOT (with a warning). The attention mask is all ones (OpenCLIP uses only the causal mask;
masking the padding would change the padded positions' states, which the DiT attends to).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ga_jax.models.conditioning.build import Conditioner, batch_of, field
from ga_jax.models.conditioning.minilm import check_captions

log = logging.getLogger(__name__)
CONTEXT_LENGTH = 77


def openclip_ids(bpe: list[list[int]], sot: int, eot: int, length: int = CONTEXT_LENGTH):
    """int32 [B, length]: [SOT] + tokens + [EOT], zero-padded; truncated with EOT forced last.
    Returns (ids, truncated flags)."""
    ids = np.zeros((len(bpe), length), np.int32)
    truncated = []
    for i, tokens in enumerate(bpe):
        row = [sot, *tokens, eot]
        truncated.append(len(row) > length)
        if len(row) > length:
            row = row[:length]
            row[-1] = eot
        ids[i, : len(row)] = row
    return ids, truncated


class ClipTextConditioner(Conditioner):
    def __init__(self, cfg: Any):
        weights = field(cfg, "weights", "")
        if not weights:
            raise ValueError(
                "condition.weights: clip_text needs a local directory with the CLIP text weights "
                "and tokenizer (nothing is downloaded)"
            )
        self.path = Path(weights)
        self._model = self._tokenizer = None
        self.context_dim = self.pooled_dim = None
        self.context_length = CONTEXT_LENGTH
        self._load()

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import CLIPTokenizer, FlaxCLIPTextModelWithProjection  # noqa: PLC0415

            if not (self.path / "config.json").is_file():
                raise FileNotFoundError(
                    f"condition clip_text: {self.path}: not a model directory (no config.json)"
                )
            try:
                self._model = FlaxCLIPTextModelWithProjection.from_pretrained(
                    self.path, local_files_only=True
                )
            except (OSError, ValueError) as e:
                raise FileNotFoundError(
                    f"condition clip_text: {self.path}: unreadable weights ({e})"
                ) from e
            try:
                self._tokenizer = CLIPTokenizer.from_pretrained(self.path, local_files_only=True)
            except (OSError, ValueError, TypeError) as e:
                raise FileNotFoundError(
                    f"condition clip_text: {self.path}: no CLIP tokenizer (vocab.json and "
                    f"merges.txt expected) ({e})"
                ) from e
            config = self._model.config
            self.context_dim = config.hidden_size
            self.pooled_dim = config.projection_dim
        return self._model, self._tokenizer

    def load(self) -> Any:
        return self._load()[0].params

    def prepare(self, captions=None, images=None) -> dict[str, np.ndarray]:
        texts = check_captions(batch_of(captions, images, "captions", "clip_text"), "clip_text")
        _, tokenizer = self._load()
        bpe = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        for text, tokens in zip(texts, bpe, strict=True):
            if tokenizer.unk_token_id in tokens:
                log.warning("condition clip_text: characters of %r are unknown ([UNK])", text)
        ids, truncated = openclip_ids(bpe, tokenizer.bos_token_id, tokenizer.eos_token_id)
        for text, cut in zip(texts, truncated, strict=True):
            if cut:
                log.warning("condition clip_text: %r truncated to %d tokens", text, CONTEXT_LENGTH)
        return {"ids": ids}

    def apply(self, params, inputs):
        model, _ = self._load()
        ids = inputs["ids"]
        out = model(
            ids, attention_mask=jnp.ones_like(ids), params=params, output_hidden_states=True
        )
        return out.hidden_states[-1].astype(jnp.float32), out.text_embeds.astype(jnp.float32)
