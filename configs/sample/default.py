"""Sampling: text / image / point cloud to 3D with trained runs (ga_jax/pipeline/generate.py).

    python -m launch.sample --config=configs/sample/default.py --config.prompt="a red cube"
    python -m launch.sample --config=configs/sample/default.py \
        --config.vae_workdir=W0 --config.stage1_workdir=W1 --config.stage2_workdir=W2 \
        --config.prompt="a red cube" --config.num_samples=4 --config.outdir=outputs/samples
    python -m launch.sample --config=configs/sample/default.py:random_tiny --config.prompt=x

Fields:
    models                a models directory (Pipeline.from_pretrained: model files and a
                          manifest.json); '' = the small synthetic-set models the package
                          ships. Used when neither the workdirs nor random_init are set; the
                          text stages, or the image stages when only an image is given.
    vae_workdir, stage1_workdir, stage2_workdir   training runs (their latest checkpoints and
                          the configs they saved); all three, or none
    random_init           'vae config;stage-1 config;stage-2 config' (config file specs):
                          random weights of those sizes, for smoke runs and timing ('' = off)
    prompt / image / points   the condition: a prompt, an image file (PNG/JPEG), a PLY of any
                          size (skips stage 1; FPS'd to the latent's points, rescaled only if
                          outside the [-0.45, 0.45]^3 box); points may come with a prompt or
                          image for stage 2
    seed, num_samples     sample s of seed k uses noise rows from (k, s, point)
    sampler               ga_jax.flow.samplers.SamplerSettings fields (euler | heun | dopri5);
                          the default, Heun 12 steps, is the Pipeline's (ga_jax/flow/samplers.py)
    guidance              guidance scale of both stages (None: each stage's training default)
    outdir                one sample directory per sample: <outdir>/<name>_s<seed>_<index>/
    render                the renders.png grid: views, size (px), backend
    formats               more files in each sample directory, object.<ext>: a comma-separated
                          list of ga_jax/export's formats ("3dgs,glb,gif"; also obj, mp4, png,
                          points, ply), rendered with `render` ('' = none)
"""

import ml_collections
from ml_collections import config_dict

RANDOM_TINY = "configs/vae/tiny.py;configs/flow/tiny.py:1;configs/flow/tiny.py:2"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.models = ""
    c.vae_workdir = ""
    c.stage1_workdir = ""
    c.stage2_workdir = ""
    c.random_init = ""
    c.prompt = config_dict.placeholder(str)
    c.image = ""
    c.points = ""
    c.seed = 0
    c.num_samples = 1
    c.sampler = ml_collections.ConfigDict(
        dict(name="heun", steps=12, shift=1.0, rtol=1e-3, atol=1e-6, max_steps=1024, dt0=0.01)
    )
    c.guidance = config_dict.placeholder(float)
    c.outdir = "outputs/samples"
    c.render = ml_collections.ConfigDict(dict(views=4, size=256, backend="xla"))
    c.formats = ""
    if arg == "random_tiny":
        c.random_init = RANDOM_TINY
        c.render.size = 64
    elif arg not in (None, ""):
        raise ValueError(f"configs/sample/default.py: variants: random_tiny; got {arg!r}")
    return c.lock()
