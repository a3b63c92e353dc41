"""Trained models as single files: what the repository ships and `Pipeline.from_runs` reads.

A model file is a safetensors file (readable by the `safetensors` package and every tool
built on it) holding one model's parameters, keyed by their tree path joined with '/'
('dit/block_0/attention/query/kernel'), stored in half precision by default, with string
metadata:

    format      "ga-jax-model/1"
    config      the training run's config (JSON), from which the model is rebuilt
    manifest    JSON: source workdir, step, which parameters (EMA or trained), dtype, and any
                fields the exporter adds (data seed, training time, metrics)

    python -m launch.export_model --workdir=outputs/flow_stage1_text \
        --out=models/stage1_text.safetensors

Writing a run's checkpoint as a model file and reading either kind back (`export_run`,
`load_model`) live with the runs, in ga_jax/train/runs.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

__all__ = [
    "FORMAT",
    "flatten_params",
    "read_model_file",
    "unflatten_params",
    "write_model_file",
]

FORMAT = "ga-jax-model/1"


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """A parameter tree as {'a/b/c': array} (a key that already holds '/' stays as is:
    unflatten_params then nests it)."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        flat["/".join(names)] = np.asarray(leaf)
    return flat


def unflatten_params(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a/b/c': array} back to nested dicts."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def write_model_file(
    path: str | Path,
    config: ml_collections.ConfigDict,
    params: Any,
    *,
    dtype: str = "float16",
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write params (cast to `dtype`) with the config and manifest; returns the manifest."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype: expected float16 or float32, got {dtype!r}")
    flat = {}
    for key, value in flatten_params(params).items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{key}: non-finite values; refusing to write {path}")
        if dtype == "float16" and value.size and np.abs(value).max() > np.finfo(np.float16).max:
            raise ValueError(f"{key}: out of float16 range (max |x| {np.abs(value).max():.3g})")
        cast = value.astype(dtype) if value.dtype.kind == "f" else value
        flat[key] = np.ascontiguousarray(cast)
    manifest = {**(manifest or {}), "dtype": dtype}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "config": config.to_json(), "manifest": json.dumps(manifest)}
    save_file(flat, str(path), metadata=metadata)
    return manifest


def read_model_file(path: str | Path) -> tuple[ml_collections.ConfigDict, Any, dict]:
    """(config, float32 parameters, manifest) of a model file."""
    from safetensors import safe_open  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            flat = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path}: metadata format {metadata.get('format')!r}, expected {FORMAT!r} "
            "(write model files with launch.export_model)"
        )
    config = ml_collections.ConfigDict(json.loads(metadata["config"]))
    params = unflatten_params(
        {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in flat.items()}
    )
    return config, params, json.loads(metadata["manifest"])
