"""Measure generation on the synthetic set (ga_jax/evaluation/generation.py, issue 17).

    python -m launch.eval_generation --task=ceilings|text|image|points|nfe|edit|grid \
        --vae=outputs/vae_syn17 --stage1=outputs/flow_stage1_text \
        --stage2=outputs/flow_stage2_text --heldout=$GA_JAX_DATA_ROOT/synthetic_latents/heldout \
        --heldout_fps_root=/tmp/syn_heldout_fps --train_fps_root=/tmp/syn1000_fps \
        --out=outputs/eval_generation

Writes <out>/<task>.json (every row and the summary) and <out>/<task>.md; the judges are
built once from the training objects and cached in <out>/judges.npz.
"""

import json
import logging

from absl import app, flags

from ga_jax.data.latents import LatentDataset
from ga_jax.evaluation.generation import TASKS, build_judges, run_generation_eval
from ga_jax.pipeline.generate import Pipeline

_TASK = flags.DEFINE_enum("task", None, TASKS, "what to measure")
_VAE = flags.DEFINE_string(
    "vae", None, "the VAE: a run directory or a model file (launch.export_model)"
)
_STAGE1 = flags.DEFINE_string("stage1", None, "stage 1: a run directory or a model file")
_STAGE2 = flags.DEFINE_string("stage2", None, "stage 2: a run directory or a model file")
_HELDOUT = flags.DEFINE_string("heldout", None, "the held-out latent dataset")
_HELDOUT_FPS = flags.DEFINE_string("heldout_fps_root", None, "the held-out objects' FPS root")
_HELDOUT_SEED = flags.DEFINE_integer("heldout_seed", 1, "the held-out objects' dataset seed")
_TRAIN_FPS = flags.DEFINE_string("train_fps_root", None, "the training objects' FPS root")
_TRAIN_SEED = flags.DEFINE_integer("train_seed", 0, "the training objects' dataset seed")
_TRAIN_OBJECTS = flags.DEFINE_integer("train_objects", 1000, "training objects to draw from")
_SEEDS = flags.DEFINE_integer("seeds", 4, "seeds per seen prompt (text)")
_HELDOUT_SEEDS = flags.DEFINE_integer("heldout_seeds", 8, "seeds per held-out prompt (text)")
_BACKEND = flags.DEFINE_string("backend", "native", "renderer for the judge views")
_OUT = flags.DEFINE_string("out", None, "output directory")
flags.mark_flags_as_required(
    ["task", "vae", "stage1", "stage2", "heldout", "train_fps_root", "out"]
)


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    pipeline = Pipeline.from_runs(_VAE.value, _STAGE1.value, _STAGE2.value)
    judges = build_judges(
        _TRAIN_FPS.value,
        seed=_TRAIN_SEED.value,
        num_objects=_TRAIN_OBJECTS.value,
        points=pipeline.num_points,
        cache=f"{_OUT.value}/judges.npz",
    )
    summary = run_generation_eval(
        _TASK.value,
        _OUT.value,
        judges=judges,
        pipeline=pipeline,
        heldout=LatentDataset(_HELDOUT.value),
        heldout_fps_root=_HELDOUT_FPS.value,
        heldout_seed=_HELDOUT_SEED.value,
        seeds=_SEEDS.value,
        heldout_seeds=_HELDOUT_SEEDS.value,
        backend=_BACKEND.value,
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    app.run(main)
