"""Orbax checkpoints of {train state, data iterator state, config} in `workdir/checkpoints`.

Orbax writes each step to a temporary directory and renames it when complete, so a run
killed mid-save keeps every checkpoint it finished; `max_to_keep` deletes only older steps
after a newer one is complete. Restores go onto an abstract target whose leaves carry
shardings (jax.ShapeDtypeStruct with .sharding), so state comes back already sharded.

Resume order used by the trainers: the latest checkpoint in the workdir, else
`config.init_from` (a checkpoint directory of another run: state only), else scratch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


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
