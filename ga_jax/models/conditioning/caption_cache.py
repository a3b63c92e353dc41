"""A frozen text encoder's features computed once per distinct caption, on the host.

Training captions repeat (the synthetic set has a few hundred distinct ones), and the
encoder's forward pass cost half a small flow step; the cache turns it into a lookup.

    cache = CaptionFeatureCache(conditioner)        # a frozen (text) conditioner
    cache.features(["a red cube", ...])             # {'context' [B, L, D], 'pooled' [B, Dp]}
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["CaptionFeatureCache"]


class CaptionFeatureCache:
    def __init__(self, conditioner: Any):
        if conditioner.trainable:
            raise ValueError(
                f"caption features: only a frozen conditioner's features can be cached; "
                f"{type(conditioner).__name__} is trained"
            )
        self.conditioner = conditioner
        self._apply = jax.jit(conditioner.apply)
        self._params = None
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        """The number of distinct captions encoded so far."""
        return len(self._features)

    def features(self, captions: list[str]) -> dict[str, np.ndarray]:
        missing = sorted({c for c in captions if c not in self._features})
        if missing:
            if self._params is None:
                self._params = self.conditioner.load()
            inputs = self.conditioner.prepare(captions=np.asarray(missing))
            context, pooled = jax.device_get(self._apply(self._params, inputs))
            for i, caption in enumerate(missing):
                self._features[caption] = (context[i], pooled[i])
        return {
            "context": np.stack([self._features[c][0] for c in captions]),
            "pooled": np.stack([self._features[c][1] for c in captions]),
        }
