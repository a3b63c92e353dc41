"""The tiny VAE: initialises, trains a step and evaluates in seconds (tests use it).

    python -m launch.train --config=configs/vae/tiny.py --workdir=/tmp/vae_tiny

2 encoded views at 32 px of the real objects (configs/paths.py) or any G-buffer root, 128 FPS
points, 128 -> 512 surfels rendered at 16 / 32 px, 1 + 1 supervised views, batch 8.
"""

import ml_collections

from configs.vae.base import base_config
from configs.vae.model import tiny_model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/vae/tiny.py: takes no variant, got {arg!r}")
    c = base_config(tiny_model())
    for data in (c.data, c.eval_data):
        data.views_per_half = 2
        data.num_supervise_per_half = 1
        data.encoder_size = 32
        data.render_size = 32
        data.fps_points = 128
        data.batch_size = 8  # divisible by the 8 simulated devices of the tests
        data.read_threads = 1
    t = c.train
    t.total_steps = 4
    t.log_every_steps = 2
    t.eval_every_steps = 4
    t.eval_batches = 1
    t.checkpoint_every_steps = 2
    t.render_sizes = (16, 32)
    c.optimizer.groups = (
        ("encoder", r"^encoder/", 1e-3, 1e-3),
        ("decoder", r"^decoder/", 1e-3, 1e-3),
        ("heads", r"^surfel_head/", 1e-3, 1e-2),
    )
    return c.lock()
