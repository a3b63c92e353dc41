"""Load a config file by path, as --config does: "configs/flow/tiny.py:2,text" calls that
file's get_config("2,text") (no variant: get_config(None)). For configs that name other
configs (a sampling config names the training configs of random-weight runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from configs.paths import REPOSITORY


def load_config(spec: str):
    """The ConfigDict of `path[:variant]`; a relative path is tried from the working
    directory, then from the repository."""
    name, _, variant = spec.partition(":")
    path = Path(name)
    if not path.is_file() and not path.is_absolute():
        path = REPOSITORY / name
    if not path.is_file():
        raise FileNotFoundError(f"config {spec!r}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)
