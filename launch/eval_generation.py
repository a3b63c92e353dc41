"""Measure generation on the synthetic set (ga_jax/evaluation/generation.py, issue 17).

    python -m launch.eval_generation --task=ceilings|text|image|points|nfe|edit|grid \
        --vae=outputs/vae_syn17 --stage1=outputs/flow_stage1_text \
        --stage2=outputs/flow_stage2_text --heldout=$GA_JAX_DATA_ROOT/synthetic_latents/heldout \
        --heldout_fps_root=/tmp/syn_heldout_fps --train_fps_root=/tmp/syn1000_fps \
        --out=outputs/eval_generation

    python -m launch.eval_generation --task=text --models=ga_jax/pretrained/synthetic \
        --heldout=... --train_fps_root=... --out=outputs/eval_shipped --record

--task=captions generates one object from each held-out object's caption and also writes it
as a sample directory <out>/samples/<instance_id>/, the generated set of launch.evaluate.

Writes <out>/<task>.json (every row and the summary) and <out>/<task>.md; the judges are
built once from the training objects and cached in <out>/judges.npz. --models takes a models
directory instead of --vae/--stage1/--stage2 (the image task uses its image stages, every
other task its text stages); with --record the task's summary and this command go into that
directory's manifest ("measurements") and the judges file is copied beside the models, so
that what was measured ships with the weights (and --edit_strength, when given, becomes the
directory's editing default).
"""

import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from absl import app, flags

from ga_jax.data.latents import LatentDataset
from ga_jax.evaluation.generation import TASKS, build_judges, run_generation_eval
from ga_jax.pipeline.generate import Pipeline
from ga_jax.weights.model_files import (
    add_to_models_directory,
    record_measurement,
    set_sampling_default,
)
from launch import cluster

_TASK = flags.DEFINE_enum("task", None, TASKS, "what to measure")
_VAE = flags.DEFINE_string(
    "vae", None, "the VAE: a run directory or a model file (launch.export_model)"
)
_STAGE1 = flags.DEFINE_string("stage1", None, "stage 1: a run directory or a model file")
_STAGE2 = flags.DEFINE_string("stage2", None, "stage 2: a run directory or a model file")
_MODELS = flags.DEFINE_string(
    "models", None, "instead of --vae/--stage1/--stage2: a models directory"
)
_RECORD = flags.DEFINE_bool(
    "record", False, "write the summary and the judges into --models' manifest"
)
_HELDOUT = flags.DEFINE_string("heldout", None, "the held-out latent dataset")
_HELDOUT_FPS = flags.DEFINE_string("heldout_fps_root", None, "the held-out objects' FPS root")
_HELDOUT_SEED = flags.DEFINE_integer("heldout_seed", 1, "the held-out objects' dataset seed")
_TRAIN_FPS = flags.DEFINE_string("train_fps_root", None, "the training objects' FPS root")
_TRAIN_SEED = flags.DEFINE_integer("train_seed", 0, "the training objects' dataset seed")
_TRAIN_OBJECTS = flags.DEFINE_integer("train_objects", 1000, "training objects to draw from")
_SEEDS = flags.DEFINE_integer("seeds", 4, "seeds per seen prompt (text)")
_HELDOUT_SEEDS = flags.DEFINE_integer("heldout_seeds", 8, "seeds per held-out prompt (text)")
_SEED = flags.DEFINE_integer("seed", 0, "noise seed of the text task's samples")
_BACKEND = flags.DEFINE_string("backend", "native", "renderer for the judge views")
_STAGE_GUIDANCE = flags.DEFINE_multi_string(
    "stage_guidance",
    [],
    "STAGE=SCALE: sample that stage (1 or 2) with this guidance scale instead of its model's",
)
_RESCALE = flags.DEFINE_float(
    "guidance_rescale", None, "guidance rescale of both stages (ga_jax/flow/guidance.py)"
)
_EDIT_STRENGTH = flags.DEFINE_float(
    "edit_strength",
    None,
    "Pipeline.edit's strength in (0, 1] (default: the models' recorded value, else 1); with "
    "--record it becomes the models directory's default for its stage 2",
)
_OUT = flags.DEFINE_string("out", None, "output directory")
flags.mark_flags_as_required(["task", "heldout", "train_fps_root", "out"])


def load_pipeline() -> Pipeline:
    runs = (_VAE.value, _STAGE1.value, _STAGE2.value)
    if _MODELS.value is not None:
        if any(runs):
            raise app.UsageError("give either --models or --vae/--stage1/--stage2, not both")
        condition = "image" if _TASK.value == "image" else "text"
        return Pipeline.from_pretrained(_MODELS.value, condition)
    if not all(runs):
        raise app.UsageError("give --models, or all of --vae, --stage1 and --stage2")
    if _RECORD.value:
        raise app.UsageError("--record needs --models (the directory whose manifest it writes)")
    return Pipeline.from_runs(*runs)


def override_guidance(pipeline: Pipeline, settings: list[str]) -> None:
    for setting in settings:
        stage, _, scale = setting.partition("=")
        if stage not in ("1", "2") or not scale:
            raise app.UsageError(f"--stage_guidance={setting!r}: expected 1=SCALE or 2=SCALE")
        try:
            value = float(scale)
        except ValueError:
            raise app.UsageError(
                f"--stage_guidance={setting!r}: {scale!r} is not a number"
            ) from None
        stages = pipeline.stages
        stages[int(stage)] = dataclasses.replace(stages[int(stage)], guidance_scale=value)


def record(summary: dict, judges_file: str) -> None:
    directory = Path(_MODELS.value)
    shutil.copyfile(judges_file, directory / "judges.npz")
    add_to_models_directory(
        directory,
        "judges",
        directory / "judges.npz",
        {
            "what": "the shape and colour judges of ga_jax/evaluation/generation.py "
            "(Judges.load) the measurements used",
            "built_from": f"synthetic seed {_TRAIN_SEED.value} objects 0-"
            f"{_TRAIN_OBJECTS.value - 1}",
        },
        section="files",
    )
    command = " ".join(["python -m launch.eval_generation", *sys.argv[1:]])
    root = os.environ.get("GA_JAX_DATA_ROOT")
    if root:  # the data paths as a user of the directory would write them
        command = command.replace(root.rstrip("/"), "$GA_JAX_DATA_ROOT")
    record_measurement(directory, _TASK.value, {"summary": summary, "command": command})
    if _EDIT_STRENGTH.value is not None:
        stage2 = "stage2_image" if _TASK.value == "image" else "stage2_text"
        set_sampling_default(directory, stage2, "edit_strength", _EDIT_STRENGTH.value)


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize(multi_process=False)
    pipeline = load_pipeline()
    override_guidance(pipeline, _STAGE_GUIDANCE.value)
    if _RESCALE.value is not None:
        pipeline.guidance_rescale = _RESCALE.value
    if _EDIT_STRENGTH.value is not None:
        pipeline.edit_strength = _EDIT_STRENGTH.value
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
        seed=_SEED.value,
    )
    if _RECORD.value:
        record(summary, f"{_OUT.value}/judges.npz")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    app.run(main)
