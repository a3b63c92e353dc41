"""Orbax checkpoints of {train state, data iterator state, config} in `workdir/checkpoints`.

Orbax writes each step to a temporary directory and renames it when complete, so a run
killed mid-save keeps every checkpoint it finished; `max_to_keep` deletes only older steps
after a newer one is complete. Restores go onto an abstract target whose leaves carry
shardings (jax.ShapeDtypeStruct with .sharding), so state comes back already sharded.

Resume order of the training loop (ga_jax/train/loop.py): the latest checkpoint in the
workdir (state + data iterator), else `config.init_from` (another run's checkpoints
directory: its parameters only, with a fresh optimiser at step 0), else scratch.

`restore_params` reads only a checkpoint's parameters (or EMA parameters): what every job
that does not train needs (evaluation, latent extraction, sampling). It reads no optimiser
state and builds no random state, and needs no optimiser config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "restore_params"]


class Checkpointer:
    """Save and restore steps of one run (`directory` = workdir/checkpoints)."""

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, asynchronous: bool = False):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=asynchronous
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_iterator: Any = None,
        config: Any = None,
    ) -> bool:
        """Save state (+ the grain iterator's position + the config as JSON) at `step`."""
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            import grain  # noqa: PLC0415 - only runs that checkpoint a grain iterator need it

            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        if config is not None:
            items["config"] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
        return self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, step: int | None, abstract_state: Any, *, data_iterator: Any = None) -> Any:
        """The state at `step` (default: latest) onto abstract_state's shapes and shardings;
        also moves `data_iterator` to where it was when that step was saved."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            if not (self.directory / str(step) / "data").is_dir():
                raise ValueError(
                    f"{self.directory}/{step}: holds no data-iterator state (saved without one)"
                )
            import grain  # noqa: PLC0415

            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore_params(
    directory: str | Path, abstract_params: Any, *, step: int | None = None, field: str = "params"
) -> tuple[Any, int]:
    """(parameters, step) of a run's checkpoints `directory` (default: the latest step), read
    onto abstract_params' shapes, dtypes and shardings (jax.ShapeDtypeStructs with .sharding)
    and nothing else of the state. field='ema_params' reads the moving average instead (runs
    with train.ema_decay > 0)."""
    directory = Path(directory).absolute()
    steps = []
    if directory.is_dir():
        manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(create=False, read_only=True)
        )
        steps = sorted(manager.all_steps())
        manager.close()
    if step is None:
        if not steps:
            raise FileNotFoundError(f"{directory}: no checkpoint (train first: launch.train)")
        step = steps[-1]
    path = directory / str(step) / "state"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint state (steps there: {steps})")
    target = {field: abstract_params}
    try:
        restored = ocp.PyTreeCheckpointer().restore(
            path,
            args=ocp.args.PyTreeRestore(
                item=target,
                restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                partial_restore=True,
            ),
        )
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"{path}: its {field!r} do not match the model's parameters ({e}); was it written "
            f"with another config?"
        ) from e
    return restored[field], step
