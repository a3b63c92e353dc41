"""The flow-stage training config shared by configs/flow/*.py (ga_jax/train/tasks/flow.py).

`base_config(stage, condition, size)` builds on the DiT section of configs/flow/model.py;
a variant overrides only what differs:

    task, stage     'flow'; 1 (the latent's xyz) or 2 (its features given the xyz)
    model           the stage DiT (configs/flow/model.py)
    condition       the conditioner (ga_jax/models/conditioning/build.py: name + fields)
    flow            path 'gvp' (the paper's) | 'linear'; time_sampling 'uniform' |
                    'logit_normal' (with logit_normal_mean / _std); condition_dropout, the
                    probability of training a sample unconditionally (guidance needs it);
                    xyz_scale: stage 1's data is xyz / xyz_scale (0.164 makes the objects'
                    coordinates unit-scale); feature_scale: stage 2's data is h *
                    feature_scale (the paper: 1 image, 4 text), or (h - feature_mean) /
                    feature_std * feature_scale with standardise_features (stats from
                    data.root, filled in by the task); guidance_scale: the sampling
                    default (DESIGN.md: 4.5 image, 4.0 text)
    data            the latent dataset (ga_jax/data/flow_loader.py): root, batch_size
                    (global), seed, shuffle, num_epochs, latent_field 'sample' | 'mean',
                    use_images (read one conditioning view per object)
    eval_data       the same for the held-out batches (one ordered pass)
    eval            sampling during evaluation: seed, guidance_scale, sampler
                    (ga_jax.flow.samplers.SamplerSettings fields); the render grid (grid,
                    and vae_workdir: the VAE run that decodes stage 2)
    optimizer       AdamW groups (ga_jax/train/optimizers.py): the DiT, a trainable encoder
    train, mesh     as every task of ga_jax/train/loop.py
"""

import ml_collections
from ml_collections import config_dict

from configs.common import mesh_config, optimizer_config, train_config
from configs.flow.model import dit_model
from configs.paths import data_root

CONDITIONS = ("image", "text")


def condition_config(condition: str, size: str) -> ml_collections.ConfigDict:
    """The conditioner of a size: the paper's frozen DINOv2 / CLIP, the offline small ones
    (the trainable image encoder, MiniLM), 'none' for tiny test configs."""
    c = ml_collections.ConfigDict()
    if size == "paper":
        c.name = "dinov2" if condition == "image" else "clip_text"
        c.weights = ""  # a local directory / file; required (nothing is downloaded)
    elif size == "small":
        c.name = "image_encoder" if condition == "image" else "minilm"
        if condition == "image":  # an image-text run's export to start from ('' = random)
            c.init_from = ""
    else:
        c.name = "none"
    return c


def data_config(root: str, condition: str) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.root = root
    d.batch_size = 32
    d.seed = 0
    d.shuffle = True
    d.num_epochs = config_dict.placeholder(int)  # None = repeat forever
    d.latent_field = "sample"
    d.use_images = condition == "image"
    return d


def base_config(stage: int, condition: str, size: str) -> ml_collections.ConfigDict:
    if condition not in CONDITIONS:
        raise ValueError(f"condition: expected one of {CONDITIONS}, got {condition!r}")
    c = ml_collections.ConfigDict()
    c.task = "flow"
    c.stage = stage
    c.seed = 0
    c.init_from = ""
    c.model = dit_model(stage, condition, size)
    c.condition = condition_config(condition, size)

    c.flow = ml_collections.ConfigDict()
    f = c.flow
    f.path = "gvp"
    f.time_sampling = "uniform"
    f.logit_normal_mean = 0.0
    f.logit_normal_std = 1.0
    f.condition_dropout = 0.1
    f.xyz_scale = 0.164
    f.feature_scale = 1.0 if condition == "image" else 4.0
    # Per-channel standardisation of h (ga_jax/flow/scaling.py): with standardise_features
    # the flow task fills feature_mean / feature_std from the training latents' stats, and the
    # run's saved config carries them to sampling.
    f.standardise_features = False
    f.feature_mean = ()
    f.feature_std = ()
    f.guidance_scale = 4.5 if condition == "image" else 4.0

    root = data_root() + "/latents"
    c.data = data_config(root, condition)
    c.eval_data = data_config(root + "_heldout", condition)
    c.eval_data.shuffle = False
    c.eval_data.num_epochs = 1

    c.eval = ml_collections.ConfigDict()
    c.eval.seed = 0
    c.eval.guidance_scale = f.get_ref("guidance_scale")
    c.eval.sampler = ml_collections.ConfigDict(
        dict(name="euler", steps=25, shift=1.0, rtol=1e-3, atol=1e-6, max_steps=1024, dt0=0.01)
    )
    # The render grid of the first evaluation batch (ga_jax/train/tasks/flow.py); stage 2
    # draws it only with a VAE run to decode with.
    c.eval.grid = ml_collections.ConfigDict(dict(samples=4, views=3, resolution=64))
    c.eval.vae_workdir = ""

    # DESIGN.md section 6: AdamW lr 1e-4, weight decay 0.05.
    c.optimizer = optimizer_config(
        (("dit", r"^dit/", 1e-4, 0.05), ("condition", r"^condition/", 1e-4, 0.05))
    )
    c.train = train_config(eval_batches=2)
    c.mesh = mesh_config()
    return c
