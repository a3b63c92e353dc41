"""The sampling and editing jobs behind launch.sample and launch.edit (configs/sample/*.py):
build the Pipeline from config, run it, write sample directories, report progress."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from PIL import Image, UnidentifiedImageError

from ga_jax.data.ply import read_ply_points
from ga_jax.data.process_shards import process_range
from ga_jax.export import export
from ga_jax.flow.samplers import SamplerSettings
from ga_jax.pipeline import edit
from ga_jax.pipeline.generate import Pipeline
from ga_jax.pipeline.sample_files import FILES as SAMPLE_FILES
from ga_jax.pipeline.sample_files import read_sample, write_sample

log = logging.getLogger(__name__)

EDIT_OPS = ("translate", "scale", "rotate", "delete", "merge", "points", "regenerate")


def pipeline_from_config(config: Any, load_config=None, condition: str = "text") -> Pipeline:
    """Trained runs (the three workdirs), random weights of the named configs
    (config.random_init; load_config: configs.loading.load_config, passed by the launcher),
    or else the `condition` stages of a models directory (config.models; '' = the shipped
    default)."""
    sampler = SamplerSettings.from_config(config.sampler)
    workdirs = (config.vae_workdir, config.stage1_workdir, config.stage2_workdir)
    if all(workdirs):
        return Pipeline.from_runs(*workdirs, sampler=sampler)
    if any(workdirs):
        raise ValueError(
            "vae_workdir, stage1_workdir, stage2_workdir: give all three (got "
            f"{[w or '<empty>' for w in workdirs]})"
        )
    if not config.random_init:
        return Pipeline.from_pretrained(config.models or None, condition, sampler=sampler)
    specs = config.random_init.split(";")
    if len(specs) != 3:
        raise ValueError(f"random_init: expected 'vae;stage1;stage2' config specs, got {specs}")
    log.warning("random weights (%s): the output shows the machinery, not a model", specs)
    return Pipeline.from_configs(*(load_config(s) for s in specs), sampler=sampler)


def read_image(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] of an image file (alpha composited over white)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, image).convert("RGB"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image: {path}: no such file") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image: {path}: not a readable image ({e})") from e


def _name(prompt: str | None, fallback: str) -> str:
    if not prompt:
        return fallback
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40] or fallback


def run_sampling(config: Any, load_config=None) -> list[Path]:
    """Generate config.num_samples objects and write their sample directories; returns all of
    them, in sample order.

    Under several processes (launch/cluster.py) each process generates a contiguous block of
    the samples (ga_jax/data/process_shards.process_range) into the shared outdir, and after
    all have finished process 0 checks that every sample directory is complete and writes the
    run's index, <outdir>/<name>_s<seed>.json (one process writes it too)."""
    if config.num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {config.num_samples}")
    index, count = jax.process_index(), jax.process_count()
    mine = process_range(config.num_samples, index, count)
    name = _name(config.prompt, "image" if config.image else "sample")
    directories = [
        Path(config.outdir) / f"{name}_s{config.seed}_{i}" for i in range(config.num_samples)
    ]
    if len(mine):
        _generate(config, load_config, mine, directories)
    else:
        log.warning("process %d of %d: no sample to generate (num_samples %d)",
                    index, count, config.num_samples)  # fmt: skip
    if count > 1:
        multihost_utils.sync_global_devices("ga_jax sampling: every block written")
    if index == 0:
        _write_index(config, name, directories, count)
    return directories


def _generate(config: Any, load_config, samples: range, directories: list[Path]) -> None:
    """Generate `samples` (indices of the seed) and write their directories."""
    start = time.perf_counter()
    condition = "image" if config.image and not config.prompt else "text"
    pipe = pipeline_from_config(config, load_config, condition)
    log.info("models ready in %.1f s", time.perf_counter() - start)
    image = read_image(config.image) if config.image else None
    points = read_ply_points(config.points) if config.points else None
    out = pipe.run(
        config.prompt,
        image,
        points,
        seed=config.seed,
        num_samples=len(samples),
        first_sample=samples.start,
        guidance=config.guidance,
    )
    for stage, info in out.info["stages"].items():
        status = "" if info["success"] else f" FAILED: {info['message']}"
        log.info("stage %s: %d network evaluations%s", stage, info["nfe"], status)
    log.info(
        "times (s, compile included on the first call): %s",
        {k: round(v, 2) for k, v in out.info["timings"].items()},
    )
    formats = [f.strip() for f in config.formats.split(",") if f.strip()]
    for i, s in enumerate(samples):
        directory = directories[s]
        sample = out.sample(i)
        write_sample(directory, sample, **config.render.to_dict())
        if formats:
            timings: dict[str, float] = {}
            export(
                sample.surfels,
                sample.cloud.xyz,
                directory,
                formats,
                size=config.render.size,
                backend=config.render.backend,
                timings=timings,
            )
            log.info("exports (s): %s", {k: round(v, 2) for k, v in timings.items()})
        log.info("wrote %s", directory)


def _write_index(config: Any, name: str, directories: list[Path], processes: int) -> Path:
    """The merge step: every sample directory must be complete (a sample lost by a process is
    an error, not a shorter list); <outdir>/<name>_s<seed>.json lists them in sample order."""
    incomplete = [f"{d}/{f}" for d in directories for f in SAMPLE_FILES if not (d / f).is_file()]
    if incomplete:
        raise RuntimeError(
            f"sampling: {len(incomplete)} expected file(s) missing after every process finished, "
            f"e.g. {incomplete[:3]}"
        )
    path = Path(config.outdir) / f"{name}_s{config.seed}.json"
    index = {
        "prompt": config.prompt,
        "image": config.image,
        "points": config.points,
        "seed": config.seed,
        "num_samples": config.num_samples,
        "processes": processes,
        "samples": [d.name for d in directories],
    }
    path.write_text(json.dumps(index, indent=1) + "\n")
    log.info("wrote %s (%d samples)", path, len(directories))
    return path


def parse_region(box: str, sphere: str) -> edit.Region | None:
    """ "cx,cy,cz;hx,hy,hz" -> Box, "cx,cy,cz;r" -> Sphere, both empty -> None."""
    if box and sphere:
        raise ValueError("box, sphere: give one region, not both")
    text, kind = (box, "box") if box else (sphere, "sphere")
    if not text:
        return None
    try:
        center, size = text.split(";")
        center = tuple(float(v) for v in center.split(","))
        size = tuple(float(v) for v in size.split(","))
    except ValueError as e:
        raise ValueError(f"{kind}: expected 'cx,cy,cz;...', got {text!r}") from e
    if len(center) != 3 or len(size) != (3 if kind == "box" else 1):
        what = "3 half sizes" if kind == "box" else "a radius"
        raise ValueError(f"{kind}: expected a centre of 3 and {what}, got {text!r}")
    return edit.Box(center, size) if kind == "box" else edit.Sphere(center, size[0])


def parse_vector(text: str) -> tuple[float, float, float]:
    """'x,y,z' -> 3 floats."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise ValueError(f"vector: expected 'x,y,z', got {text!r}") from e
    if len(values) != 3:
        raise ValueError(f"vector: expected 3 numbers, got {text!r}")
    return values


def run_edit(config: Any, load_config=None) -> Path:
    """Apply config.op to the sample directory config.sample, regenerate, write the result."""
    if config.op not in EDIT_OPS:
        raise ValueError(f"op: expected one of {EDIT_OPS}, got {config.op!r}")
    original = read_sample(config.sample)
    pipe = pipeline_from_config(config, load_config)
    region = parse_region(config.box, config.sphere)
    info = original.info
    rows = pipe.noise_rows(info["seed"], info["sample_index"])
    n, cloud = pipe.num_points, original.cloud
    op = config.op
    prompt = config.prompt
    if op == "regenerate":
        if region is None:
            raise ValueError("op regenerate: needs a region (box or sphere)")
        result = pipe.regenerate_region(original, region, prompt=prompt, guidance=config.guidance)
    else:
        if op == "translate":
            cloud = edit.translate(cloud, parse_vector(config.vector), region)
        elif op == "scale":
            cloud = edit.scale(cloud, config.factor, region)
        elif op == "rotate":
            cloud = edit.rotate(cloud, parse_vector(config.vector), config.degrees, region)
        elif op == "delete":
            if region is None:
                raise ValueError("op delete: needs a region (box or sphere)")
            cloud = edit.delete(cloud, region, n, rows)
        elif op == "merge":
            if not config.other:
                raise ValueError("op merge: needs `other`, a second sample directory")
            cloud = edit.merge(
                cloud, read_sample(config.other).cloud, n, rows, offset=parse_vector(config.vector)
            )
        elif op == "points":
            if not config.points:
                raise ValueError("op points: needs `points`, the edited PLY")
            cloud = edit.from_edited_points(cloud, read_ply_points(config.points), n, rows)
        result = pipe.edit(
            original, cloud, prompt=prompt, guidance=config.guidance, strength=config.strength
        )
    edits = list(info.get("edits", [])) + [
        {
            "op": op,
            "box": config.box,
            "sphere": config.sphere,
            "vector": config.vector,
            "factor": config.factor,
            "degrees": config.degrees,
            "other": config.other,
            "points": config.points,
            "strength": result.info["edit_strength"],
        }
    ]
    # Where it came from, for the edit-preservation measure (ga_jax/evaluation).
    origin = str(Path(config.sample).resolve())
    result = dataclasses.replace(
        result, info={**result.info, "edits": edits, "edited_from": origin}
    )
    out = Path(config.out or f"{str(config.sample).rstrip('/')}_edited")
    write_sample(out, result, **config.render.to_dict())
    log.info("wrote %s (%s)", out, op)
    return out
