"""Steps/s of the whole training loop (data, step, logging, checkpoints) on the tiny VAE.

    python -m benchmarks.train_loop                    # 200 steps, batch 8, logging every 10
    python -m benchmarks.train_loop --steps=400 --log_every=50

A small synthetic dataset (4 objects, 32 px) is generated into a temporary directory and
kept decoded in memory by the pipeline (data.cache_chunks), so the loop, not the disk, is
measured: the step rate is taken from metrics.jsonl between the first log line and the last
(compilation excluded), on one device, with evaluation off and one checkpoint at the end.
Runs on the code of the checkout it is started from, so two checkouts can be compared back
to back.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import jax

from configs.vae import tiny
from ga_jax.data.synthetic import generate_dataset


def run_loop(config, workdir: Path) -> None:
    try:  # the shared loop (issue 15)
        from ga_jax.train.loop import train_and_evaluate
        from ga_jax.train.tasks.vae import VaeTask

        train_and_evaluate(VaeTask(config), config, workdir)
    except ImportError:  # the VAE trainer before it
        from ga_jax.train.vae_trainer import train_and_evaluate

        train_and_evaluate(config, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--log_every", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        generate_dataset(root, 4, resolution=32, num_chunks=1, progress=False)
        config = tiny.get_config().unlock()
        for data in (config.data, config.eval_data):
            data.gbuffer_root, data.fps_root = str(root), str(Path(tmp) / "synthetic_fps")
            data.cache_chunks = 8
        config.mesh.num_devices = 1
        t = config.train
        t.total_steps = args.steps
        t.log_every_steps = args.log_every
        t.eval_every_steps = 0
        t.checkpoint_every_steps = args.steps
        workdir = Path(tmp) / "run"
        start = time.perf_counter()
        run_loop(config.lock(), workdir)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    first, last = records[0], records[-1]
    rate = (last["step"] - first["step"]) / (last["time"] - first["time"])
    print(f"# device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| steps | log every | steps/s (after the first log) | wall s (with compile) |")
    print("|---|---|---|---|")
    print(f"| {args.steps} | {args.log_every} | {rate:.2f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
