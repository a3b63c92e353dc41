"""The paper-size flow stages (DESIGN.md section 6): 24-block, 1024-wide DiTs (412.8M / 402.1M
parameters for stage 1 image / text) on the paper VAE's latents, conditioned on the frozen
DINOv2 ViT-L/14 with registers (image, 518 px) or CLIP ViT-L/14 text; bf16 compute. Needs
GPUs or TPUs and local encoder weights (nothing is downloaded):

    python -m launch.train --config=configs/flow/paper.py:1,image --workdir=W1 \
        --config.condition.weights=/weights/dinov2-vitl14-reg \
        --config.data.root=/data/latents --config.eval_data.root=/data/latents_heldout \
        --config.mesh.shape.fsdp=8

arg "<stage>,<condition>": stage 1 or 2, condition image or text. The paper's optimiser (AdamW
lr 1e-4, weight decay 0.05, clip 1.0) and batch 320; stage 2 learns h x 1 (image) / x 4
(text), as the reference does.
"""

import ml_collections

from configs.flow.base import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = (arg or "1,image").split(",")
    if len(parts) != 2 or parts[0] not in ("1", "2"):
        raise ValueError(f"configs/flow/paper.py: expected '<1|2>,<image|text>', got {arg!r}")
    c = base_config(int(parts[0]), parts[1], "paper")
    c.data.batch_size = 320
    c.eval_data.batch_size = 32
    c.eval.sampler.name = "dopri5"  # the reference's sampler (DESIGN.md section 6)
    t = c.train
    t.total_steps = 500_000
    t.log_every_steps = 100
    t.eval_every_steps = 10_000
    t.checkpoint_every_steps = 5_000
    t.ema_decay = 0.9999
    return c.lock()
