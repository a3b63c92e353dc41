"""Small random views shared by the kernel tests."""

import jax
import jax.numpy as jnp

from ga_jax.rendering import orbit_cameras, project_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels.config import TileConfig


def random_view(
    seed,
    num,
    height,
    width,
    channels=3,
    config=TileConfig(),
    view=1,
):
    """Splats of one view of a random surfel cloud (sizes as the VAE makes them)."""
    surfels = random_surfels(jax.random.key(seed), num, channels)
    cams = orbit_cameras(2, height, width)
    splats = project_surfels(surfels, cams, config)
    return jax.tree.map(lambda x: x[view], splats)


def opaque_view(seed, height, width, config=TileConfig()):
    """Many large overlapping opaque surfels: exercises the early stop (T < 1e-4)."""
    surfels = random_surfels(jax.random.key(seed), 150, 3, radius=0.2)
    surfels = surfels.replace(scales=surfels.scales * 12.0, opacities=jnp.full((150,), 0.995))
    splats = project_surfels(surfels, orbit_cameras(2, height, width), config)
    return jax.tree.map(lambda x: x[0], splats)
