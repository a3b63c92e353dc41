"""A finished (or running) training run read back from its workdir: the config it saved
with its latest checkpoint, and its parameters onto one device. What sampling, evaluation
and a flow stage's in-loop decode of a VAE run need; nothing of the optimiser state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections

from ga_jax.train.checkpoint import restore_params

__all__ = ["load_vae_run", "read_run_config", "single_device_abstract"]


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


def load_vae_run(workdir: str | Path) -> tuple[Any, Any]:
    """(VAE module, parameters of the latest checkpoint) of a VAE training run."""
    from ga_jax.models.vae.vae import abstract_variables, build_vae  # noqa: PLC0415

    vae = build_vae(read_run_config(workdir).model)
    abstract = single_device_abstract(abstract_variables(vae)["params"])
    params, _ = restore_params(Path(workdir) / "checkpoints", abstract)
    return vae, params
