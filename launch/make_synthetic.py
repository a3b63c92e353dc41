"""Write a synthetic G-buffer dataset of procedural primitives (ga_jax/data/synthetic/).

    python -m launch.make_synthetic --out=/tmp/synthetic --num_objects=1000 --resolution=128 \
        --seed=0 --workers=2

writes /tmp/synthetic/{dataset.json, <class>/<group>/<id>/<chunk>/...} and the FPS clouds in
/tmp/synthetic_fps/<class>/<group>/<id>/fps-4096.ply; check them with
`python -m launch.check_data --gbuffer_root=/tmp/synthetic --fps_root=/tmp/synthetic_fps`.
Progress lines go to stderr; the last stdout line is the throughput (measured rates:
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys

from ga_jax.data.synthetic import generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="G-buffer root to write (DIR)")
    parser.add_argument(
        "--fps_out", default=None, help="FPS cloud root (default: DIR_fps beside DIR)"
    )
    parser.add_argument("--num_objects", type=int, default=100)
    parser.add_argument("--start", type=int, default=0, help="index of the first object")
    parser.add_argument("--resolution", type=int, default=128, help="view size H = W (px)")
    parser.add_argument("--num_chunks", type=int, default=3, help="16-view chunks per object")
    parser.add_argument("--supersample", type=int, default=4, help="S: S x S rays per edge pixel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes (spawned)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    stats = generate_dataset(
        args.out,
        args.num_objects,
        seed=args.seed,
        start=args.start,
        resolution=args.resolution,
        num_chunks=args.num_chunks,
        supersample=args.supersample,
        workers=args.workers,
        fps_out=args.fps_out,
        progress=not args.quiet,
    )
    print(
        f"wrote {args.num_objects} objects x {args.num_chunks} chunks at {args.resolution} px "
        f"to {args.out} in {stats['seconds']:.1f} s ({stats['objects_per_minute']:.1f} "
        f"objects/min, {args.workers} worker(s))"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
