"""Surfel (2D Gaussian) rendering: project_surfels -> intersect_tiles -> composite."""

from ga_jax.rendering.cameras import Cameras, look_at, orbit_cameras
from ga_jax.rendering.project import project_surfels
from ga_jax.rendering.render import RenderOutput, render_surfels
from ga_jax.rendering.surfels import Surfels, quaternion_to_rotation
from ga_jax.rendering.tiles import default_capacity, intersect_tiles

__all__ = [
    "Cameras",
    "RenderOutput",
    "Surfels",
    "default_capacity",
    "intersect_tiles",
    "look_at",
    "orbit_cameras",
    "project_surfels",
    "quaternion_to_rotation",
    "render_surfels",
]
