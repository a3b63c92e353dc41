"""Compile a model's train step for a mesh ahead of time, without running it, and print what
the compiled program needs per device: parameter + optimiser memory, temporaries, FLOPs and
the bytes of every collective per step (ga_jax/train/compile_report.py).

    python -m launch.compile_check --config=configs/vae/paper.py --mesh=fsdp=8
    python -m launch.compile_check --config=configs/flow/paper.py:1,image --mesh=fsdp=4,tensor=2
    python -m launch.compile_check --config=configs/flow/paper.py:1,image --mesh=fsdp_tensor

--devices=N simulates N CPU devices when the platform is the CPU (the default here: 8); on a
GPU or TPU host the real devices are used. Frozen encoders' features are precomputed inputs
(their weights are not needed); nothing is read from disk, nothing is allocated. --json=F
writes the report as JSON as well. Compiling the paper models takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from configs.common import MESH_PRESETS

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/<task>/*.py file")
_MESH = flags.DEFINE_string(
    "mesh",
    "data=-1",
    "a preset (data, fsdp, fsdp_tensor) or axis sizes, e.g. fsdp=8 or fsdp=4,tensor=2 (unnamed "
    "axes are 1; one may be -1)",
)
_DEVICES = flags.DEFINE_integer("devices", 8, "simulated CPU devices (CPU platform only)")
_POINTS = flags.DEFINE_integer("points", 768, "latent points per object (flow stages)")
_JSON = flags.DEFINE_string("json", None, "also write the report to this JSON file")
flags.mark_flags_as_required(["config"])


def parse_mesh(text: str) -> dict[str, int]:
    """'fsdp=4,tensor=2' -> {'data': 1, 'fsdp': 4, 'tensor': 2} (every axis the rules use), or a
    preset's name (configs/common.py MESH_PRESETS: data, fsdp, fsdp_tensor)."""
    if text in MESH_PRESETS:
        return dict(MESH_PRESETS[text])
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in sizes or not value.lstrip("-").isdigit():
            raise app.UsageError(
                f"--mesh: expected axis=size with axis in {tuple(sizes)}, got {part!r}"
            )
        sizes[name] = int(value)
    return sizes


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    # Before the CPU backend starts: the simulated device count.
    if os.environ.get("JAX_PLATFORMS", "cpu") in ("", "cpu"):
        flag = f"--xla_force_host_platform_device_count={_DEVICES.value}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    from ga_jax.parallel.mesh import make_mesh  # noqa: PLC0415
    from ga_jax.train.compile_report import compile_train_step  # noqa: PLC0415
    from ga_jax.train.tasks import make_task  # noqa: PLC0415

    config = _CONFIG.value
    shape = parse_mesh(_MESH.value)
    with config.unlocked():
        config.mesh.shape = shape
        config.mesh.num_devices = -1
        config.train.eval_every_steps = 0  # no evaluation data or VAE run is read
    task = make_task(config)
    mesh = make_mesh(shape)
    _, report = compile_train_step(task, config, mesh, num_points=_POINTS.value)
    print(report.table())
    if hasattr(task, "model_flops"):  # scanned layers: XLA counts the stack's body once
        report.model_flops = task.model_flops(_POINTS.value) / mesh.size
        print(f"model FLOPs per device per step (analytic)  {report.model_flops:.4g}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(dataclasses.asdict(report), f, indent=1)


if __name__ == "__main__":
    app.run(main)
