"""Surfels as a 3D Gaussian Splatting PLY: the layout of graphdeco-inria/gaussian-splatting's
`GaussianModel.save_ply`, which the common splat viewers read (SuperSplat, antimatter15/splat,
mkkellogg/GaussianSplats3D, ...), so a generated object opens where a 2DGS file would not.

One binary little-endian 'vertex' element, float32 properties in this order
(SPLAT_3DGS_PROPERTIES):

  x y z                    centre, world frame (our Surfels.means)
  nx ny nz                 zeros, as 3DGS's save_ply writes them (its loader ignores them)
  f_dc_0 f_dc_1 f_dc_2     degree-0 SH coefficient per RGB channel, rgb = 0.5 + SH_C0 f_dc
  opacity                  logit of the opacity, o = sigmoid(opacity)
  scale_0 scale_1 scale_2  log of the three standard deviations along the rotation's columns
                           t_u, t_v, t_w: s = exp(scale_i)
  rot_0 rot_1 rot_2 rot_3  the unit quaternion (w, x, y, z), w first (3DGS build_rotation)

SH degree 0, so no f_rest_* properties. That is 3DGS's own layout for degree 0: save_ply
writes 3 * ((degree + 1)^2 - 1) f_rest_* columns, none for degree 0. Viewers do not require
them: antimatter15/splat's convert.py reads only f_dc, opacity, scale_* and rot_*;
mkkellogg's PlyParser takes the base fields alone as degree 0; SuperSplat (PlayCanvas)
enables SH bands only when the file has them. The 3DGS training code's load_ply asserts the
count of its configured max_sh_degree, so load the file there with `--sh_degree 0`.

The conversions are those of the 2DGS surfel PLY (ga_jax/export/ply.py: rgb_to_sh_dc,
opacity_to_logit with o clamped to [2^-126, 1 - 2^-24], scale_to_log with s >= 2^-126, the
normalised quaternion), computed in float64 and stored as float32, and share its input checks.

The third scale. A surfel is a 2D Gaussian: no extent along its normal t_w. Viewers render 3D
Gaussians (covariance R diag(s)^2 R^T), and a zero third scale has no finite log and makes the
covariance singular (some viewers invert or factor it), so scale_2 is the log of a thin but
positive standard deviation along the normal:

  s_w = max(THICKNESS_RATIO * min(s_u, s_v), MIN_THICKNESS),  THICKNESS_RATIO = 0.1

A tenth of the smaller in-plane scale keeps each splat a disk: seen edge-on it is at least 10x
thinner than it is wide (a 2DGS surfel is a line there), and seen face-on the third axis lies
along the view ray, where it barely changes the projected footprint. The floor MIN_THICKNESS
= 1e-7 world units (objects fill [-0.5, 0.5]^3) keeps the log finite and s_w^2 a normal
float32 for degenerate surfels (s = 0); it is near float32's resolution of positions at the
box face (0.5 * 2^-23 ~ 6e-8), so it never visibly thickens a splat.
"""

from __future__ import annotations

import os

import numpy as np

from ga_jax.data.ply import write_ply_vertices
from ga_jax.export.ply import (
    checked_surfel_arrays,
    opacity_to_logit,
    rgb_to_sh_dc,
    scale_to_log,
)
from ga_jax.rendering.surfels import Surfels

__all__ = [
    "MIN_THICKNESS",
    "SPLAT_3DGS_PROPERTIES",
    "THICKNESS_RATIO",
    "normal_scales",
    "splat_3dgs_fields",
    "write_3dgs_ply",
]

SPLAT_3DGS_PROPERTIES = (
    "x", "y", "z",
    "nx", "ny", "nz",
    "f_dc_0", "f_dc_1", "f_dc_2",
    "opacity",
    "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip

THICKNESS_RATIO = 0.1
MIN_THICKNESS = 1e-7


def normal_scales(scales: np.ndarray) -> np.ndarray:
    """The standard deviation [N] along each surfel's normal given its in-plane ones [N, 2]
    (float64): max(THICKNESS_RATIO * min(s_u, s_v), MIN_THICKNESS) (module docstring)."""
    scales = np.asarray(scales, np.float64)
    return np.maximum(THICKNESS_RATIO * np.min(scales, axis=-1), MIN_THICKNESS)


def splat_3dgs_fields(surfels: Surfels, where: str = "splat_3dgs_fields") -> dict[str, np.ndarray]:
    """The stored columns {name: float32 [N]} in SPLAT_3DGS_PROPERTIES order.

    surfels: one object's Surfels (means [N, 3], quaternions [N, 4] (w, x, y, z), scales
    [N, 2] >= 0, opacities [N] in [0, 1], colors [N, 3] rgb), numpy or jax arrays, finite.
    Raises ValueError starting with `where` and naming the field for other shapes, NaN/inf
    or values out of range.
    """
    a = checked_surfel_arrays(surfels, where)
    n = a["means"].shape[0]
    quat = a["quaternions"] / np.linalg.norm(a["quaternions"], axis=-1, keepdims=True)
    columns = np.concatenate(
        [
            a["means"],
            np.zeros((n, 3)),
            rgb_to_sh_dc(a["colors"]),
            opacity_to_logit(a["opacities"])[:, None],
            scale_to_log(a["scales"]),
            np.log(normal_scales(a["scales"]))[:, None],
            quat,
        ],
        axis=1,
    ).astype(np.float32)
    return {name: columns[:, i] for i, name in enumerate(SPLAT_3DGS_PROPERTIES)}


def write_3dgs_ply(path: str | os.PathLike, surfels: Surfels) -> None:
    """Write one object's surfels as a binary little-endian 3DGS PLY, SH degree 0 (module
    docstring for the layout, the conversions and the third scale). Raises ValueError naming
    the file and the field, before writing anything, for bad shapes, NaN/inf or values out of
    range."""
    write_ply_vertices(path, splat_3dgs_fields(surfels, str(path)))
