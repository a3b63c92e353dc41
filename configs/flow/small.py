"""The small flow stages: CPU-trainable, the size the embedded default ships (issue 17 trains
them on the synthetic set's latents).

    python -m launch.train --config=configs/flow/small.py:1,text --workdir=W1
    python -m launch.train --config=configs/flow/small.py:2,text --workdir=W2

arg "<stage>,<condition>": stage 1 or 2, condition text (MiniLM, frozen) or image (the small
trainable image encoder). The small DiT of configs/flow/model.py; the latent dataset at
$GA_JAX_DATA_ROOT/latents (launch.extract_latents).
"""

import ml_collections

from configs.flow.base import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = (arg or "1,text").split(",")
    if len(parts) != 2:
        raise ValueError(f"configs/flow/small.py: expected '<stage>,<condition>', got {arg!r}")
    c = base_config(int(parts[0]), parts[1], "small")
    t = c.train
    t.total_steps = 20_000
    t.log_every_steps = 100
    t.eval_every_steps = 2_000
    t.checkpoint_every_steps = 1_000
    return c.lock()
