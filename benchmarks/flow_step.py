"""Flow-stage train-step benchmark: step time, samples/s, FLOPs and MFU per stage config.

    python -m benchmarks.flow_step                      # the four synthetic-set stages (CPU)
    python -m benchmarks.flow_step --configs=configs/flow/base.py ...   # any flow configs
    python -m benchmarks.flow_step --paper --batch=32   # paper-size stage 1 (a GPU)

A random batch of the config's shapes (xyz in the object box, standard-normal h, captions of
the synthetic vocabulary, random conditioning views) through the jitted train step of the
shared loop (the conditioner's forward included: frozen MiniLM, or the small image encoder
trained with the DiT). The step is compiled once, then the best and median of --steps timed
steps. FLOPs are XLA's cost analysis of the compiled step; MFU as in benchmarks/vae_step.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from benchmarks.vae_step import GPU_PEAK_TFLOPS, matmul_tflops, time_train_step
from configs.flow.base import base_config
from configs.loading import load_config
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import create_train_state
from ga_jax.train.tasks.flow import FlowTask

SYNTHETIC = tuple(f"configs/flow/stage{s}_{c}.py" for c in ("text", "image") for s in (1, 2))


def host_batch(config, batch: int, num_points: int) -> dict:
    rng = np.random.default_rng(0)
    out = {
        "xyz": rng.uniform(-0.4, 0.4, (batch, num_points, 3)).astype(np.float32),
        "h": rng.normal(size=(batch, num_points, config.model.in_dim)).astype(np.float32),
        "caption": np.asarray(["a medium red cube"] * batch),
    }
    if config.data.use_images:
        size = int(config.condition.get("image_size", 64))
        out["image"] = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    return out


def time_config(name: str, config, batch: int, num_points: int, steps: int):
    with config.unlocked():
        config.flow.standardise_features = False  # no latent dataset needed
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, num_devices=1)
    task, optimizer = FlowTask(config), make_optimizer(config.optimizer)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        data = jax.device_put(task.device_batch(host_batch(config, batch, num_points)))
        frozen = jax.device_put(task.frozen())
        params = sum(x.size for x in jax.tree.leaves(state.params))
        timed = time_train_step(task, optimizer, state, data, frozen, steps)
    return dict(name=name, batch=batch, params=params, **timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(SYNTHETIC))
    parser.add_argument("--paper", action="store_true", help="paper-size stage 1 (image) only")
    parser.add_argument("--batch", type=int, default=None, help="default: config.data.batch_size")
    parser.add_argument("--points", type=int, default=256, help="latent points (paper: 768)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak_tflops", type=float, default=None)
    args = parser.parse_args()
    if args.paper:
        specs = [("paper stage 1 image (DINOv2 frozen, not counted)", None)]
    else:
        specs = [(c, c) for c in args.configs]
    rows = []
    for name, spec in specs:
        if spec is None:
            config = base_config(1, "image", "paper")
            config.condition.name = "none"  # the frozen DINOv2 runs once per image, offline
            config.data.use_images = False
        else:
            config = load_config(spec)
        batch = args.batch or config.data.batch_size
        rows.append(time_config(name, config, batch, args.points, args.steps))
    device = jax.devices()[0]
    kind = device.device_kind
    peak = args.peak_tflops or next((v for k, v in GPU_PEAK_TFLOPS.items() if k in kind), None)
    peak_from = "--peak_tflops" if args.peak_tflops else f"{kind} dense bf16 peak"
    if peak is None:
        peak, peak_from = matmul_tflops(), "f32 matmul measured now"
    print(
        f"# device: {kind} ({jax.default_backend()}), {platform.machine()}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}; "
        f"{args.points} points; peak {peak:.1f} TFLOP/s ({peak_from})"
    )
    print(
        "| config | params | batch | compile s | step ms (best) | step ms (median) | "
        "samples/s | TFLOP/step | MFU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        achieved = r["flops"] / r["best"] / 1e12
        print(
            f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['batch']} | {r['compile_s']:.0f} | "
            f"{r['best'] * 1e3:.1f} | {r['median'] * 1e3:.1f} | {r['batch'] / r['best']:.1f} | "
            f"{r['flops'] / 1e12:.4f} | {100 * achieved / peak:.1f}% |"
        )


if __name__ == "__main__":
    main()
