"""Model FLOPs of a DiT train step, counted analytically (the numerator of a model-FLOPs
utilisation): 6 N per token, forward + backward, with each parameter counted on the tokens it
is applied to, plus attention.

- the cross-attention's key / value projections run on the L condition tokens;
- the per-object time and pooled-condition embedders and the adaLN modulation run once per
  object;
- every other parameter runs on each of the P latent tokens;
- attention: 12 x depth x P x (P + L) x width per object (scores and weighted sums, self
  over P and cross over L tokens; 2 FLOPs per multiply-add, x3 for forward + backward).

XLA's cost analysis counts a while loop's body once, so it undercounts a scanned layer stack
by its depth; this count does not depend on how the layers are compiled.
"""

from __future__ import annotations

import math
from typing import Any

import jax

__all__ = ["dit_train_flops"]

# Parameters not applied to every latent token, by their path in the DiT's parameters.
PER_CONTEXT_TOKEN = ("cross_attn/key/", "cross_attn/value/")
PER_OBJECT = ("adaLN_modulation", "t_embedder", "pooled_embedder")


def dit_train_flops(
    dit_params: Any, *, depth: int, width: int, batch: int, num_points: int, context: int
) -> float:
    """FLOPs of one train step over `batch` objects of `num_points` latent tokens with
    `context` condition tokens; dit_params: the DiT's parameters (arrays or shape structs)."""
    counts = {"latent": 0, "context": 0, "object": 0}
    for path, leaf in jax.tree_util.tree_flatten_with_path(dit_params)[0]:
        name = jax.tree_util.keystr(path, simple=True, separator="/") + "/"
        group = "latent"
        if any(k in name for k in PER_CONTEXT_TOKEN):
            group = "context"
        elif any(k in name for k in PER_OBJECT):
            group = "object"
        counts[group] += math.prod(leaf.shape)
    dense = 6 * (counts["latent"] * num_points + counts["context"] * context + counts["object"])
    attention = 12 * depth * num_points * (num_points + context) * width
    return float(batch) * (dense + attention)
