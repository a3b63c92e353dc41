"""PLACEHOLDER until the conditioners land: only 'none'."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


class NullConditioner:
    trainable = False

    def __init__(self, cfg):
        self.context_dim = int(cfg.get("context_dim", 32))
        self.pooled_dim = int(cfg.get("pooled_dim", 32))

    def load(self):
        return None

    def prepare(self, captions=None, images=None):
        given = captions if captions is not None else images
        if given is None:
            raise ValueError("condition 'none': prepare needs captions or images (the batch size)")
        return {"batch": np.zeros((len(given),), np.int32)}

    def apply(self, params, inputs):
        b = inputs["batch"].shape[0]
        return jnp.zeros((b, 1, self.context_dim)), jnp.zeros((b, self.pooled_dim))


def build_conditioner(cfg):
    if cfg.name != "none":
        raise ValueError(cfg.name)
    return NullConditioner(cfg)
