"""Shape-judge benchmark: seconds per judged cloud, the exact and the expanded Chamfer forms.

    python -m benchmarks.judges                    # the judge's size: 6 x 50 bank, 768 points
    python -m benchmarks.judges --per_class=10 --queries=2

The bank and queries are random clouds of the judge's shapes (ga_jax/metrics/judges.py: each
query rotated 24 times about z against every bank cloud). Prints one row per form and
pair_batch, with the largest difference from the exact form's distances.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from ga_jax.metrics.judges import ShapeJudge


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per_class", type=int, default=50)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--points", type=int, default=768)
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--pair_batches", default="16,64")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    bank = (0.3 * rng.normal(size=(args.classes * args.per_class, args.points, 3))).astype(
        np.float32
    )
    labels = np.repeat(np.arange(args.classes), args.per_class).astype(np.int32)
    names = tuple(f"class{k}" for k in range(args.classes))
    queries = (0.3 * rng.normal(size=(args.queries, args.points, 3))).astype(np.float32)
    print(
        f"# {platform.node()} {os.cpu_count()} CPUs, jax {jax.__version__} "
        f"{jax.devices()[0].device_kind}; bank {bank.shape[0]} x {args.points} points, "
        f"{args.queries} queries x 24 rotations"
    )
    print(f"{'form':<10} {'pair_batch':>10} {'s / query':>10} {'max |diff|':>11}")
    exact = None
    for expanded in (False, True):
        for pair_batch in (int(b) for b in args.pair_batches.split(",")):
            judge = ShapeJudge(names, bank, labels, expanded=expanded, pair_batch=pair_batch)
            judge.distances(queries[:1])  # compile
            start = time.perf_counter()
            d = judge.distances(queries)
            seconds = (time.perf_counter() - start) / args.queries
            if exact is None:
                exact = d
            form = "expanded" if expanded else "exact"
            diff = float(np.abs(d - exact).max())
            print(f"{form:<10} {pair_batch:>10} {seconds:>10.3f} {diff:>11.2e}")


if __name__ == "__main__":
    main()
