"""The tiny flow stages: initialise, train a step and sample in seconds (tests use them).

    python -m launch.train --config=configs/flow/tiny.py:1 --workdir=/tmp/flow1_tiny
    python -m launch.train --config=configs/flow/tiny.py:2,text --workdir=/tmp/flow2_tiny

arg "<stage>[,<condition>]": stage 1 or 2, condition image (default) or text. The tiny DiT
(configs/flow/model.py) with no conditioner (zeros: the machinery, not a model), the latent
dataset at $GA_JAX_DATA_ROOT/latents (the tests write one), batch 8, 4 Euler steps.
"""

import ml_collections

from configs.flow.base import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = (arg or "1").split(",")
    stage = int(parts[0])
    condition = parts[1] if len(parts) > 1 else "image"
    c = base_config(stage, condition, "tiny")
    for data in (c.data, c.eval_data):
        data.batch_size = 8  # divisible by the 8 simulated devices of the tests
        data.use_images = False
    c.eval.sampler.steps = 4
    t = c.train
    t.total_steps = 4
    t.log_every_steps = 2
    t.eval_every_steps = 4
    t.eval_batches = 1
    t.checkpoint_every_steps = 2
    c.optimizer.groups = (("dit", r"^dit/", 1e-3, 0.05), ("condition", r"^condition/", 1e-3, 0.05))
    return c.lock()
