"""A finished (or running) training run read back from its workdir: the config it saved
with its latest checkpoint, and its parameters onto one device. What sampling, evaluation
and a flow stage's in-loop decode of a VAE run need; nothing of the optimiser state.

`export_run` writes a run's parameters as a model file (ga_jax/weights/model_files.py) and
`load_model` reads a model file or a run's directory, so that every consumer takes either."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from ga_jax.train.checkpoint import restore_params
from ga_jax.weights.model_files import read_model_file, write_model_file

__all__ = [
    "abstract_params",
    "export_run",
    "load_model",
    "load_run",
    "load_vae_run",
    "params_field",
    "read_run_config",
    "single_device_abstract",
    "training_minutes",
]


def read_run_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a training run saved with its latest checkpoint."""
    directory = Path(workdir) / "checkpoints"
    steps = sorted(int(p.name) for p in directory.glob("[0-9]*") if p.name.isdigit())
    if not steps:
        raise FileNotFoundError(f"{directory}: no checkpoint (train first: launch.train)")
    path = directory / str(steps[-1]) / "config" / "metadata"
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise FileNotFoundError(f"{path}: the run's saved config is missing or unreadable") from e


def single_device_abstract(abstract: Any) -> Any:
    """Abstract parameters without their logical-axis boxes, placed on the first device: a
    restore target for one process (multi-device restores: parallel.mesh.sharded_abstract)."""
    from flax import linen as nn  # noqa: PLC0415

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nn.unbox(abstract)
    )


def abstract_params(config: Any) -> Any:
    """The parameter shapes of a run's model from its config: the VAE (config.task 'vae' or
    absent), a flow stage (task 'flow': the DiT and a trainable conditioner) or the image
    encoder's pretraining (task 'image_text')."""
    task = config.get("task", "vae")
    if task == "vae":
        from ga_jax.models.vae.vae import abstract_variables, build_vae  # noqa: PLC0415

        return abstract_variables(build_vae(config.model))["params"]
    if task == "flow":
        from ga_jax.models.conditioning.build import build_conditioner  # noqa: PLC0415
        from ga_jax.models.flow.build import build_dit  # noqa: PLC0415
        from ga_jax.models.flow.stage import init_stage_params  # noqa: PLC0415

        init = functools.partial(
            init_stage_params, build_dit(config.model), build_conditioner(config.condition)
        )
        return jax.eval_shape(init, jax.random.key(0))
    if task == "image_text":
        from ga_jax.train.tasks.image_text import ImageTextTask  # noqa: PLC0415

        return jax.eval_shape(ImageTextTask(config).init_params, jax.random.key(0))
    raise ValueError(f"config.task: expected 'vae', 'flow' or 'image_text', got {task!r}")


def params_field(config: Any) -> str:
    """The checkpoint field a run's users read: 'ema_params' when the run kept an EMA of its
    weights (train.ema_decay > 0), else 'params'."""
    return "ema_params" if config.train.get("ema_decay", 0.0) > 0 else "params"


def load_run(workdir: str | Path) -> tuple[ml_collections.ConfigDict, Any, int]:
    """(config, parameters of params_field, step) of a run's latest checkpoint."""
    config = read_run_config(workdir)
    abstract = single_device_abstract(abstract_params(config))
    params, step = restore_params(
        Path(workdir) / "checkpoints", abstract, field=params_field(config)
    )
    return config, params, step


def load_vae_run(workdir: str | Path) -> tuple[Any, Any]:
    """(VAE module, parameters of the latest checkpoint) of a VAE training run."""
    from ga_jax.models.vae.vae import build_vae  # noqa: PLC0415

    config, params, _ = load_run(workdir)
    return build_vae(config.model), params


def export_run(
    workdir: str | Path,
    out: str | Path,
    *,
    dtype: str = "float16",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A training run's latest parameters (EMA when kept) as a model file; returns the
    manifest."""
    config, params, step = load_run(workdir)
    manifest = {
        "source": str(workdir),
        "step": int(step),
        "parameters": params_field(config),
        "training_minutes": training_minutes(workdir),
        **(extra or {}),
    }
    return write_model_file(out, config, jax.device_get(params), dtype=dtype, manifest=manifest)


def training_minutes(workdir: str | Path, gap_minutes: float = 30.0) -> float | None:
    """Wall minutes a run spent training, from the times of its metrics.jsonl rows: the sum
    of the gaps between consecutive rows, leaving out gaps over `gap_minutes` (the run was
    stopped and resumed). None when the run logged fewer than two rows."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        return None
    times = []
    for line in path.read_text().splitlines():
        try:
            times.append(float(json.loads(line)["time"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a partial last line of a killed run
    gaps = np.diff(np.sort(np.asarray(times)))
    if len(gaps) == 0:
        return None
    return float(gaps[gaps <= gap_minutes * 60].sum() / 60)


def load_model(path: str | Path) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, parameters) of a model file or of a training run's directory."""
    path = Path(path)
    if path.is_dir():
        config, params, _ = load_run(path)
        return config, params
    config, params, _ = read_model_file(path)
    return config, jax.tree.map(jax.numpy.asarray, params)
