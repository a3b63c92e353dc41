"""Exports that open in the usual 3D tools, one module per kind, and `export`, which writes any
of them for one object:

  format   file                  module     what
  ply      <name>_surfels.ply    ply        surfels in the 2DGS layout (our own reader reads it)
  3dgs     <name>_3dgs.ply       splat3dgs  3DGS viewer PLY (SH degree 0, thin third scale)
  points   <name>_points.ply     points     the stage-1 cloud, coloured by the nearest surfels
  obj      <name>.obj            mesh       TSDF-fused mesh with vertex colours (Wavefront OBJ)
  glb      <name>.glb            mesh       the same mesh as binary glTF
  gif      <name>.gif            media      turntable (RGB over white)
  mp4      <name>.mp4            media      the same turntable as H.264
  png      <name>_preview.png    media      grid of RGB, normal and depth rows, 4 views
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ga_jax.export.media import render_grid, turntable_frames, write_gif, write_mp4, write_png
from ga_jax.export.mesh import fuse_mesh, write_mesh
from ga_jax.export.ply import checked_surfel_arrays, write_surfel_ply
from ga_jax.export.points import point_colours, write_points_ply
from ga_jax.export.splat3dgs import write_3dgs_ply
from ga_jax.rendering.surfels import Surfels

__all__ = ["FORMATS", "export"]

# format -> file name after `name` (the module docstring's table).
FORMATS = {
    "ply": "_surfels.ply",
    "3dgs": "_3dgs.ply",
    "points": "_points.ply",
    "obj": ".obj",
    "glb": ".glb",
    "gif": ".gif",
    "mp4": ".mp4",
    "png": "_preview.png",
}


def export(
    surfels: Surfels,
    xyz: np.ndarray | None,
    out_dir: str | os.PathLike,
    formats: Iterable[str] = ("ply", "3dgs", "points", "glb", "gif", "png"),
    name: str = "object",
    *,
    size: int = 256,
    frames: int = 36,
    fps: float = 24.0,
    elevation_deg: float = 20.0,
    preview_views: int = 4,
    mesh_resolution: int = 128,
    backend: str = "xla",
    timings: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write one object's files in `formats` (FORMATS, module docstring) into out_dir
    (created) as <name><suffix>; returns {format: path} in the order asked.

    surfels: one object's Surfels (means [N, 3], quaternions [N, 4] (w, x, y, z), scales
    [N, 2], opacities [N], colors [N, 3] rgb). xyz: the stage-1 points [P, 3] for 'points'
    (None: the surfel centres). size: pixels per image side (turntable, preview, and the
    mesh's fusion renders); frames, fps, elevation_deg: the turntable; backend: the
    renderer's ('native' is the fastest on CPU). timings, when given, is filled with the
    seconds each format took; work two formats share (the mesh of obj and glb, the frames
    of gif and mp4) counts for the first that needs it.

    Raises ValueError listing the valid formats for an unknown one, and ValueError naming
    the field for bad surfels or xyz, before writing anything.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"export: formats: unknown {', '.join(map(repr, unknown))}; expected some of "
            f"{', '.join(FORMATS)}"
        )
    if not name or Path(name).name != name:
        raise ValueError(f"export: name: expected a file name without a directory, got {name!r}")
    if "mp4" in formats and size % 2:
        raise ValueError(f"export: size: expected an even size for mp4 (yuv420p), got {size}")
    arrays = checked_surfel_arrays(surfels, "export")
    if "points" in formats:
        xyz = arrays["means"] if xyz is None else xyz
        colours = point_colours(xyz, surfels)  # checks xyz, naming it
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    shared: dict[str, object] = {}
    for fmt in formats:
        start = time.perf_counter()
        path = out_dir / f"{name}{FORMATS[fmt]}"
        if fmt == "ply":
            write_surfel_ply(path, surfels)
        elif fmt == "3dgs":
            write_3dgs_ply(path, surfels)
        elif fmt == "points":
            write_points_ply(path, xyz, colours)
        elif fmt in ("obj", "glb"):
            if "mesh" not in shared:
                shared["mesh"] = fuse_mesh(
                    surfels, resolution=mesh_resolution, size=size, backend=backend
                )
            write_mesh(path, shared["mesh"])
        elif fmt in ("gif", "mp4"):
            if "frames" not in shared:
                shared["frames"] = turntable_frames(
                    surfels, frames, size, elevation_deg, backend=backend
                )
            writer = write_gif if fmt == "gif" else write_mp4
            writer(path, shared["frames"], fps)
        else:
            grid = render_grid(surfels, preview_views, size, backend, ("rgb", "normal", "depth"))
            write_png(path, grid)
        paths[fmt] = path
        if timings is not None:
            timings[fmt] = time.perf_counter() - start
    return paths
