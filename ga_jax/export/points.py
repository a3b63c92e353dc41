"""A coloured point cloud PLY (the stage-1 cloud) that MeshLab, CloudCompare, Open3D and Blender
read: one binary little-endian 'vertex' element with

  float x, y, z                  position, world frame
  uchar red, green, blue         colour, 0..255 (only when colours are given)

Colours come as uint8 [N, 3] (stored as they are) or floats [N, 3] in [0, 1] (clipped to
[0, 1], then round(255 c), as a renderer would display them). Without colours the file is the
plain `float x, y, z` cloud of ga_jax.data.ply.write_ply_points.

Stage 1 makes positions only; point_colours gives each point the colour of the nearest
surfel centre, so the cloud shows what the decoded object looks like there.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial import cKDTree

from ga_jax.data.ply import write_ply_vertices
from ga_jax.export.ply import checked_surfel_arrays
from ga_jax.rendering.surfels import Surfels

__all__ = ["POINT_PLY_PROPERTIES", "point_colours", "write_points_ply"]

POINT_PLY_PROPERTIES = ("x", "y", "z", "red", "green", "blue")


def _points(xyz, where: str) -> np.ndarray:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{where}: xyz: expected shape [N, 3], got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        bad = int(np.sum(~np.all(np.isfinite(xyz), axis=-1)))
        raise ValueError(
            f"{where}: xyz: expected finite coordinates, found NaN/inf in {bad} points"
        )
    return xyz


def point_colours(xyz: np.ndarray, surfels: Surfels) -> np.ndarray:
    """float32 [P, 3]: for each point xyz [P, 3] the colour of the surfel whose centre is
    nearest (Euclidean; ties to the lower index). surfels: one object's Surfels with rgb
    colors [N, 3], N >= 1. Raises ValueError naming the field for bad shapes or NaN/inf."""
    xyz = _points(xyz, "point_colours")
    arrays = checked_surfel_arrays(surfels, "point_colours")
    if arrays["means"].shape[0] == 0:
        raise ValueError("point_colours: surfels: expected at least one surfel, got none")
    if xyz.shape[0] == 0:
        return np.zeros((0, 3), np.float32)
    _, nearest = cKDTree(arrays["means"]).query(np.asarray(xyz, np.float64))
    return arrays["colors"][nearest].astype(np.float32)


def write_points_ply(
    path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray | None = None
) -> None:
    """Write points xyz [N, 3] (stored as float32) with colours rgb [N, 3] (uint8 0..255, or
    floats in [0, 1], clipped) or none, as a binary little-endian PLY (module docstring).
    Raises ValueError naming the file and the field, before writing, for bad shapes or
    NaN/inf."""
    xyz = _points(xyz, str(path)).astype(np.float32)
    columns = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape:
            raise ValueError(f"{path}: rgb: expected shape {xyz.shape} like xyz, got {rgb.shape}")
        if rgb.dtype != np.uint8:
            if rgb.dtype.kind != "f":
                raise ValueError(
                    f"{path}: rgb: expected uint8 (0..255) or float ([0, 1]) colours, got "
                    f"{rgb.dtype}"
                )
            rgb = rgb.astype(np.float64)
            if not np.all(np.isfinite(rgb)):
                raise ValueError(f"{path}: rgb: expected finite colours, found NaN/inf")
            rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
        columns |= {"red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2]}
    write_ply_vertices(path, columns)
