"""The paper-size VAE (DESIGN.md sections 2-5): encoder ~14.1M, decoder ~156.6M params.

    python -m launch.train --config=configs/vae/paper.py --workdir=W \
        --config.data.gbuffer_root=G --config.data.fps_root=F
    python -m launch.param_count --config=configs/vae/paper.py     # counts, no allocation

8 encoded views at 512 px, 768 FPS points, 73,728 surfels rendered at 128/256/384/512 px per
level, 4 + 4 supervised views, batch 16 (the paper used 8 GPUs), bf16 compute. Needs GPUs or
TPUs: use render_backend 'pallas' there.
"""

import ml_collections

from configs.vae.base import base_config
from configs.vae.model import paper_model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, ""):
        raise ValueError(f"configs/vae/paper.py: takes no variant, got {arg!r}")
    c = base_config(paper_model())
    c.train.render_backend = "pallas"
    c.eval_data.batch_size = 8
    return c.lock()
