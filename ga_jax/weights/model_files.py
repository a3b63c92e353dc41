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

A models directory (what `Pipeline.from_pretrained` reads; the embedded default is one) holds
model files named <name>.safetensors and a manifest.json:

    {"format": "ga-jax-models/1",
     "models": {"vae": {"file": "vae.safetensors", "bytes": ..., "sha256": ..., "step": ...,
                        ... (what the exporter recorded: config, data, training time, metrics)},
                "stage1_text": {...}, "stage2_text": {...}, ...},
     "files": {"judges": {"file": "judges.npz", ...}},          (optional)
     "sampling": {"stage1_text": {"guidance_scale": 6.0}, ...},  (optional)
     "measurements": {"text": {"summary": ..., "command": ...}, ...}}   (optional)

Names: "vae" and "stage<1|2>_<condition>" (condition "text" or "image"). The measurements
are those of launch.eval_generation --models=<dir> --record, made on the stored files.
"sampling" holds defaults chosen by measuring the stored files (a stage's guidance scale),
which replace the training config's when the directory is loaded (`sampling_defaults`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

__all__ = [
    "FORMAT",
    "MODELS_FORMAT",
    "add_to_models_directory",
    "models_directory_files",
    "record_measurement",
    "sampling_defaults",
    "set_sampling_default",
    "flatten_params",
    "read_model_file",
    "unflatten_params",
    "write_model_file",
]

FORMAT = "ga-jax-model/1"
MODELS_FORMAT = "ga-jax-models/1"
MANIFEST = "manifest.json"


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


def _read_models_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing (a models directory holds model files and a {MANIFEST}; write "
            "one with launch.export_model --models_dir)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != MODELS_FORMAT:
        raise ValueError(f"{path}: expected format {MODELS_FORMAT!r}")
    if not isinstance(manifest.get("models"), dict):
        raise ValueError(f"{path}: expected a 'models' object")
    return manifest


def models_directory_files(directory: str | Path, names: list[str]) -> list[Path]:
    """The model files of `names` in a models directory (module docstring), checked against
    the manifest's sizes; errors name the directory, the missing name and what it holds."""
    directory = Path(directory)
    models = _read_models_manifest(directory)["models"]
    files = []
    for name in names:
        if name not in models:
            raise FileNotFoundError(
                f"{directory / MANIFEST}: no model {name!r} (it lists {sorted(models)})"
            )
        path = directory / models[name]["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed for {name!r} in the manifest but missing")
        if path.stat().st_size != models[name].get("bytes", path.stat().st_size):
            raise ValueError(
                f"{path}: {path.stat().st_size} bytes, the manifest says "
                f"{models[name]['bytes']} (a Git LFS pointer or a partial copy?)"
            )
        files.append(path)
    return files


# guidance_scale: a flow stage's guidance; edit_strength: Pipeline.edit's stage-2 rerun, (0, 1].
SAMPLING_FIELDS = ("guidance_scale", "edit_strength")
_SAMPLING_MAX = {"edit_strength": 1.0}


def sampling_defaults(directory: str | Path, name: str) -> dict[str, float]:
    """The manifest's "sampling" defaults of model `name` ({} when it has none), checked."""
    path = Path(directory) / MANIFEST
    entry = _read_models_manifest(Path(directory)).get("sampling", {}).get(name, {})
    unknown = sorted(set(entry) - set(SAMPLING_FIELDS))
    if unknown:
        raise ValueError(f"{path}: sampling.{name}: unknown field(s) {unknown}; expected "
                         f"some of {list(SAMPLING_FIELDS)}")  # fmt: skip
    for field, value in entry.items():
        _check_sampling_value(f"{path}: sampling.{name}.{field}", field, value)
    return {k: float(v) for k, v in entry.items()}


def _check_sampling_value(where: str, field: str, value: Any) -> None:
    top = _SAMPLING_MAX.get(field, float("inf"))
    if not isinstance(value, int | float) or not 0 < value <= top:
        bound = f" at most {top}" if top < float("inf") else ""
        raise ValueError(f"{where}: expected a positive number{bound}, got {value!r}")


def set_sampling_default(directory: str | Path, name: str, field: str, value: float) -> None:
    """Record a measured sampling default of model `name` in the directory's manifest."""
    if field not in SAMPLING_FIELDS:
        raise ValueError(f"sampling field: expected one of {list(SAMPLING_FIELDS)}, got {field!r}")
    _check_sampling_value(f"sampling.{name}.{field}", field, value)
    directory = Path(directory)
    manifest = _read_models_manifest(directory)
    if name not in manifest["models"]:
        raise ValueError(f"{directory / MANIFEST}: no model {name!r} to set {field} for")
    manifest.setdefault("sampling", {}).setdefault(name, {})[field] = float(value)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _update_models_manifest(directory: Path, section: str, name: str, entry: Any) -> None:
    if (directory / MANIFEST).is_file():
        manifest = _read_models_manifest(directory)
    else:
        manifest = {"format": MODELS_FORMAT, "models": {}}
    manifest.setdefault(section, {})[name] = entry
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def add_to_models_directory(
    directory: str | Path,
    name: str,
    model_file: str | Path,
    fields: dict[str, Any],
    section: str = "models",
) -> dict[str, Any]:
    """Record `model_file` (already in `directory`) under `name` in the directory's manifest
    (created when missing), with its size, SHA-256 and `fields`; returns the entry. Files that
    are not models (the judges the measurements used) go in section "files"."""
    directory, model_file = Path(directory), Path(model_file)
    if model_file.parent.resolve() != directory.resolve():
        raise ValueError(f"{model_file}: expected a file inside {directory}")
    data = model_file.read_bytes()
    entry = {
        "file": model_file.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **fields,
    }
    _update_models_manifest(directory, section, name, entry)
    return entry


def record_measurement(directory: str | Path, task: str, measurement: dict[str, Any]) -> None:
    """Store an evaluation of the directory's models (a summary and how it was made) in its
    manifest under "measurements"/<task>, replacing an earlier one of the same task."""
    directory = Path(directory)
    _read_models_manifest(directory)  # the directory must already be a models directory
    _update_models_manifest(directory, "measurements", task, measurement)
