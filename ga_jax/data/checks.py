"""Consistency checks of G-buffer data: do depth, normals, cameras and the FPS cloud agree?

Used by tests (real and synthetic data) and by `python -m launch.check_data`, which prints
one row per object. The three checks (issue 3, acceptance 1-2):

- surface vs cloud: pixels with alpha > `alpha_min` are unprojected from z-depth with the
  cameras; we report the median distance from those surface points to the nearest FPS point
  (bounded below by the FPS spacing, ~0.5-1 cm for 4,096 points on a 0.9 m object) and from
  each FPS point to the nearest surface point (the cloud's offset from the rendered surface;
  FPS points the views never see, e.g. in concavities, add a tail, hence the median).
- normals: the decoded world normals against normals of the unprojected depth surface
  (central differences), |cos| over interior pixels whose 4 neighbours are also solid.
- cameras: the distance from the origin to each camera's optical axis (+z of cam2world).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ga_jax.data.gbuffer import (
    GBufferChunk,
    GBufferError,
    read_chunk,
    unproject_depth,
)
from ga_jax.data.ply import read_ply_points
from ga_jax.data.source import load_listing

__all__ = [
    "ObjectReport",
    "THRESHOLDS",
    "axis_distance_to_origin",
    "check_dataset",
    "check_object",
    "failed_checks",
    "nearest_distances",
    "normal_agreement",
    "solid_surface_points",
]


def nearest_distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """float64 [Q]: distance from each query [Q, 3] to its nearest point in points [P, 3]."""
    distances, _ = cKDTree(np.asarray(points, np.float64)).query(np.asarray(queries, np.float64))
    return distances


def solid_surface_points(chunk: GBufferChunk, alpha_min: float = 0.99) -> np.ndarray:
    """World points [M, 3] of the fully covered pixels of every view of a chunk.

    At anti-aliased edges the stored depth is blended with the background's 0 (~alpha * z), so
    only pixels with alpha > alpha_min unproject onto the surface.
    """
    world = unproject_depth(chunk.depth, chunk.cameras)
    return world[(chunk.alpha > alpha_min) & (chunk.depth > 0)]


def normal_agreement(chunk: GBufferChunk, alpha_min: float = 0.99) -> np.ndarray:
    """float [K]: |cos| between decoded normals and depth-surface normals, interior pixels.

    The depth-surface normal at a pixel is cross(P[i, j+1] - P[i, j-1], P[i+1, j] - P[i-1, j])
    of the unprojected points; the absolute value makes the check independent of the
    cross product's orientation (the decoded normals' facing is a separate property).
    """
    world = unproject_depth(chunk.depth, chunk.cameras)
    values = []
    for v in range(chunk.num_views):
        solid = (chunk.alpha[v] > alpha_min) & (chunk.depth[v] > 0)
        du = world[v, 1:-1, 2:] - world[v, 1:-1, :-2]
        dv = world[v, 2:, 1:-1] - world[v, :-2, 1:-1]
        g = np.cross(du, dv)
        g /= np.linalg.norm(g, axis=-1, keepdims=True) + 1e-12
        n = chunk.normal[v, 1:-1, 1:-1]
        n = n / (np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12)
        inner = solid[1:-1, 1:-1] & solid[1:-1, 2:] & solid[1:-1, :-2]
        inner &= solid[2:, 1:-1] & solid[:-2, 1:-1]
        values.append(np.abs(np.sum(g * n, axis=-1))[inner])
    return np.concatenate(values)


def axis_distance_to_origin(cameras: np.ndarray) -> np.ndarray:
    """float [V]: distance from the world origin to each camera's optical axis.

    cameras: [V, 25] c.npy rows (row-major OpenCV cam2world first): the axis is the line
    through the centre o along the unit forward vector f (third column of the rotation), and
    its distance to the origin is |o - (o . f) f|.
    """
    cam2world = np.asarray(cameras, np.float64)[:, :16].reshape(-1, 4, 4)
    centre = cam2world[:, :3, 3]
    forward = cam2world[:, :3, 2] / np.linalg.norm(cam2world[:, :3, 2], axis=-1, keepdims=True)
    along = np.sum(centre * forward, axis=-1, keepdims=True)
    return np.linalg.norm(centre - along * forward, axis=-1)


@dataclasses.dataclass(frozen=True)
class ObjectReport:
    """Check results of one object (distances in metres)."""

    instance_id: str
    num_views: int
    surface_to_cloud: float  # median, surface points -> nearest FPS point
    cloud_to_surface: float  # median, FPS points -> nearest surface point
    normal_cos: float  # median |cos| decoded vs depth normals
    axis_distance: float  # max over views, optical axis to origin
    forward_to_origin: bool  # every camera looks towards the origin (not away)


def check_object(
    chunks: Sequence[GBufferChunk],
    cloud: np.ndarray,
    *,
    alpha_min: float = 0.99,
    max_surface_points: int = 200_000,
    seed: int = 0,
) -> ObjectReport:
    """Run the three checks on the chunks of one object and its FPS cloud [P, 3]."""
    if not chunks:
        raise ValueError("chunks: expected at least one chunk of the object")
    surface = np.concatenate([solid_surface_points(c, alpha_min) for c in chunks])
    if len(surface) == 0:
        raise ValueError(f"{chunks[0].path}: no pixel has alpha > {alpha_min}")
    rng = np.random.default_rng(seed)
    if len(surface) > max_surface_points:  # the median needs no more; keeps the KD-tree small
        surface = surface[rng.choice(len(surface), max_surface_points, replace=False)]
    cameras = np.concatenate([c.cameras for c in chunks])
    cam2world = cameras[:, :16].reshape(-1, 4, 4)
    normal_cos = np.concatenate([normal_agreement(c, alpha_min) for c in chunks])
    facing = np.sum(cam2world[:, :3, 2] * -cam2world[:, :3, 3], axis=-1) > 0
    return ObjectReport(
        instance_id=chunks[0].instance_id,
        num_views=len(cameras),
        surface_to_cloud=float(np.median(nearest_distances(surface, cloud))),
        cloud_to_surface=float(np.median(nearest_distances(cloud, surface))),
        normal_cos=float(np.median(normal_cos)),
        axis_distance=float(axis_distance_to_origin(cameras).max()),
        forward_to_origin=bool(np.all(facing)),
    )


# Pass/fail bounds of `check_dataset` (issue 3, acceptance 1): metres, cosine, metres.
THRESHOLDS = {"cloud_to_surface": 0.01, "normal_cos": 0.95, "axis_distance": 0.001}


def failed_checks(report: ObjectReport) -> list[str]:
    """Names of the THRESHOLDS (and the facing check) that the report fails."""
    failed = [
        name
        for name in ("cloud_to_surface", "axis_distance")
        if getattr(report, name) > THRESHOLDS[name]
    ]
    if report.normal_cos < THRESHOLDS["normal_cos"]:
        failed.append("normal_cos")
    if not report.forward_to_origin:
        failed.append("forward_to_origin")
    return failed


def check_dataset(
    gbuffer_root: str | os.PathLike,
    fps_root: str | os.PathLike,
    *,
    max_objects: int | None = None,
    print_fn=print,
) -> int:
    """Check every object listed in `gbuffer_root/dataset.json`; print a markdown table.

    Chunks are grouped into objects by their ins.txt; the cloud is
    `fps_root/<ins>/fps-4096.ply`. Returns the number of objects that fail THRESHOLDS.
    """
    root = Path(gbuffer_root)
    index = load_listing(root / "dataset.json")
    # Group chunk directories by their ins.txt first and read one object at a time: a large
    # dataset's decoded chunks would not fit in memory together.
    objects: dict[str, list[Path]] = collections.defaultdict(list)
    for chunk_paths in index.values():
        for rel in chunk_paths:
            ins_file = root / rel / "ins.txt"
            try:
                objects[ins_file.read_text().strip()].append(root / rel)
            except OSError as e:
                raise GBufferError(f"{ins_file}: cannot read the instance id: {e}") from e
    print_fn(
        "| object | views | surface->cloud cm | cloud->surface cm | normal |cos| | "
        "axis to origin mm | result |"
    )
    print_fn("|---|---|---|---|---|---|---|")
    failures = 0
    for instance_id in sorted(objects)[:max_objects]:
        cloud = read_ply_points(Path(fps_root) / instance_id / "fps-4096.ply")
        report = check_object([read_chunk(path) for path in objects[instance_id]], cloud)
        failed = failed_checks(report)
        failures += bool(failed)
        result = "FAIL: " + ", ".join(failed) if failed else "ok"
        print_fn(
            f"| {instance_id} | {report.num_views} | {100 * report.surface_to_cloud:.2f} | "
            f"{100 * report.cloud_to_surface:.2f} | {report.normal_cos:.3f} | "
            f"{1000 * report.axis_distance:.3f} | {result} |"
        )
    return failures
