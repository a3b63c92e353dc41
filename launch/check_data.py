"""Check that depth, normals, cameras and FPS clouds of a G-buffer dataset agree.

    python -m launch.check_data                                   # the real objects
    python -m launch.check_data --gbuffer_root=D --fps_root=D_fps  # e.g. a synthetic set

Prints one markdown row per object (see ga_jax/data/checks.py for what each column means)
and exits with status 1 when an object fails a threshold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs.paths import data_root
from ga_jax.data.checks import THRESHOLDS, check_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(data_root())  # configs/paths.py
    parser.add_argument("--gbuffer_root", type=Path, default=shared / "objaverse_gbuffer")
    parser.add_argument("--fps_root", type=Path, default=shared / "objaverse_fps")
    parser.add_argument("--max_objects", type=int, default=None)
    args = parser.parse_args(argv)
    failures = check_dataset(args.gbuffer_root, args.fps_root, max_objects=args.max_objects)
    print(f"thresholds: {THRESHOLDS}")
    print(f"{failures} object(s) failed" if failures else "all objects pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
