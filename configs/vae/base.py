"""The VAE training config shared by configs/vae/{paper,small,tiny}.py.

`base_config(model)` adds to a model section (configs/vae/model.py) everything the trainer
(ga_jax.train.loop with ga_jax.train.tasks.vae) reads; a variant overrides only what differs:

    data        the input pipeline (configs/common.py data_config)
    eval_data   the same fields for the held-out evaluation batches (one pass, no jitter)
    loss        ga_jax.losses.vae.default_loss_config (weights, start steps, KL anneal)
    discriminator  ga_jax.losses.patchgan (PatchGAN + its AdamW; when loss.use_adversarial)
    optimizer   ga_jax.train.optimizers (AdamW groups: encoder / decoder DiT / surfel heads)
    train       steps, logging/eval/checkpoint periods, render sizes per surfel level
    mesh        axis sizes (-1 = the remaining devices), how many devices, logical-axis rules
"""

import ml_collections
from ml_collections import config_dict

from configs.common import data_config
from ga_jax.losses.patchgan import default_discriminator_config
from ga_jax.losses.vae import default_loss_config


def base_config(
    model: ml_collections.ConfigDict,
    gbuffer: str = "objaverse_gbuffer",
    eval_gbuffer: str | None = None,
) -> ml_collections.ConfigDict:
    """gbuffer, eval_gbuffer: the training / held-out datasets' folders under the data root
    (configs/paths.py); the held-out one defaults to the training one."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""  # a checkpoints directory of another run (state only); "" = none
    c.model = model

    c.data = data_config(gbuffer)
    c.eval_data = data_config(eval_gbuffer or gbuffer)
    c.eval_data.shuffle = False
    c.eval_data.num_epochs = 1
    c.eval_data.jitter_prob = 0.0

    c.loss = default_loss_config()
    c.discriminator = default_discriminator_config()  # used when loss.use_adversarial

    c.optimizer = ml_collections.ConfigDict()
    o = c.optimizer
    o.clip_norm = 1.0
    o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8
    o.warmup_steps = 0
    o.decay_steps = 0  # > 0: cosine decay to lr * final_lr_fraction at this step
    o.final_lr_fraction = 0.0
    # (name, regex on the parameter path, lr, weight decay); first match wins.
    o.groups = (
        ("encoder", r"^encoder/", 1e-4, 1e-3),
        ("decoder", r"^decoder/", 5e-5, 1e-3),
        ("heads", r"^surfel_head/", 1e-4, 1e-2),
    )

    c.train = ml_collections.ConfigDict()
    t = c.train
    t.total_steps = 1_000_000
    t.log_every_steps = 50
    t.eval_every_steps = 5_000
    t.eval_batches = 4
    t.checkpoint_every_steps = 5_000
    t.keep_checkpoints = 3
    t.time_limit_minutes = 0.0  # > 0: stop (evaluate, checkpoint) after this much training
    # One size per surfel level, coarse to fine: base 128, then the upsamplers' 256/384/512.
    t.render_sizes = (128, 256, 384, 512)
    t.render_backend = "xla"  # 'pallas' on GPU/TPU
    t.capacity_per_surfel = 8.0  # surfel-tile pair slots per surfel (overflow is reported)
    t.debug_nan_at_step = -1  # test hook: make that step's loss NaN

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = {"data": -1, "fsdp": 1, "tensor": 1}
    c.mesh.num_devices = -1  # -1 = every device; N = the first N
    c.mesh.rules = config_dict.placeholder(tuple)  # None = ga_jax.parallel.mesh.DEFAULT_RULES
    return c
