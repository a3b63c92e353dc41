"""The paper-size VAE model (DESIGN.md sections 2-3): encoder ~14.1M, decoder ~156.6M params.

Inputs: 8 views at 512 px, 768 FPS points; 73,728 surfels at the finest level.
Only `config.model` is defined here; the trainer adds its data, train, loss and mesh
sections. Parameter counts (no memory is allocated):

    python -m launch.param_count --config=configs/vae/paper.py
"""

import ml_collections

from configs.vae.model import paper_model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/vae/paper.py: takes no variant, got {arg!r}")
    config = ml_collections.ConfigDict()
    config.model = paper_model()
    return config.lock()
