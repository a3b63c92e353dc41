"""Flow-stage train-step benchmark: step time, samples/s, FLOPs and MFU per stage config.

    python -m benchmarks.flow_step                      # the four synthetic-set stages (CPU)
    python -m benchmarks.flow_step --configs=configs/flow/base.py ...   # any flow configs
    python -m benchmarks.flow_step --paper --batch=32   # paper-size stage 1 (a GPU)

A random batch of the step's input shapes (FlowTask.abstract_batch: xyz in the object box,
standard-normal h; a frozen encoder's features precomputed, as the training runs cache them,
at their real length, e.g. DINOv2's 1,369 patch tokens for the paper's stage 1; a trained
image encoder's views) through the jitted train step of the shared loop. The step is compiled
once, then the best and median of --steps timed steps.

Two FLOP counts per step, two MFUs over the same peak (as in benchmarks/vae_step.py):
- XLA: the compiled step's cost analysis (everything it executes, a trained image encoder
  included; a scanned layer stack's body is counted once, so scanned models read low);
- model: the DiT alone, counted analytically (ga_jax/models/flow/flops.py: 6 N per token
  on the tokens each parameter is applied to, plus attention).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.vae_step import GPU_PEAK_TFLOPS, matmul_tflops, time_train_step
from configs.loading import load_config
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import create_train_state
from ga_jax.train.tasks.flow import FlowTask

SYNTHETIC = tuple(f"configs/flow/stage{s}_{c}.py" for c in ("text", "image") for s in (1, 2))


def random_batch(task: FlowTask, num_points: int) -> dict:
    """The device batch of task.abstract_batch filled at random."""
    rng = np.random.default_rng(0)

    def fill(path, x):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if name == "xyz":
            return rng.uniform(-0.4, 0.4, x.shape).astype(x.dtype)
        if name.endswith("images"):
            return rng.uniform(0, 1, x.shape).astype(x.dtype)
        return rng.normal(size=x.shape).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(fill, task.abstract_batch(num_points))


def time_config(name: str, config, batch: int, num_points: int, steps: int):
    with config.unlocked():
        config.flow.standardise_features = False  # no latent dataset needed
        config.data.batch_size = batch
        config.train.eval_every_steps = 0
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, num_devices=1)
    task, optimizer = FlowTask(config), make_optimizer(config.optimizer)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        data = jax.device_put(random_batch(task, num_points))
        frozen = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), task.abstract_frozen())
        params = sum(x.size for x in jax.tree.leaves(state.params["dit"]))
        timed = time_train_step(task, optimizer, state, data, frozen, steps)
    flops = task.model_flops(num_points)
    return dict(name=name, batch=batch, params=params, model_flops=flops, **timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(SYNTHETIC))
    parser.add_argument("--paper", action="store_true", help="paper-size stage 1 (image) only")
    parser.add_argument("--batch", type=int, default=None, help="default: config.data.batch_size")
    parser.add_argument("--points", type=int, default=256, help="latent points (paper: 768)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak_tflops", type=float, default=None)
    args = parser.parse_args()
    if args.paper:  # DINOv2's features precomputed (it is frozen: it runs once per image)
        specs = [
            ("paper stage 1 image (DINOv2 features precomputed)", "configs/flow/paper.py:1,image")
        ]
    else:
        specs = [(c, c) for c in args.configs]
    rows = []
    for name, spec in specs:
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
        "| config | DiT params | batch | compile s | step ms (best) | step ms (median) | "
        "samples/s | XLA TFLOP/step | model TFLOP/step | MFU (XLA) | MFU (model) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mfu = lambda flops, best=r["best"]: f"{100 * flops / best / 1e12 / peak:.1f}%"
        print(
            f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['batch']} | {r['compile_s']:.0f} | "
            f"{r['best'] * 1e3:.1f} | {r['median'] * 1e3:.1f} | {r['batch'] / r['best']:.1f} | "
            f"{r['flops'] / 1e12:.4f} | {r['model_flops'] / 1e12:.4f} | {mfu(r['flops'])} | "
            f"{mfu(r['model_flops'])} |"
        )


if __name__ == "__main__":
    main()
