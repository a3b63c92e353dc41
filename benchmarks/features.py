"""Feature-extraction throughput of the metric job (ga_jax/evaluation/evaluators.py), per
network, in objects per second, as the job runs them: fixed-size batches of objects split over
every device, random weights (the speed does not depend on their values).

    python -m benchmarks.features                          # the configs/eval default protocol
    python -m benchmarks.features --views=2 --resolution=32 --batch=2 --calls=1   # quick

Rows: rendering an object's protocol views (our renderer, each backend given), the object's
cloud (FPS of its surfel centres), and each network on a batch of `batch` objects (views
[batch, V, R, R, 3] or clouds [batch, points, 3]). 'compile s' is the first call, the rest the
mean of `calls` further calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
from jax.sharding import Mesh
from ml_collections import ConfigDict

from ga_jax.evaluation.evaluators import DATA_AXIS, build_network
from ga_jax.evaluation.object_sets import GeneratedObject, RenderProtocol
from ga_jax.rendering.surfels import Surfels


def random_object_surfels(rng, n: int) -> Surfels:
    """n surfels on a sphere of radius 0.3 (an object of the generated sets' size)."""
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return Surfels(
        means=(0.3 * normal).astype(np.float32),
        quaternions=rng.normal(size=(n, 4)).astype(np.float32),
        scales=np.full((n, 2), 0.02, np.float32),
        opacities=np.full(n, 0.9, np.float32),
        colors=rng.uniform(size=(n, 3)).astype(np.float32),
    )


def timed(fn, calls: int) -> tuple[float, float]:
    """(first call s, mean s of `calls` more)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return first, (time.perf_counter() - start) / calls


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--points", type=int, default=4096)
    p.add_argument("--surfels", type=int, default=12288)
    p.add_argument("--batch", type=int, default=8, help="objects per network call")
    p.add_argument("--calls", type=int, default=2)
    p.add_argument("--networks", default="inception,musiq,pointnet")
    p.add_argument("--backends", default="xla,native")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    mesh = Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
    device = jax.devices()[0]
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, {len(jax.devices())} x "
        f"{device.device_kind} ({device.platform}), jax {jax.__version__}; {args.views} views "
        f"at {args.resolution} px, clouds of {args.points} points, {args.surfels} surfels per "
        f"object, {args.batch} objects per network call"
    )
    print(f"{'step':<22} {'compile s':>10} {'s / call':>9} {'objects/s':>10}")
    surfels = random_object_surfels(rng, args.surfels)
    obj = GeneratedObject("bench", None, "")
    for backend in (b for b in args.backends.split(",") if b):
        protocol = RenderProtocol(
            views=args.views, resolution=args.resolution, points=args.points, backend=backend
        )
        first, mean = timed(lambda p=protocol: obj.views(p, surfels), args.calls)
        print(f"{'render ' + backend:<22} {first:>10.2f} {mean:>9.3f} {1 / mean:>10.2f}")
    protocol = RenderProtocol(points=args.points)
    first, mean = timed(lambda: obj.cloud(protocol, surfels), args.calls)
    print(f"{'cloud (FPS)':<22} {first:>10.2f} {mean:>9.3f} {1 / mean:>10.2f}")
    views = rng.uniform(size=(args.batch, args.views, args.resolution, args.resolution, 3))
    clouds = (0.3 * rng.normal(size=(args.batch, args.points, 3))).astype(np.float32)
    for kind in (k for k in args.networks.split(",") if k):
        network = build_network(kind, ConfigDict(dict(weights="", seed=0)), mesh)
        batch = views.astype(np.float32) if network.source == "views" else clouds
        first, mean = timed(lambda n=network, b=batch: n.apply(b), args.calls)
        print(f"{kind:<22} {first:>10.2f} {mean:>9.3f} {args.batch / mean:>10.2f}")


if __name__ == "__main__":
    main()
