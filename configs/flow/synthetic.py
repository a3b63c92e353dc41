"""The small flow stages trained on the synthetic set's latents (issue 17): the models the
embedded default ships. configs/flow/stage{1,2}_{text,image}.py call `synthetic_config`.

Data ($GA_JAX_DATA_ROOT/synthetic_latents/, written by launch.extract_latents; the commands
are in docs/results.md, "Generation on the synthetic set"):

    train_vae_objects/   the VAE's 1,000 training objects (seed 0), 3 chunks each
    train_more/          2,000 more objects (seed 0, objects 1,000-2,999), 1 chunk each
    heldout/             96 objects of another seed (1): never seen by the VAE or the flows

Both training sets leave out every object whose caption names a held-out shape/colour
combination (ga_jax/data/synthetic/splits.py). Stage 2 learns standardised h (per-channel
mean and std of the training latents, stored in the run's config). A DiT narrower than
'small' (width 128, 6 blocks: a step of the small one at batch 32 x 256 points is ~0.4 TFLOP,
seconds on the 2-core CPU), MiniLM (text, frozen) or the small image encoder (image: pretrained
against the captions, configs/image_text/synthetic.py, then fine-tuned with the DiT).
"""

import ml_collections

from configs.flow.base import base_config
from configs.paths import REPOSITORY, data_root

LATENT_SETS = ("train_vae_objects", "train_more")
# The image encoder's pretraining export (configs/image_text/synthetic.py's documented command).
PRETRAINED_ENCODER = REPOSITORY / "outputs" / "image_text" / "encoder.safetensors"


def latent_root(name: str) -> str:
    return f"{data_root()}/synthetic_latents/{name}"


def synthetic_config(stage: int, condition: str) -> ml_collections.ConfigDict:
    c = base_config(stage, condition, "small")
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 128, 6, 4, 512
    c.model.scan_layers = False  # unrolled: ~20% faster steps on the CPU (benchmarks.flow_step)
    c.data.root = ",".join(latent_root(n) for n in LATENT_SETS)
    c.eval_data.root = latent_root("heldout")
    c.data.batch_size = 16
    c.eval_data.batch_size = 16
    if condition == "text":
        c.condition.max_length = 16  # the longest synthetic caption is 12 tokens
        c.condition.cache_features = True  # MiniLM is frozen: its features once per caption
    if stage == 2:
        c.flow.standardise_features = True
        c.flow.feature_scale = 1.0
    condition_lr = 1e-3
    if condition == "image":
        # The encoder starts from its caption-contrastive pretraining (configs/image_text/
        # synthetic.py; trained from scratch with the DiT it learned colour but hardly shape)
        # and is fine-tuned at a tenth of the DiT's rate.
        c.condition.init_from = str(PRETRAINED_ENCODER)
        condition_lr = 1e-4
    # A short CPU run: a higher learning rate than the paper's 1e-4 after a warmup, decayed
    # to 0 over the run (a constant rate stopped improving the stage-1 shapes early;
    # docs/results.md), and an EMA of the weights for sampling.
    c.optimizer.groups = (
        ("dit", r"^dit/", 1e-3, 0.05),
        ("condition", r"^condition/", condition_lr, 0.05),
    )
    c.optimizer.warmup_steps = 100
    t = c.train
    t.total_steps = 2_000
    c.optimizer.decay_steps = t.total_steps
    t.log_every_steps = 50
    t.eval_every_steps = 500
    t.eval_batches = 2
    t.checkpoint_every_steps = 500
    t.ema_decay = 0.995
    c.eval.sampler.steps = 12
    if stage == 2:  # the grid decodes with the synthetic VAE run (docs/results.md)
        c.eval.vae_workdir = str(REPOSITORY / "outputs" / "vae_syn17")
    return c
