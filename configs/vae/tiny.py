"""A tiny VAE model for tests: initialises and applies in seconds on a CPU.

Inputs: 2 views at 32 px, 128 FPS points; 512 surfels at the finest level.
Only `config.model` is defined here; the trainer adds its data, train, loss and mesh
sections. Parameter counts (no memory is allocated):

    python -m launch.param_count --config=configs/vae/tiny.py
"""

import ml_collections

from configs.vae.model import tiny_model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/vae/tiny.py: takes no variant, got {arg!r}")
    config = ml_collections.ConfigDict()
    config.model = tiny_model()
    return config.lock()
