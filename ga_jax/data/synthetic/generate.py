"""Writing a synthetic dataset: every object's chunks and FPS cloud, in worker processes.

Layout (for `generate_dataset(out=DIR, ...)`, CLI `python -m launch.make_synthetic`):

    DIR/dataset.json                      {class: [chunk paths relative to DIR]}, like the data
    DIR/synthetic.json                    the generator's arguments (provenance only)
    DIR/<class>/<group>/<id>/<chunk>/     one chunk: raw_img.jpg alpha.jpg normal.png
                                          depth.npz c.npy caption.txt ins.txt
    DIR_fps/<class>/<group>/<id>/fps-4096.ply
                                          the FPS cloud; a separate root beside DIR (as
                                          objaverse_fps beside objaverse_gbuffer), so
                                          `python -m launch.check_data --gbuffer_root=DIR
                                          --fps_root=DIR_fps` checks a synthetic set

`<class>` is the shape (sphere, cube, box, cylinder, cone, torus) or `composition` (two parts),
`<group>` is `index // 1000`, `<id>` the object index, `<chunk>` runs 1..num_chunks, and the
instance id in ins.txt is `<class>/<group>/<id>` (like `Animals/0/10017`).

A chunk holds NUM_VIEWS = 16 views of H x H pixels (render.py, cameras.py), written by
ga_jax.data.gbuffer.write_chunk in exactly the format that read_chunk reads for the real data.
The FPS cloud: FPS_POINTS = 4096 points chosen by farthest point sampling (ga_jax.data.fps)
from 3 x 4096 points on the outer surface (surface.py), drawn from the stream
SeedSequence([seed, i, 2]) of object i.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.gbuffer import write_chunk
from ga_jax.data.ply import write_ply_points
from ga_jax.data.synthetic.cameras import chunk_cameras
from ga_jax.data.synthetic.objects import make_object
from ga_jax.data.synthetic.render import render_views
from ga_jax.data.synthetic.surface import sample_surface

__all__ = ["FPS_POINTS", "fps_root_for", "generate_dataset", "write_object"]

FPS_POINTS = 4096


def fps_root_for(out: str | os.PathLike) -> Path:
    """The FPS root beside a G-buffer root: DIR -> DIR_fps."""
    out = Path(out)
    return out.with_name(out.name + "_fps")


def write_object(
    seed: int,
    index: int,
    out: str | os.PathLike,
    fps_out: str | os.PathLike,
    *,
    resolution: int = 128,
    num_chunks: int = 3,
    supersample: int = 4,
    fps_candidates: int = 3 * FPS_POINTS,
) -> tuple[str, list[str]]:
    """Render and write object `index` of dataset `seed`; returns (class, chunk paths
    relative to `out`). The FPS cloud goes to `fps_out/<ins>/fps-4096.ply`."""
    obj = make_object(seed, index)
    cams = chunk_cameras(seed, index, num_chunks, resolution)
    rel = []
    for c, cameras in enumerate(cams, start=1):
        views = render_views(obj, cameras, resolution, supersample)
        chunk = f"{obj.instance_id}/{c}"
        write_chunk(
            Path(out) / chunk,
            **views,
            cameras=cameras,
            caption=obj.caption,
            instance_id=obj.instance_id,
        )
        rel.append(chunk)
    points = sample_surface(obj, fps_candidates, np.random.default_rng([seed, index, 2]))
    chosen = farthest_point_sample(points, FPS_POINTS)
    ply = Path(fps_out) / obj.instance_id / "fps-4096.ply"
    ply.parent.mkdir(parents=True, exist_ok=True)
    write_ply_points(ply, points[chosen].astype(np.float32))
    return obj.class_name, rel


def _worker_init() -> None:
    # One XLA thread per worker: the pool already uses every core.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def _write_one(job: tuple) -> tuple[int, str, list[str]]:
    seed, index, out, fps_out, kwargs = job
    class_name, rel = write_object(seed, index, out, fps_out, **kwargs)
    return index, class_name, rel


def generate_dataset(
    out: str | os.PathLike,
    num_objects: int,
    *,
    seed: int = 0,
    resolution: int = 128,
    num_chunks: int = 3,
    supersample: int = 4,
    workers: int = 1,
    fps_out: str | os.PathLike | None = None,
    progress: bool = True,
    start: int = 0,
) -> dict[str, float]:
    """Write objects start .. start + num_objects - 1 of dataset `seed` (module docstring).

    `workers` > 1 renders objects in that many spawned processes (each compiles the caster
    once). Progress lines (objects done, objects/min, ETA) go to stderr. Returns timing
    stats: seconds, objects_per_minute.
    """
    if num_objects < 1 or resolution < 4 or num_chunks < 1 or supersample < 1 or workers < 1:
        raise ValueError(
            "expected num_objects >= 1, resolution >= 4, num_chunks >= 1, supersample >= 1, "
            f"workers >= 1; got {num_objects}, {resolution}, {num_chunks}, {supersample}, "
            f"{workers}"
        )
    out = Path(out)
    fps_out = Path(fps_out) if fps_out is not None else fps_root_for(out)
    out.mkdir(parents=True, exist_ok=True)
    fps_out.mkdir(parents=True, exist_ok=True)
    kwargs = {"resolution": resolution, "num_chunks": num_chunks, "supersample": supersample}
    jobs = [(seed, i, str(out), str(fps_out), kwargs) for i in range(start, start + num_objects)]
    results: dict[int, tuple[str, list[str]]] = {}
    t0 = last = time.perf_counter()
    reported = 0

    def report(done: int, final: bool = False) -> None:
        nonlocal last, reported
        now = time.perf_counter()
        if not progress or (not final and now - last < 2.0) or done == reported:
            return
        last, reported = now, done
        rate = done / max(now - t0, 1e-9) * 60
        eta = (num_objects - done) / max(rate, 1e-9) * 60
        print(
            f"[make_synthetic] {done}/{num_objects} objects, {rate:.1f} objects/min, "
            f"elapsed {now - t0:.0f} s, ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    if workers == 1:
        for job in jobs:
            index, class_name, rel = _write_one(job)
            results[index] = (class_name, rel)
            report(len(results))
    else:
        ctx = multiprocessing.get_context("spawn")  # fork after jax import is unsafe
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for index, class_name, rel in pool.imap_unordered(_write_one, jobs):
                results[index] = (class_name, rel)
                report(len(results))
    seconds = time.perf_counter() - t0
    report(len(results), final=True)

    index_file: dict[str, list[str]] = {}
    for i in sorted(results):
        class_name, rel = results[i]
        index_file.setdefault(class_name, []).extend(rel)
    (out / "dataset.json").write_text(json.dumps(dict(sorted(index_file.items())), indent=1))
    meta = {
        "generator": "ga_jax.data.synthetic",
        "seed": seed,
        "start": start,
        "num_objects": num_objects,
        "resolution": resolution,
        "num_chunks": num_chunks,
        "supersample": supersample,
        "fps_root": os.path.relpath(fps_out, out),
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1))
    return {"seconds": seconds, "objects_per_minute": num_objects / seconds * 60}
