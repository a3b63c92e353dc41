"""VAE input pipeline benchmark: prints a markdown table of samples/s (ga_jax.data.loader).

    python -m benchmarks.data_pipeline          # 128/256/512 px, 0 and 2 workers
    python -m benchmarks.data_pipeline --sizes=128 --workers=0 --samples=8
    python -m benchmarks.data_pipeline --gbuffer_root=/data/gbuffer --fps_root=/data/fps

Each row builds a loader (configs/common.py data_config() defaults: 8 encoded + 8 supervised
views from 512 px chunks, 768 FPS points, jitter on, read_threads 2) with encoder_size =
render_size = the size, pulls `--warmup` samples (worker start-up, first reads), then times
`--samples` more. Samples/s is per process and counts whole samples (all views, FPS, resizes);
MB/sample is the numpy bytes of one sample. Other processes on the machine share its cores,
so compare rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from configs.common import data_config
from ga_jax.data.loader import make_vae_loader

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bench_one(args: argparse.Namespace, size: int, workers: int) -> dict:
    config = data_config()
    config.gbuffer_root = args.gbuffer_root
    config.fps_root = args.fps_root
    config.encoder_size = size
    config.render_size = size
    config.worker_count = workers
    config.batch_size = args.batch_size
    config.read_threads = args.read_threads
    config.seed = 0
    it = make_vae_loader(config, shard_index=0, shard_count=1)
    try:
        start = time.perf_counter()
        batch = None
        for _ in range(-(-args.warmup // args.batch_size)):
            batch = next(it)
        warmup_s = time.perf_counter() - start
        batches = -(-args.samples // args.batch_size)
        start = time.perf_counter()
        for _ in range(batches):
            batch = next(it)
        elapsed = time.perf_counter() - start
    finally:
        it.close()
    sample_bytes = sum(v.nbytes for v in batch.values()) / args.batch_size
    return {
        "size": size,
        "workers": workers,
        "samples_per_s": batches * args.batch_size / elapsed,
        "ms_per_sample": 1e3 * elapsed / (batches * args.batch_size),
        "warmup_s": warmup_s,
        "mb_per_sample": sample_bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gbuffer_root", default=str((DATA / "objaverse_gbuffer").resolve()))
    parser.add_argument("--fps_root", default=str((DATA / "objaverse_fps").resolve()))
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--samples", type=int, default=24, help="timed samples per row")
    parser.add_argument("--warmup", type=int, default=4, help="untimed samples first")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--read_threads", type=int, default=data_config().read_threads,
                        help="reading threads per process (main, or each worker)")
    args = parser.parse_args()

    rows = [
        bench_one(args, int(size), int(workers))
        for size in args.sizes.split(",")
        for workers in args.workers.split(",")
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nVAE data pipeline on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load:.2f} at the end; data {args.gbuffer_root}")
    print(f"batch {args.batch_size}, read_threads {args.read_threads}, {args.samples} timed "
          f"samples per row after {args.warmup} warm-up samples; encoder_size = render_size\n")
    print("| size | workers | samples/s | ms/sample | warm-up s | MB/sample |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['workers']} | {r['samples_per_s']:.2f} | "
              f"{r['ms_per_sample']:.0f} | {r['warmup_s']:.1f} | {r['mb_per_sample']:.1f} |")


if __name__ == "__main__":
    main()
