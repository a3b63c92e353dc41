"""AdamW with parameter groups, chosen by regular expressions on parameter paths.

DESIGN.md section 5: encoder lr 1e-4 wd 1e-3, decoder DiT 5e-5 wd 1e-3, surfel heads and
upsamplers 1e-4 wd 1e-2, global-norm clipping 1.0, no schedule by default. Config
(`config.optimizer`):

    clip_norm: float (<= 0: no clipping)
    b1, b2, eps: AdamW moments
    groups: list of (name, regex, lr, weight_decay); a parameter joins the FIRST group whose
            regex matches its '/'-joined path (e.g. 'encoder/trunk/conv_in/kernel'); a
            parameter no group matches is an error naming it, so no weight trains silently
            with a default.
    warmup_steps: linear warm-up of every group's lr (0 = none)
    decay_steps: > 0: after the warm-up, cosine decay of every group's lr to
                 lr * final_lr_fraction at this step (counted from step 0), then constant;
                 0 = none (the paper's setting)
    final_lr_fraction: the decay's end value as a fraction of each group's lr
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import optax

__all__ = ["group_labels", "learning_rate_schedule", "make_optimizer", "param_path"]


def param_path(path: Sequence[Any]) -> str:
    """'a/b/c' from a jax.tree_util key path."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def group_labels(params: Any, groups: Sequence[Sequence[Any]]) -> Any:
    """A tree like params whose leaves are the names of the parameters' groups."""
    compiled = [(name, re.compile(pattern)) for name, pattern, *_ in groups]

    def label(path, _):
        text = param_path(path)
        for name, pattern in compiled:
            if pattern.search(text):
                return name
        raise ValueError(
            f"optimizer.groups: parameter {text!r} matches no group "
            f"(patterns: {[p.pattern for _, p in compiled]})"
        )

    return jax.tree_util.tree_map_with_path(label, params)


def learning_rate_schedule(cfg, lr: float) -> optax.Schedule | float:
    """One group's lr: warm-up (cfg.warmup_steps), then constant or cosine-decayed."""
    warmup = cfg.get("warmup_steps", 0)
    decay_steps = cfg.get("decay_steps", 0)
    if decay_steps <= 0:
        return optax.linear_schedule(0.0, lr, warmup) if warmup > 0 else lr
    if decay_steps <= warmup:
        raise ValueError(
            f"optimizer.decay_steps ({decay_steps}) must exceed optimizer.warmup_steps ({warmup})"
        )
    fraction = cfg.get("final_lr_fraction", 0.0)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"optimizer.final_lr_fraction must be in [0, 1], got {fraction}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup > 0 else lr,
        peak_value=lr,
        warmup_steps=warmup,
        decay_steps=decay_steps,
        end_value=lr * fraction,
    )


def make_optimizer(cfg) -> optax.GradientTransformation:
    """clip_by_global_norm -> per-group AdamW (see the module docstring for the config)."""
    names = [g[0] for g in cfg.groups]
    if len(set(names)) != len(names):
        raise ValueError(f"optimizer.groups: group names must be unique, found {names}")
    transforms = {}
    for name, _, lr, weight_decay in cfg.groups:
        transforms[name] = optax.adamw(
            learning_rate_schedule(cfg, lr),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=weight_decay,
        )
    chain = []
    if cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    chain.append(optax.multi_transform(transforms, lambda p: group_labels(p, cfg.groups)))
    return optax.chain(*chain)
