"""The small image encoder's caption-contrastive pretraining (ga_jax/train/tasks/image_text.py)
on the synthetic set's conditioning views, before the image flow stages start from it.

    GA_JAX_DATA_ROOT=... python -m launch.train --config=configs/image_text/synthetic.py \
        --workdir=outputs/image_text
    python -m launch.export_model --workdir=outputs/image_text --dtype=float32 \
        --out=outputs/image_text/encoder.safetensors

then configs/flow/stage{1,2}_image.py with --config.condition.init_from=<that file>.
Variant "tiny" (tests): a 2-block encoder of 16 px images on $GA_JAX_DATA_ROOT/latents, 4 steps.

Fields: task 'image_text'; condition: the image encoder (the same fields as the flow
stages' condition, ga_jax/models/conditioning/image_encoder.py); text: the frozen text
encoder (MiniLM); model.embed_dim: the shared space; data / eval_data: the latent datasets
with conditioning views (ga_jax/data/flow_loader.py); optimizer, train, mesh: the loop's.
"""

import ml_collections

from configs.common import mesh_config, optimizer_config, train_config
from configs.flow.base import data_config
from configs.flow.synthetic import LATENT_SETS, latent_root
from configs.paths import data_root


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "tiny"):
        raise ValueError(f"configs/image_text/synthetic.py: variant '' or 'tiny', got {arg!r}")
    tiny = arg == "tiny"
    c = ml_collections.ConfigDict()
    c.task = "image_text"
    c.seed = 0
    c.init_from = ""
    c.condition = ml_collections.ConfigDict(dict(name="image_encoder"))
    c.text = ml_collections.ConfigDict(dict(name="minilm", max_length=16))
    c.model = ml_collections.ConfigDict(dict(embed_dim=128))
    if tiny:
        root = data_root() + "/latents"
        c.data, c.eval_data = data_config(root, "image"), data_config(root + "_heldout", "image")
    else:
        c.data = data_config(",".join(latent_root(n) for n in LATENT_SETS), "image")
        c.eval_data = data_config(latent_root("heldout"), "image")
    c.data.batch_size = 8 if tiny else 64
    c.eval_data.batch_size = 8 if tiny else 96
    c.eval_data.shuffle = False
    c.eval_data.num_epochs = 1
    heads = r"^(image_proj|text_proj|log_scale)"
    encoder = ("encoder", r"^encoder/", 1e-3, 0.05)
    c.optimizer = optimizer_config((encoder, ("heads", heads, 1e-3, 0.0)))
    c.optimizer.warmup_steps = 100
    t = c.train = train_config(eval_batches=1)
    t.total_steps = 1_500
    c.optimizer.decay_steps = t.total_steps
    t.log_every_steps = 50
    t.eval_every_steps = 250
    t.checkpoint_every_steps = 250
    if tiny:
        c.condition.update(image_size=16, patch=4, depth=2, width=32, num_heads=2)
        c.model.embed_dim = 16
        c.optimizer.warmup_steps = 0
        t.total_steps = t.eval_every_steps = t.checkpoint_every_steps = 4
        t.log_every_steps = 2
        c.optimizer.decay_steps = 0
    c.mesh = mesh_config()
    return c.lock()
