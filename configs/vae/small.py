"""A small VAE model meant to train on the 2-core CPU in about 45 min.

Inputs: 4 views at 64 px, 256 FPS points; 4,096 surfels at the finest level.
Only `config.model` is defined here; the trainer adds its data, train, loss and mesh
sections. Parameter counts (no memory is allocated):

    python -m launch.param_count --config=configs/vae/small.py
"""

import ml_collections

from configs.vae.model import small_model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/vae/small.py: takes no variant, got {arg!r}")
    config = ml_collections.ConfigDict()
    config.model = small_model()
    return config.lock()
