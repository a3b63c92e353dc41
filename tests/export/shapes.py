"""Surfels of known shapes for the export tests, built without our rendering code: scipy's
Rotation gives the quaternions."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ga_jax.rendering.surfels import Surfels

SPHERE_CENTRE = np.array([0.08, -0.05, 0.03])  # off the origin: catches swapped axes
SPHERE_RADIUS = 0.3


def sphere_surfels(
    n: int = 2000, radius: float = SPHERE_RADIUS, centre=SPHERE_CENTRE, opacity: float = 1.0
) -> Surfels:
    """n opaque surfels on a sphere (Fibonacci lattice): means on it, normals radial, equal
    in-plane scales 0.7x the lattice spacing (so neighbours overlap into a closed surface),
    colours that vary with the normal (r = 0.5 + 0.5 n_x, g = 0.2, b = 0.8)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = np.pi * (1 + 5**0.5) * i
    normal = np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], -1
    )
    # The rotation taking +z (the surfel normal t_w) to the radial normal.
    axis = np.cross([0.0, 0.0, 1.0], normal)
    sin = np.linalg.norm(axis, axis=-1)
    angle = np.arctan2(sin, normal[:, 2])
    rotvec = axis / np.maximum(sin, 1e-12)[:, None] * angle[:, None]
    xyzw = Rotation.from_rotvec(rotvec).as_quat()
    scale = 0.7 * radius * np.sqrt(4 * np.pi / n)
    colours = np.stack([0.5 + 0.5 * normal[:, 0], np.full(n, 0.2), np.full(n, 0.8)], -1)
    return Surfels(
        means=(centre + radius * normal).astype(np.float32),
        quaternions=xyzw[:, [3, 0, 1, 2]].astype(np.float32),
        scales=np.full((n, 2), scale, np.float32),
        opacities=np.full(n, opacity, np.float32),
        colors=colours.astype(np.float32),
    )


def random_surfels(n: int = 64, seed: int = 0) -> Surfels:
    """Surfels with random values in the ranges our decoder produces (anisotropic scales,
    unnormalised quaternions, opacities and colours spanning [0, 1])."""
    rng = np.random.default_rng(seed)
    return Surfels(
        means=rng.uniform(-0.45, 0.45, (n, 3)).astype(np.float32),
        quaternions=(rng.normal(size=(n, 4)) * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32),
        scales=np.exp(rng.uniform(-7, -3, (n, 2))).astype(np.float32),
        opacities=rng.uniform(0, 1, n).astype(np.float32),
        colors=rng.uniform(0, 1, (n, 3)).astype(np.float32),
    )


def fast_backend() -> str:
    """The renderer backend for these tests: 'native' (the fastest on CPU) where it builds,
    else 'xla'."""
    from kernels import native_composite

    return "native" if native_composite.available() is None else "xla"
