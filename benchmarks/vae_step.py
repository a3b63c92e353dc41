"""VAE train-step benchmark: step time, samples/s, FLOPs and MFU for a config (random batch).

    python -m benchmarks.vae_step --config=configs/vae/small.py             # CPU
    python -m benchmarks.vae_step --config=configs/vae/paper.py --batch=2   # one GPU

Measures the jitted train step alone (the input pipeline has its own benchmark,
benchmarks/data_pipeline.py): a random batch of the config's shapes with cameras orbiting
the origin, the step compiled once, then the best and median of --steps timed steps. FLOPs
per step are XLA's cost analysis of the compiled step; MFU = FLOPs / step time / peak, with
peak = --peak_tflops when given, else the f32 matmul rate measured in the same run (CPU), or
the card's dense bf16 peak for a known GPU (H100 SXM 989, H200 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.models.vae.vae import build_vae
from ga_jax.parallel.mesh import make_mesh
from ga_jax.rendering.cameras import orbit_cameras
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.vae_trainer import _rules_context, create_train_state, make_train_step

GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def load_config(path: str):
    name, _, variant = path.partition(":")
    spec = importlib.util.spec_from_file_location("bench_config", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant or None)


def camera_rows(views: int) -> np.ndarray:
    """c.npy rows [V, 25] of cameras orbiting the origin (normalised intrinsics)."""
    cams = orbit_cameras(views, 1, 1)
    k = np.asarray(cams.intrinsics)  # built at 1 x 1 px = normalised
    return np.concatenate(
        [np.asarray(cams.cam2world).reshape(views, 16), k.reshape(views, 9)], axis=1
    ).astype(np.float32)


def random_batch(config, batch: int) -> dict:
    d = config.data
    rng = np.random.default_rng(0)
    sup = 2 * d.num_supervise_per_half
    rows = camera_rows(sup)
    s, r = d.encoder_size, d.render_size
    points = rng.normal(size=(batch, d.fps_points, 3))
    points = 0.3 * points / np.linalg.norm(points, axis=-1, keepdims=True)
    return {
        "encoder_input": rng.normal(size=(batch, d.views_per_half, s, s, 15)).astype(np.float32),
        "fps_xyz": points.astype(np.float32),
        "target_rgb": rng.uniform(size=(batch, sup, r, r, 3)).astype(np.float32),
        "target_alpha": rng.uniform(size=(batch, sup, r, r)).astype(np.float32),
        "target_normal": rng.normal(size=(batch, sup, r, r, 3)).astype(np.float32),
        "target_cameras": np.broadcast_to(rows, (batch, sup, 25)).copy(),
        "background": np.ones((batch, 3), np.float32),
    }


def matmul_tflops(size: int = 2048) -> float:
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(5):
        f(a).block_until_ready()
    return 2 * size**3 * 5 / (time.perf_counter() - start) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=None, help="default: config.data.batch_size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backend", default=None, help="render backend (default: config's)")
    parser.add_argument("--peak_tflops", type=float, default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    if args.backend:
        config.train.render_backend = args.backend
    batch_size = args.batch or config.data.batch_size
    device = jax.devices()[0]
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, num_devices=1)
    model, optimizer = build_vae(config.model), make_optimizer(config.optimizer)
    with _rules_context(mesh, None):
        state, _ = create_train_state(model, optimizer, config, mesh, jax.random.key(0))
        batch = jax.device_put(random_batch(config, batch_size))
        step = jax.jit(make_train_step(model, optimizer, config), donate_argnums=(0,))
        start = time.perf_counter()
        compiled = step.lower(state, batch, jax.random.key(1)).compile()
        compile_s = time.perf_counter() - start
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
        memory = compiled.memory_analysis()
        times = []
        for _ in range(args.steps + 1):
            start = time.perf_counter()
            state, metrics = compiled(state, batch, jax.random.key(1))
            jax.block_until_ready(metrics["total"])
            times.append(time.perf_counter() - start)
    times = times[1:]  # the first run also pays one-time allocation
    best, median = min(times), float(np.median(times))
    kind = device.device_kind
    peak = args.peak_tflops
    peak_from = "--peak_tflops"
    if peak is None:
        peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in kind), None)
        peak_from = f"{kind} dense bf16 peak"
    if peak is None:
        peak, peak_from = matmul_tflops(), "f32 matmul measured now"
    print(f"# device: {kind} ({jax.default_backend()}), {platform.machine()}, "
          f"{os.cpu_count()} cores, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}")
    print(f"# config: {args.config}, batch {batch_size}, render backend "
          f"{config.train.render_backend}, model dtype {config.model.dtype}, "
          f"compile {compile_s:.0f} s")
    if memory is not None:
        total = memory.argument_size_in_bytes + memory.temp_size_in_bytes
        print(f"# compiled memory: arguments + temporaries {total / 2**30:.2f} GiB")
    print("| config | batch | step ms (best) | step ms (median) | samples/s | TFLOP/step | "
          "TFLOP/s | MFU | peak used |")
    print("|---|---|---|---|---|---|---|---|---|")
    achieved = flops / best / 1e12
    print(f"| {args.config} | {batch_size} | {best * 1e3:.1f} | {median * 1e3:.1f} | "
          f"{batch_size / best:.2f} | {flops / 1e12:.3f} | {achieved:.2f} | "
          f"{100 * achieved / peak:.1f}% | {peak:.1f} TFLOP/s ({peak_from}) |")


if __name__ == "__main__":
    main()
