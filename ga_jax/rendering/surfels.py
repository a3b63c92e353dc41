"""The surfel (2D Gaussian) container."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Surfels:
    """N oriented 2D Gaussians in world space. Leading dims [...] are free (objects).

    quaternions are (w, x, y, z) and need not be normalised; the rotation's first two columns
    t_u, t_v span the disk and the third t_w is its normal. scales are (s_u, s_v), the
    standard deviations along t_u and t_v in world units.
    """

    means: jax.Array  # [..., N, 3]
    quaternions: jax.Array  # [..., N, 4] (w, x, y, z)
    scales: jax.Array  # [..., N, 2]
    opacities: jax.Array  # [..., N] in [0, 1]
    colors: jax.Array  # [..., N, D]

    @property
    def num(self) -> int:
        return self.means.shape[-2]


def quaternion_to_rotation(quaternions: jax.Array) -> jax.Array:
    """Rotation matrices [..., 3, 3] from (w, x, y, z) quaternions [..., 4] (normalised here)."""
    q = quaternions / jnp.linalg.norm(quaternions, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def check_surfels(surfels: Surfels) -> None:
    """Raise ValueError naming the field when shapes disagree or values are not finite."""
    n = surfels.means.shape[-2] if surfels.means.ndim >= 2 else None
    lead = surfels.means.shape[:-2]
    expected = {
        "means": lead + (n, 3),
        "quaternions": lead + (n, 4),
        "scales": lead + (n, 2),
        "opacities": lead + (n,),
    }
    if surfels.means.ndim < 2 or surfels.means.shape[-1] != 3:
        raise ValueError(f"surfels.means: expected shape [..., N, 3], got {surfels.means.shape}")
    for name, shape in expected.items():
        got = getattr(surfels, name).shape
        if got != shape:
            raise ValueError(f"surfels.{name}: expected shape {shape}, got {got}")
    if surfels.colors.shape[:-1] != lead + (n,):
        raise ValueError(
            f"surfels.colors: expected shape {lead + (n,)} + (D,), got {surfels.colors.shape}"
        )
    for name in ("means", "quaternions", "scales", "opacities", "colors"):
        value = getattr(surfels, name)
        if isinstance(value, jax.core.Tracer):
            continue
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"surfels.{name}: contains NaN or inf")
