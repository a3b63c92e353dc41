"""Surfel PLY in the 2D Gaussian Splatting layout: what our decoder produces, stored so that
2DGS (hbb1/2d-gaussian-splatting, `GaussianModel.load_ply`) and 3DGS-style viewers read it.

One binary little-endian 'vertex' element, float32 properties in this order
(SURFEL_PLY_PROPERTIES):

  x y z                    centre, world frame (our Surfels.means)
  nx ny nz                 the surfel normal t_w (third column of its rotation), unit length.
                           2DGS writes zeros here and ignores them on load; we write the
                           normal so that point tools (MeshLab, CloudCompare) show it.
  f_dc_0 f_dc_1 f_dc_2     degree-0 spherical-harmonic coefficient per RGB channel:
                           rgb = 0.5 + SH_C0 * f_dc, SH_C0 = 0.28209479177387814 = 1/(2 sqrt(pi))
                           (2DGS/3DGS `utils/sh_utils.py` RGB2SH / SH2RGB). No f_rest_*: our
                           colours are view-independent (SH degree 0).
  opacity                  logit of the opacity: o = sigmoid(opacity) (2DGS opacity_activation)
  scale_0 scale_1          log of the two standard deviations along t_u, t_v in world units:
                           s = exp(scale_i) (2DGS scaling_activation). 2D: no scale_2.
  rot_0 rot_1 rot_2 rot_3  the unit quaternion (w, x, y, z), w first: 2DGS's build_rotation
                           reads r = q[0], x = q[1], y = q[2], z = q[3], after normalising.

Our surfels (ga_jax.rendering.surfels.Surfels, made by models/vae/surfel_head.py) hold the
activated values: opacities in [0, 1] (a sigmoid), scales > 0 (softplus x 0.006492),
quaternions (w, x, y, z) not necessarily normalised, colours rgb in [0, 1] (0.5 tanh + 0.5).
The writer converts them with the exact inverses of 2DGS's activations, computed in float64
and stored as float32:
  f_dc = (rgb - 0.5) / SH_C0; opacity = log(o) - log(1 - o); scale_i = log(s_i);
  rot = q / |q|.
o = 0 or 1 and s = 0 have no finite logit / log: they are clamped first to the nearest float32
values that have one, o in [2^-126, 1 - 2^-24] and s >= 2^-126 (float32's smallest normal),
and read back as those (2^-126 within 1e-5). Otherwise the float32 storage of the logit / log
costs a few float32 ulps of o and s (tests/export/test_ply.py measures the bound).

read_surfel_ply applies the 2DGS activations (sigmoid, exp, normalise, SH2RGB) and returns
Surfels; surfel_ply_fields gives the stored columns themselves (for exact round trips).
checked_surfel_arrays, rgb_to_sh_dc, opacity_to_logit and scale_to_log are shared with the
other splat layouts (ga_jax/export/splat3dgs.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ga_jax.data.ply import PlyError, read_ply_vertices, write_ply_vertices
from ga_jax.rendering.surfels import Surfels, check_surfels, quaternion_to_rotation

__all__ = [
    "SH_C0",
    "SURFEL_PLY_PROPERTIES",
    "checked_surfel_arrays",
    "logit_to_opacity",
    "opacity_to_logit",
    "read_surfel_ply",
    "rgb_to_sh_dc",
    "scale_to_log",
    "sh_dc_to_rgb",
    "surfel_ply_fields",
    "write_surfel_ply",
]

# The degree-0 real spherical harmonic, Y_0^0 = 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814

SURFEL_PLY_PROPERTIES = (
    "x", "y", "z",
    "nx", "ny", "nz",
    "f_dc_0", "f_dc_1", "f_dc_2",
    "opacity",
    "scale_0", "scale_1",
    "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip

_TINY = float(np.finfo(np.float32).tiny)  # 2^-126
_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))  # 1 - 2^-24


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Degree-0 SH coefficients [..., 3] of colours rgb [..., 3] (float64): (rgb - 0.5) / SH_C0."""
    return (np.asarray(rgb, np.float64) - 0.5) / SH_C0


def sh_dc_to_rgb(f_dc: np.ndarray) -> np.ndarray:
    """Colours [..., 3] of degree-0 SH coefficients (float64): 0.5 + SH_C0 * f_dc. Not clipped
    (2DGS clamps at 0 when rendering)."""
    return 0.5 + SH_C0 * np.asarray(f_dc, np.float64)


def opacity_to_logit(opacity: np.ndarray) -> np.ndarray:
    """logit(o) (float64) of opacities in [0, 1], o clamped to [2^-126, 1 - 2^-24] first."""
    o = np.clip(np.asarray(opacity, np.float64), _TINY, _BELOW_ONE)
    return np.log(o) - np.log1p(-o)


def logit_to_opacity(logit: np.ndarray) -> np.ndarray:
    """sigmoid (float64), the inverse of opacity_to_logit; stable for large |logit|."""
    x = np.asarray(logit, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def scale_to_log(scales: np.ndarray) -> np.ndarray:
    """log(s) (float64) of standard deviations s >= 0, s clamped to >= 2^-126 first."""
    return np.log(np.maximum(np.asarray(scales, np.float64), _TINY))


def checked_surfel_arrays(surfels: Surfels, where: str) -> dict[str, np.ndarray]:
    """One object's surfel arrays as float64 numpy {means, quaternions, scales, opacities,
    colors}, after the checks every surfel writer shares: shapes ([N, 3], [N, 4], [N, 2],
    [N], [N, 3]), finite values, opacities in [0, 1], scales >= 0, non-zero quaternions.
    Raises ValueError whose message starts with `where` (the file) and names the field."""
    if np.ndim(surfels.means) != 2:
        raise ValueError(
            f"{where}: surfels.means: expected shape [N, 3] (one object; index a batch "
            f"first), got {tuple(np.shape(surfels.means))}"
        )
    try:
        check_surfels(surfels)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    arrays = {
        name: np.asarray(getattr(surfels, name), np.float64)
        for name in ("means", "quaternions", "scales", "opacities", "colors")
    }
    if arrays["colors"].shape[-1] != 3:
        raise ValueError(
            f"{where}: surfels.colors: expected shape [N, 3] (RGB; f_dc has 3 channels), got "
            f"{arrays['colors'].shape}"
        )
    norms = np.linalg.norm(arrays["quaternions"], axis=-1)
    checks = (
        ("opacities", (arrays["opacities"] < 0) | (arrays["opacities"] > 1), "in [0, 1]"),
        ("scales", arrays["scales"] < 0, ">= 0"),
        ("quaternions", norms == 0, "with a non-zero norm"),
    )
    for name, bad, expected in checks:
        if np.any(bad):
            raise ValueError(
                f"{where}: surfels.{name}: expected values {expected}, found "
                f"{int(np.sum(np.any(bad.reshape(bad.shape[0], -1), axis=-1)))} surfels outside"
            )
    return arrays


def surfel_ply_fields(surfels: Surfels) -> dict[str, np.ndarray]:
    """The stored columns {name: float32 [N]} in SURFEL_PLY_PROPERTIES order (module docstring).

    surfels: one object's Surfels (means [N, 3], quaternions [N, 4] (w, x, y, z), scales
    [N, 2] >= 0, opacities [N] in [0, 1], colors [N, 3] rgb), numpy or jax arrays, finite.
    Raises ValueError naming the field for other shapes, NaN/inf or values out of range.
    """
    return _fields(surfels, "surfel_ply_fields")


def _fields(surfels: Surfels, where: str) -> dict[str, np.ndarray]:
    a = checked_surfel_arrays(surfels, where)
    quat = a["quaternions"] / np.linalg.norm(a["quaternions"], axis=-1, keepdims=True)
    normal = np.asarray(quaternion_to_rotation(quat.astype(np.float32)))[:, :, 2]
    columns = np.concatenate(
        [
            a["means"],
            normal,
            rgb_to_sh_dc(a["colors"]),
            opacity_to_logit(a["opacities"])[:, None],
            scale_to_log(a["scales"]),
            quat,
        ],
        axis=1,
    ).astype(np.float32)
    return {name: columns[:, i] for i, name in enumerate(SURFEL_PLY_PROPERTIES)}


def write_surfel_ply(path: str | os.PathLike, surfels: Surfels) -> None:
    """Write one object's surfels as a binary little-endian 2DGS surfel PLY (module
    docstring for the layout and conversions). Raises ValueError naming the file and the
    field, before writing anything, for bad shapes, NaN/inf or values out of range."""
    write_ply_vertices(path, _fields(surfels, str(path)))


def read_surfel_ply(path: str | os.PathLike) -> Surfels:
    """Surfels (numpy float32: means [N, 3], quaternions [N, 4] (w, x, y, z) normalised,
    scales [N, 2] = exp, opacities [N] = sigmoid, colors [N, 3] = 0.5 + SH_C0 f_dc) of a
    surfel PLY in the 2DGS layout, as written by write_surfel_ply or by 2DGS itself (then
    nx..nz are zeros; they are not read: the normal follows from the quaternion). Extra
    properties (f_rest_*, scale_2, ...) are ignored, as 2DGS's loader does.

    Raises PlyError (a ValueError) naming the file for a missing property, NaN/inf values or
    a zero quaternion, besides ga_jax.data.ply's errors for the file itself.
    """
    path = Path(path)
    columns = read_ply_vertices(path)
    needed = [n for n in SURFEL_PLY_PROPERTIES if not n.startswith("n")]
    missing = [n for n in needed if n not in columns]
    if missing:
        raise PlyError(
            f"{path}: expected the 2DGS surfel properties {', '.join(needed)}, found "
            f"{list(columns)} (missing {', '.join(missing)})"
        )
    stored = {n: columns[n].astype(np.float64) for n in needed}
    bad = [n for n, v in stored.items() if not np.all(np.isfinite(v))]
    if bad:
        raise PlyError(f"{path}: expected finite values, found NaN/inf in {', '.join(bad)}")
    stack = lambda *names: np.stack([stored[n] for n in names], axis=-1)
    quat = stack("rot_0", "rot_1", "rot_2", "rot_3")
    norm = np.linalg.norm(quat, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise PlyError(f"{path}: expected non-zero quaternions rot_0..rot_3, found zeros")
    return Surfels(
        means=stack("x", "y", "z").astype(np.float32),
        quaternions=(quat / norm).astype(np.float32),
        scales=np.exp(stack("scale_0", "scale_1")).astype(np.float32),
        opacities=logit_to_opacity(stored["opacity"]).astype(np.float32),
        colors=sh_dc_to_rgb(stack("f_dc_0", "f_dc_1", "f_dc_2")).astype(np.float32),
    )
