"""Where the data lives: one root that every config builds on.

    GA_JAX_DATA_ROOT=/data/ga python -m launch.train --config=configs/vae/small.py ...
    python -m launch.train ... --config.data.data_root=/data/ga     # the same, per run

The root is $GA_JAX_DATA_ROOT when set, else the shared data beside the repository
(<repository>/../shared/data), found from this file's location, never the working
directory. Under it:

    objaverse_gbuffer/, objaverse_fps/       the real G-buffer renders and their FPS clouds
    synthetic/, synthetic_fps/               `launch.make_synthetic --out=<root>/synthetic`
    synthetic_eval/, synthetic_eval_fps/     the held-out synthetic objects (another seed)

A data config's `data_root` field holds it; its gbuffer_root and fps_root are built on it
(they follow an override of data_root, or can be set to any path themselves).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ROOT_ENV", "REPOSITORY", "data_root"]

DATA_ROOT_ENV = "GA_JAX_DATA_ROOT"
REPOSITORY = Path(__file__).resolve().parents[1]


def data_root() -> str:
    """$GA_JAX_DATA_ROOT, else <repository>/../shared/data, as an absolute path."""
    root = os.environ.get(DATA_ROOT_ENV) or REPOSITORY.parent / "shared" / "data"
    return str(Path(root).expanduser().absolute())
