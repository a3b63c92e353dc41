"""Surfel rasterizer benchmark: prints a markdown table (ms per view, pairs/s, memory).

    python -m benchmarks.rasterizer                 # full table (native, xla; dense at small sizes)
    python -m benchmarks.rasterizer --backends=xla,pallas --sizes=4096x128
    python -m benchmarks.rasterizer --backends=xla,pallas --sizes=73728x512 --views=8   # GPU target

Scenes: random_surfels (centres on a sphere of radius 0.35, sizes from the VAE's scale
activation, softplus(N(0, 0.5)) * 0.006492), one camera at radius 1.7 with the data's
intrinsics. "pairs/s" counts pixel-surfel pairs evaluated: intersections x tile pixels for the
tiled backends, H x W x N for the dense oracle (the native backend evaluates only the rows of
each surfel's box inside a tile, fewer than it is credited with here, but counting its pairs the
same way keeps the column comparable). Peak memory is XLA's compiled estimate
(arguments + outputs + temporaries). The intersection capacity is set to 1.1x the count.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import jax
import jax.numpy as jnp

from ga_jax.rendering import orbit_cameras, render_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels.config import TileConfig, default_config

SIZES = [(n, r) for n in (4096, 24576, 73728) for r in (128, 256, 512)]
DENSE_SIZES = {(4096, 128), (24576, 128)}


def timeit(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def peak_bytes(fn, *args) -> float:
    try:
        mem = fn.lower(*args).compile().memory_analysis()
        return float(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return float("nan")


def matmul_gflops(size: int = 2048) -> float:
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    ms = timeit(jax.jit(lambda x: x @ x), a, repeats=5)
    return 2 * size**3 / (ms * 1e-3) / 1e9


def bench_one(backend: str, num: int, res: int, config: TileConfig, repeats: int, views: int):
    surfels = random_surfels(jax.random.key(0), num)
    cams = orbit_cameras(views, res, res)
    probe = render_surfels(surfels, cams, config=config)
    count = int(jnp.sum(probe.num_intersections))
    capacity = max(int(jnp.max(probe.num_intersections) * 1.1), 1024)
    render = lambda s, c: render_surfels(s, c, backend=backend, config=config, capacity=capacity)
    fwd = jax.jit(lambda s, c: render(s, c).rgb)
    weights = jax.random.normal(jax.random.key(1), (views, res, res, 3))

    def loss(s, c):
        out = render(s, c)
        return jnp.sum(out.rgb * weights) + jnp.sum(out.alpha)

    fwd_bwd = jax.jit(jax.grad(loss))
    pairs = views * num * res * res if backend == "dense" else count * config.tile_size**2
    rows = []
    modes = [("forward", fwd), ("forward+backward", fwd_bwd)]
    if backend == "dense":
        modes = modes[:1]  # the oracle's autodiff keeps every scan step: ~12 GB at 4096x128
    for mode, fn in modes:
        ms = timeit(fn, surfels, cams, repeats=repeats)
        rows.append((mode, ms / views, pairs / (ms * 1e-3), peak_bytes(fn, surfels, cams)))
    return count, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="dense,native,xla")
    parser.add_argument("--sizes", default=None, help="comma list of NxRES, e.g. 4096x128")
    parser.add_argument("--tile", type=int, default=None, help="default: per backend")
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", type=int, default=1, help="cameras rendered per call")
    args = parser.parse_args()
    sizes = SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    def config_for(backend):
        cfg = default_config(backend)
        return dataclasses.replace(cfg, tile_size=args.tile or cfg.tile_size,
                                   chunk_size=args.chunk or cfg.chunk_size)

    print(f"# device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, {time.strftime('%Y-%m-%d')}")
    print(f"# f32 matmul 2048^3: {matmul_gflops():.0f} GFLOP/s")
    print(f"# {args.views} view(s) per call; ms/view = call time / views")
    print("| backend | surfels | res | pairs (isect) | mode | ms/view | Gpairs/s | peak MB "
          "| vs dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    dense_ms = {}
    for backend in args.backends.split(","):
        for num, res in sizes:
            if backend == "dense" and (num, res) not in DENSE_SIZES:
                continue
            if backend == "pallas" and jax.default_backend() == "cpu" and res > 128:
                continue  # interpret mode: ~0.3 ms per grid step, not a speed measurement
            config = config_for(backend)
            count, rows = bench_one(backend, num, res, config, args.repeats, args.views)
            for mode, ms, rate, peak in rows:
                if backend == "dense":
                    dense_ms[(num, res, mode)] = ms
                ref = dense_ms.get((num, res, mode))
                speedup = f"{ref / ms:.0f}x" if ref and backend != "dense" else ""
                print(f"| {backend} (tile {config.tile_size}) | {num} | {res} | {count} | {mode} "
                      f"| {ms:.1f} | {rate / 1e9:.2f} | {peak / 2**20:.0f} | {speedup} |",
                      flush=True)


if __name__ == "__main__":
    main()
