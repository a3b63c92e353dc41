"""Rendering a cascade of surfel levels, each at its own size (the VAE's coarse-to-fine renders)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.render import RenderOutput, render_surfels
from ga_jax.rendering.surfels import Surfels

__all__ = ["render_levels"]


def render_levels(
    levels: Sequence[Surfels],  # each [B, N_l], coarse to fine
    camera_rows: jax.Array,  # [B, V, 25] c.npy rows (OpenCV cam2world + normalised K)
    background: jax.Array,  # [B, 3]
    sizes: Sequence[int],  # one square render size per level
    *,
    backend: str,
    capacity_per_surfel: float,
) -> list[RenderOutput]:
    """Render each level with the same cameras at its size; the pair capacity of the tiled
    backends is capacity_per_surfel x N_l (+ 2 per 8 px tile), overflow reported per render."""
    if len(sizes) != len(levels):
        raise ValueError(
            f"render sizes: expected one size per surfel level ({len(levels)} levels), "
            f"got {tuple(sizes)}"
        )
    num_views = camera_rows.shape[1]
    bg = jnp.broadcast_to(background[:, None, :], background.shape[:1] + (num_views, 3))
    outputs = []
    for surfels, size in zip(levels, sizes, strict=True):
        cameras = Cameras.from_rows(camera_rows, size, size)
        count = surfels.means.shape[-2]
        capacity = int(capacity_per_surfel * count + 2 * math.ceil(size / 8) ** 2)
        outputs.append(render_surfels(surfels, cameras, bg, backend=backend, capacity=capacity))
    return outputs
