"""The tasks the training loop runs, by the name in `config.task` (default 'vae')."""

from __future__ import annotations

import importlib

from ga_jax.train.task import Task

__all__ = ["TASKS", "make_task"]

# name -> "module:class"; imported on demand (a task may need packages others do not).
TASKS = {
    "vae": "ga_jax.train.tasks.vae:VaeTask",
    "flow": "ga_jax.train.tasks.flow:FlowTask",
    "image_text": "ga_jax.train.tasks.image_text:ImageTextTask",
}


def make_task(config) -> Task:
    """The Task named by config.task ('vae' when the config has no such field)."""
    name = config.get("task", "vae")
    if name not in TASKS:
        raise ValueError(f"config.task: expected one of {sorted(TASKS)}, got {name!r}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(config)
