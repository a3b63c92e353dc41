"""A sample directory: one generated (or edited) object as files users can open, and
everything an edit needs to regenerate it with the same noise.

    points.ply    the stage-1 cloud, P points (x y z float32; any point-cloud tool)
    surfels.ply   the decoded surfels in the 2DGS layout (ga_jax/export/ply.py)
    renders.png   a grid: RGB over white (top row) and world normals (bottom row) from
                  `views` cameras evenly around the object
    latent.npz    xyz float32 [P, 3], features float32 [P, C] (h, the VAE's latent),
                  noise_xyz float32 [P, 3] and noise_features float32 [P, C] (the rows each
                  point's stage 1 / stage 2 started from), ids int64 [P] (the rows' point
                  ids), info (a JSON string: seed, sample index, prompt, sampler settings,
                  NFE and solver status per stage, edits, timings)

read_sample reads latent.npz (and surfels.ply) back into a Sample; a missing or malformed
file raises SampleFileError naming it and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ga_jax.data.ply import write_ply_points
from ga_jax.export.media import render_grid
from ga_jax.export.ply import read_surfel_ply, write_surfel_ply
from ga_jax.pipeline.edit import EditableCloud
from ga_jax.pipeline.generate import Sample

FILES = ("points.ply", "surfels.ply", "renders.png", "latent.npz")


class SampleFileError(ValueError):
    """A sample directory's file is missing or does not match the documented format."""


def write_sample(
    directory: str | os.PathLike,
    sample: Sample,
    *,
    views: int = 4,
    size: int = 256,
    backend: str = "xla",
) -> Path:
    """Write the four files of `sample` into directory (created); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cloud = sample.cloud
    write_ply_points(directory / "points.ply", cloud.xyz)
    write_surfel_ply(directory / "surfels.ply", sample.surfels)
    Image.fromarray(render_grid(sample.surfels, views, size, backend)).save(
        directory / "renders.png"
    )
    np.savez(
        directory / "latent.npz",
        xyz=np.asarray(cloud.xyz, np.float32),
        features=np.asarray(sample.features, np.float32),
        noise_xyz=np.asarray(cloud.noise_xyz, np.float32),
        noise_features=np.asarray(cloud.noise_features, np.float32),
        ids=np.asarray(cloud.ids, np.int64),
        info=np.asarray(json.dumps(sample.info)),
    )
    return directory


def read_sample(directory: str | os.PathLike) -> Sample:
    """The Sample written by write_sample (surfels read back from surfels.ply)."""
    directory = Path(directory)
    path = directory / "latent.npz"
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError as e:
        raise SampleFileError(f"{path}: missing (is {directory} a sample directory?)") from e
    except (OSError, ValueError) as e:
        raise SampleFileError(f"{path}: unreadable npz: {e}") from e
    for name in ("xyz", "features", "noise_xyz", "noise_features", "ids", "info"):
        if name not in arrays:
            raise SampleFileError(f"{path}: missing array '{name}'")
    try:
        cloud = EditableCloud(
            arrays["xyz"], arrays["noise_xyz"], arrays["noise_features"], arrays["ids"]
        )
        info = json.loads(str(arrays["info"]))
    except (ValueError, json.JSONDecodeError) as e:
        raise SampleFileError(f"{path}: {e}") from e
    if arrays["features"].shape != arrays["noise_features"].shape:
        raise SampleFileError(
            f"{path}: 'features' expected shape {arrays['noise_features'].shape}, found "
            f"{arrays['features'].shape}"
        )
    surfels = read_surfel_ply(directory / "surfels.ply")
    return Sample(cloud, arrays["features"], surfels, info)
