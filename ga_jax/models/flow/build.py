"""Build a stage DiT from its config section (configs/flow/model.py) and count its
parameters without allocating them."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ga_jax.models.common.options import ModelOptions
from ga_jax.models.flow.dit import PointDiT
from ga_jax.models.vae.vae import count_params

# PointDiT's fields read from the config (ModelOptions' fields come from the same section).
DIT_FIELDS = (
    "in_dim", "out_dim", "width", "depth", "num_heads", "mlp_dim", "condition",
    "context_dim", "pooled_dim", "xyz_condition", "xyz_scale", "pe_frequencies",
)  # fmt: skip


def build_dit(cfg: Any, where: str = "config.model") -> PointDiT:
    """The PointDiT of a config section; a missing or bad field raises naming it."""
    missing = [name for name in DIT_FIELDS if name not in cfg]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} (PointDiT needs {DIT_FIELDS})")
    fields = {name: cfg[name] for name in DIT_FIELDS}
    for name in (
        "in_dim",
        "out_dim",
        "width",
        "depth",
        "num_heads",
        "mlp_dim",
        "context_dim",
        "pooled_dim",
    ):
        if not isinstance(fields[name], int) or fields[name] < 1:
            raise ValueError(f"{where}.{name}: expected a positive int, got {fields[name]!r}")
    if fields["width"] % fields["num_heads"]:
        raise ValueError(
            f"{where}.width: {fields['width']} must be divisible by num_heads {fields['num_heads']}"
        )
    if fields["condition"] not in ("image", "text"):
        raise ValueError(
            f"{where}.condition: expected 'image' or 'text', got {fields['condition']!r}"
        )
    return PointDiT(**fields, options=ModelOptions.from_config(cfg, where))


def abstract_dit_params(model: PointDiT) -> Any:
    """The parameters' shapes and dtypes (boxed with logical names), from jax.eval_shape:
    nothing is allocated. They do not depend on the point or token counts."""
    n = 4
    args = (
        jnp.zeros((1, n, model.in_dim)),
        jnp.zeros((1,)),
        jnp.zeros((1, 1, model.context_dim)),
        jnp.zeros((1, model.pooled_dim)),
        jnp.zeros((1, n, 3)) if model.xyz_condition else None,
    )
    return jax.eval_shape(lambda k: model.init(k, *args), jax.random.key(0))["params"]


def count_dit_params(model: PointDiT) -> int:
    return count_params(abstract_dit_params(model))
