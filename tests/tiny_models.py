"""A models directory of tiny random models (Pipeline.from_pretrained's layout), for tests of
what reads one: the sampling job, the demo, the web app."""

from __future__ import annotations

from pathlib import Path

from configs.loading import load_config
from ga_jax.flow.samplers import SamplerSettings
from ga_jax.pipeline.generate import Pipeline

SPECS = {
    "vae": "configs/vae/tiny.py",
    "stage1_text": "configs/flow/tiny.py:1",
    "stage2_text": "configs/flow/tiny.py:2",
}


def tiny_pipeline() -> Pipeline:
    return Pipeline.from_configs(
        *(load_config(s) for s in SPECS.values()), sampler=SamplerSettings("euler", steps=4)
    )


def write_tiny_models(directory: Path, pipe: Pipeline | None = None) -> Path:
    """Write `pipe`'s (default: tiny_pipeline() with visible surfels) parameters as float32
    model files into directory, each saved first as a training run's checkpoint and exported
    from it, as launch.export_model --models_dir does. The tiny stages are image-conditioned
    (zeros): they serve as the 'text' stages here."""
    from ga_jax.train.checkpoint import Checkpointer  # noqa: PLC0415
    from ga_jax.train.runs import export_run  # noqa: PLC0415
    from ga_jax.weights.model_files import add_to_models_directory  # noqa: PLC0415

    if pipe is None:
        pipe = tiny_pipeline()
        # At initialisation every surfel is a 1 mm grey speck (scale bias -2.5), which the
        # exports' views barely show; a scale bias of 6 (surfels about 4 cm across) and an
        # opacity bias of 3 (0.95) on the base surfel head make a visible surface. Stage 1
        # and 2 (the points and features) are tiny_pipeline()'s.
        head = pipe.vae_params["surfel_head"]["base"]
        head["bias"] = head["bias"].at[4:6].set(6.0).at[3].set(3.0)
    params = {"vae": pipe.vae_params, "stage1_text": pipe.stages[1].params}
    params["stage2_text"] = pipe.stages[2].params
    runs = directory.parent / f"{directory.name}_runs"
    for name, spec in SPECS.items():
        ckpt = Checkpointer(runs / name / "checkpoints")
        ckpt.save(5, {"step": 5, "params": params[name]}, config=load_config(spec))
        ckpt.close()
        out = directory / f"{name}.safetensors"
        manifest = export_run(runs / name, out, dtype="float32")
        add_to_models_directory(directory, name, out, {**manifest, "config": spec})
    return directory
