"""Checked conversion of a torch state dict (numpy values, from torch_pickle) into nested params.

A converter describes the network once, as a layout {torch key: (param path, torch shape)};
`convert_state_dict` refuses a state dict with missing, unexpected or mis-shaped tensors
(naming them and the file), so a different variant of a network is refused, not half-loaded.
BatchNorm `num_batches_tracked` counters are ignored: they do not affect inference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from ga_jax.weights.model_files import unflatten_params

Layout = Mapping[str, tuple[tuple[str, ...], tuple[int, ...]]]


def some_keys(keys: list[str], limit: int = 8) -> str:
    """The first `limit` keys, quoted, and how many there are in all (for error messages)."""
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"


def torch_kernel_to_linen(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """A `transform` for convert_state_dict: a 'kernel' leaf's torch conv weight OIHW -> Linen
    HWIO, or linear weight [out, in] -> [in, out]; every other leaf unchanged."""
    if path[-1] != "kernel":
        return value
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T


def torch_kernel_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of a Linen parameter (the inverse of torch_kernel_to_linen's layouts):
    a 'kernel' HWIO -> OIHW, [in, out] -> [out, in]; every other leaf unchanged."""
    if path[-1] != "kernel":
        return shape
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return shape[::-1]


def convert_state_dict(
    state: Mapping[str, Any],
    layout: Layout,
    *,
    source: str,
    expected: str,
    transform: Callable[[tuple[str, ...], np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Nested float32 params from `state`, each tensor passed through transform(path, array)
    (e.g. OIHW -> HWIO for a conv kernel). Raises ValueError "<source>: not <expected>: ..."
    listing the missing, unexpected and mis-shaped keys."""
    missing = [k for k in layout if k not in state]
    extra = sorted(k for k in state if k not in layout and not k.endswith(".num_batches_tracked"))
    problems = []
    if missing:
        problems.append(f"missing keys {some_keys(missing)}")
    if extra:
        problems.append(f"unexpected keys {some_keys(extra)}")
    for key, (_, shape) in layout.items():
        if key in state and tuple(np.shape(state[key])) != shape:
            problems.append(f"'{key}' has shape {tuple(np.shape(state[key]))}, expected {shape}")
    if problems:
        raise ValueError(f"{source}: not {expected}: " + "; ".join(problems))
    return unflatten_params(
        {
            "/".join(path): jnp.asarray(transform(path, np.asarray(state[key], np.float32)))
            for key, (path, _) in layout.items()
        }
    )
