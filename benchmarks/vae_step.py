"""VAE train-step benchmark: step time, samples/s, FLOPs and MFU for a config (random batch).

    python -m benchmarks.vae_step --config=configs/vae/small.py             # CPU
    python -m benchmarks.vae_step --config=configs/vae/paper.py --batch=2   # one GPU
    python -m benchmarks.vae_step --config=configs/vae/small.py --profile   # + where it goes

Measures the jitted train step alone (the input pipeline has its own benchmark,
benchmarks/data_pipeline.py): a random batch of the config's shapes with cameras orbiting
the origin, the step compiled once, then the best and median of --steps timed steps. FLOPs
per step are XLA's cost analysis of the compiled step; MFU = FLOPs / step time / peak, with
peak = --peak_tflops when given, else the f32 matmul rate measured in the same run (CPU), or
the card's dense bf16 peak for a known GPU (H100 SXM 989, H200 989 TFLOP/s).

--profile traces two more steps (jax.profiler, Perfetto JSON) and prints the time of the
compiled step's operations summed per model component (the HLO metadata's op_name: forward
= jvp, backward = transpose). Operations that run side by side on several threads are
summed, so the total exceeds the step time: read the shares, not the sum.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from configs.loading import load_config
from ga_jax.data.transforms import VaeBatch
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.rendering.cameras import orbit_cameras
from ga_jax.train.loop import make_train_step
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import create_train_state
from ga_jax.train.tasks.vae import VaeTask

GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def camera_rows(views: int) -> np.ndarray:
    """c.npy rows [V, 25] of cameras orbiting the origin (normalised intrinsics)."""
    cams = orbit_cameras(views, 1, 1)
    k = np.asarray(cams.intrinsics)  # built at 1 x 1 px = normalised
    return np.concatenate(
        [np.asarray(cams.cam2world).reshape(views, 16), k.reshape(views, 9)], axis=1
    ).astype(np.float32)


def random_batch(config, batch: int) -> VaeBatch:
    d = config.data
    rng = np.random.default_rng(0)
    sup = 2 * d.num_supervise_per_half
    rows = camera_rows(sup)
    s, r = d.encoder_size, d.render_size
    points = rng.normal(size=(batch, d.fps_points, 3))
    points = 0.3 * points / np.linalg.norm(points, axis=-1, keepdims=True)
    return VaeBatch(
        encoder_input=rng.normal(size=(batch, d.views_per_half, s, s, 15)).astype(np.float32),
        fps_xyz=points.astype(np.float32),
        target_rgb=rng.uniform(size=(batch, sup, r, r, 3)).astype(np.float32),
        target_alpha=rng.uniform(size=(batch, sup, r, r)).astype(np.float32),
        target_normal=rng.normal(size=(batch, sup, r, r, 3)).astype(np.float32),
        target_cameras=np.broadcast_to(rows, (batch, sup, 25)).copy(),
        background=np.ones((batch, 3), np.float32),
    )


def matmul_tflops(size: int = 2048) -> float:
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(5):
        f(a).block_until_ready()
    return 2 * size**3 * 5 / (time.perf_counter() - start) / 1e12


def _op_names(hlo_text: str) -> dict[str, str]:
    """Instruction name -> its op_name metadata, or for a fusion/call without one that of the
    computation it calls ("" when neither has any)."""
    own, calls, by_computation, computation = {}, {}, {}, None
    for line in hlo_text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            computation = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            continue
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        if not match:
            continue
        found = re.search(r'op_name="([^"]+)"', line)
        own.setdefault(match.group(1), found.group(1) if found else "")
        if found and computation is not None:
            by_computation.setdefault(computation, found.group(1))
        called = re.search(r"calls=%?([\w.\-]+)", line)
        if called:
            calls[match.group(1)] = called.group(1)
    return {name: op or by_computation.get(calls.get(name, ""), "") for name, op in own.items()}


def _component(op_name: str) -> tuple[str, str]:
    """('forward' | 'backward' | 'other', model component) of an HLO op_name: the module path
    under VAE.encode / VAE.decode, two levels deep (the last path segment is the primitive)."""
    direction = (
        "backward" if "transpose(jvp" in op_name else ("forward" if "jvp(" in op_name else "other")
    )
    found = re.search(r"VAE\.(?:encode|decode)/(.*)", op_name)
    if found:
        modules = found.group(1).split("/")[:-1]
        return direction, "/".join(modules[:2]) or "VAE (top level)"
    if "ffi_call" in op_name or "pallas" in op_name:
        return direction, "rendering kernel (native / pallas call)"
    return direction, "rest: loss, rendering glue, optimiser"


def profile_step(compiled, state, batch, frozen, steps: int = 2):
    """Per component (forward ms, backward ms, other ms) per step, summed over threads."""
    names = _op_names(compiled.as_text())
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(steps):
            state, metrics = compiled(state, batch, jax.random.key(1), frozen)
            jax.block_until_ready(metrics["total"])
        jax.profiler.stop_trace()
        trace_file = max(Path(trace_dir).rglob("*.trace.json.gz"), key=os.path.getmtime)
        with gzip.open(trace_file) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    table = collections.defaultdict(collections.Counter)
    for event in events:
        if event.get("ph") == "X" and event["name"] in names:
            direction, part = _component(names[event["name"]])
            table[part][direction] += event.get("dur", 0) / 1e3 / steps
    return state, table


def time_train_step(task, optimizer, state, batch, frozen, steps: int) -> dict:
    """Compile the task's train step once and time `steps` runs after a warm-up run:
    {compiled, state (after the runs), compile_s, flops (XLA cost analysis), memory, best,
    median}. Shared by the step benchmarks."""
    step = jax.jit(make_train_step(task, optimizer), donate_argnums=(0,))
    start = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(1), frozen).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, jax.random.key(1), frozen)
        jax.block_until_ready(metrics["total"])
        times.append(time.perf_counter() - start)
    times = times[1:]  # the first run also pays one-time allocation
    return dict(
        compiled=compiled,
        state=state,
        compile_s=compile_s,
        flops=flops,
        memory=compiled.memory_analysis(),
        best=min(times),
        median=float(np.median(times)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, default=None, help="default: config.data.batch_size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backend", default=None, help="render backend (default: config's)")
    parser.add_argument("--peak_tflops", type=float, default=None)
    parser.add_argument("--profile", action="store_true", help="print where the step's time goes")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.backend:
        config.train.render_backend = args.backend
    batch_size = args.batch or config.data.batch_size
    device = jax.devices()[0]
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, num_devices=1)
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        batch = jax.device_put(random_batch(config, batch_size))
        frozen = jax.device_put(task.frozen())
        timed = time_train_step(task, optimizer, state, batch, frozen, args.steps)
        compiled, state = timed["compiled"], timed["state"]
        compile_s, flops, memory = timed["compile_s"], timed["flops"], timed["memory"]
        if args.profile:
            state, table = profile_step(compiled, state, batch, frozen)
    best, median = timed["best"], timed["median"]
    kind = device.device_kind
    peak = args.peak_tflops
    peak_from = "--peak_tflops"
    if peak is None:
        peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in kind), None)
        peak_from = f"{kind} dense bf16 peak"
    if peak is None:
        peak, peak_from = matmul_tflops(), "f32 matmul measured now"
    print(
        f"# device: {kind} ({jax.default_backend()}), {platform.machine()}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"# config: {args.config}, batch {batch_size}, render backend "
        f"{config.train.render_backend}, model dtype {config.model.dtype}, "
        f"compile {compile_s:.0f} s"
    )
    if memory is not None:
        total = memory.argument_size_in_bytes + memory.temp_size_in_bytes
        print(f"# compiled memory: arguments + temporaries {total / 2**30:.2f} GiB")
    print(
        "| config | batch | step ms (best) | step ms (median) | samples/s | TFLOP/step | "
        "TFLOP/s | MFU | peak used |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    achieved = flops / best / 1e12
    print(
        f"| {args.config} | {batch_size} | {best * 1e3:.1f} | {median * 1e3:.1f} | "
        f"{batch_size / best:.2f} | {flops / 1e12:.3f} | {achieved:.2f} | "
        f"{100 * achieved / peak:.1f}% | {peak:.1f} TFLOP/s ({peak_from}) |"
    )
    if args.profile:
        total = sum(sum(row.values()) for row in table.values())
        print(f"\n# where the step goes (op time summed over threads: {total:.0f} ms per step)")
        print("| component | forward ms | backward ms | other ms | share |")
        print("|---|---:|---:|---:|---:|")
        small = collections.Counter()
        for part, row in sorted(table.items(), key=lambda kv: -sum(kv[1].values())):
            if sum(row.values()) < 0.005 * total:
                small.update(row)
                continue
            print(
                f"| {part} | {row['forward']:.0f} | {row['backward']:.0f} | "
                f"{row['other']:.0f} | {100 * sum(row.values()) / total:.1f}% |"
            )
        print(
            f"| (parts under 0.5% each) | {small['forward']:.0f} | {small['backward']:.0f} | "
            f"{small['other']:.0f} | {100 * sum(small.values()) / total:.1f}% |"
        )


if __name__ == "__main__":
    main()
