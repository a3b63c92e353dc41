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

from configs.common import data_config, mesh_config, optimizer_config, train_config
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

    # (name, regex on the parameter path, lr, weight decay); first match wins.
    c.optimizer = optimizer_config(
        (
            ("encoder", r"^encoder/", 1e-4, 1e-3),
            ("decoder", r"^decoder/", 5e-5, 1e-3),
            ("heads", r"^surfel_head/", 1e-4, 1e-2),
        )
    )

    c.train = train_config(eval_batches=4)
    t = c.train
    # One size per surfel level, coarse to fine: base 128, then the upsamplers' 256/384/512.
    t.render_sizes = (128, 256, 384, 512)
    t.render_backend = "xla"  # 'pallas' on GPU/TPU
    t.capacity_per_surfel = 8.0  # surfel-tile pair slots per surfel (overflow is reported)
    t.debug_nan_at_step = -1  # test hook: make that step's loss NaN

    c.mesh = mesh_config()
    return c
