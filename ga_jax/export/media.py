"""Images and videos of surfels: a preview grid (PNG), turntable frames, GIF and MP4.

All renders use render_surfels on orbit cameras (ga_jax.rendering.cameras.orbit_cameras:
OpenCV cameras at distance 1.7 looking at the origin, the data's intrinsics, world z up) and
are uint8 RGB arrays over a white background.

  render_grid        [rows * size, views * size, 3]: one row per kind, one column per view
                     evenly spaced in azimuth at 20 degrees elevation. Kinds: 'rgb'; 'normal'
                     (world normal n mapped to n * 0.5 + 0.5); 'depth' (camera z where alpha >
                     0.5, grey from black at the grid's 1st to 0.75 at its 99th percentile
                     of depth, so that the rare far hits of edge-on surfels at silhouettes,
                     ga_jax/export/mesh.py, do not flatten it). Each is blended over white
                     by alpha.
  turntable_frames   [frames, size, size, 3]: `frames` views at one elevation, azimuth from 0
                     counter-clockwise seen from above (+z), one full turn without repeating
                     the first view, so a looping video turns smoothly.
  write_gif          an endlessly looping GIF (Pillow through imageio), `fps` frames a second
                     (GIF stores delays in 1/100 s, so 1 / fps is rounded to that).
  write_mp4          H.264 MP4 (imageio-ffmpeg's bundled ffmpeg), yuv420p so that browsers and
                     players open it; frame sides must be even (yuv420p halves the chroma).
  write_png          one uint8 image.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ga_jax.export.ply import checked_surfel_arrays
from ga_jax.rendering.cameras import Cameras, orbit_cameras
from ga_jax.rendering.render import RenderOutput, render_surfels
from ga_jax.rendering.surfels import Surfels

__all__ = [
    "GRID_ROWS",
    "render_grid",
    "render_views",
    "turntable_frames",
    "write_gif",
    "write_mp4",
    "write_png",
]

GRID_ROWS = ("rgb", "normal", "depth")
WHITE = (1.0, 1.0, 1.0)


@functools.partial(jax.jit, static_argnames=("backend", "capacity"))
def _render(
    surfels: Surfels, cameras: Cameras, background: jax.Array, backend: str, capacity: int | None
):
    return render_surfels(surfels, cameras, background, backend=backend, capacity=capacity)


def render_views(
    surfels: Surfels,
    cameras: Cameras,
    background: Sequence[float] = WHITE,
    backend: str = "xla",
    where: str = "render_views",
) -> RenderOutput:
    """render_surfels of one object's surfels [N] (RGB colours) by cameras [C], compiled
    once per shape. When a view has more surfel-tile pairs than render_surfels' default
    capacity (large surfels at a large size), it renders again with room for all of them
    (the count rounded up to a power of two). Raises ValueError starting with `where` and
    naming the field for bad surfels."""
    checked_surfel_arrays(surfels, where)
    surfels = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), surfels)
    background = jnp.asarray(background, jnp.float32)
    out = _render(surfels, cameras, background, backend, None)
    if bool(jnp.any(out.overflow)):
        pairs = int(jnp.max(out.num_intersections))
        out = _render(surfels, cameras, background, backend, 1 << (pairs - 1).bit_length())
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _row_images(out: RenderOutput, kind: str) -> np.ndarray:
    """float [C, H, W, 3] images of one grid row (module docstring)."""
    alpha = np.asarray(out.alpha)[..., None]
    if kind == "rgb":
        return np.asarray(out.rgb)
    if kind == "normal":
        normal = np.asarray(out.normal_world)
        norm = np.linalg.norm(normal, axis=-1, keepdims=True)
        image = np.where(norm > 1e-6, normal / np.maximum(norm, 1e-6) * 0.5 + 0.5, 1.0)
    else:
        depth = np.asarray(out.expected_depth())[..., None]
        seen = alpha > 0.5
        near, far = np.percentile(depth[seen], [1, 99]) if np.any(seen) else (0.0, 1.0)
        grey = 0.75 * np.clip((depth - near) / max(far - near, 1e-6), 0, 1)
        image = np.where(seen, np.broadcast_to(grey, depth.shape[:-1] + (3,)), 1.0)
    return alpha * image + (1 - alpha)


def render_grid(
    surfels: Surfels,
    views: int = 4,
    size: int = 256,
    backend: str = "xla",
    rows: Sequence[str] = ("rgb", "normal"),
) -> np.ndarray:
    """uint8 [len(rows) * size, views * size, 3]: one row per kind of GRID_ROWS ('rgb',
    'normal', 'depth'; module docstring), `views` orbit cameras at 20 degrees elevation."""
    unknown = [r for r in rows if r not in GRID_ROWS]
    if unknown or not rows:
        raise ValueError(f"render_grid: rows: expected some of {GRID_ROWS}, got {tuple(rows)}")
    out = render_views(surfels, orbit_cameras(views, size, size), WHITE, backend, "render_grid")
    images = [_row_images(out, kind) for kind in rows]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in images], axis=0)
    return _to_uint8(grid)


def turntable_frames(
    surfels: Surfels,
    frames: int = 36,
    size: int = 256,
    elevation_deg: float = 20.0,
    radius: float = 1.7,
    backend: str = "xla",
) -> np.ndarray:
    """uint8 [frames, size, size, 3]: RGB over white from `frames` cameras evenly around the
    object at elevation_deg (module docstring)."""
    if frames < 1 or size < 1:
        raise ValueError(f"turntable_frames: frames and size: expected >= 1, got {frames}, {size}")
    cameras = orbit_cameras(frames, size, size, radius, elevation_deg)
    out = render_views(surfels, cameras, WHITE, backend, "turntable_frames")
    return _to_uint8(np.asarray(out.rgb))


def _check_frames(path: Path, frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"{path}: frames: expected shape [F >= 1, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames: expected dtype uint8, got {frames.dtype}")
    return frames


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write frames uint8 [F, H, W, 3] as a looping GIF at `fps`; returns the path. Raises
    ValueError naming the file for other shapes or dtypes."""
    import imageio.v3 as iio

    path = Path(path)
    frames = _check_frames(path, frames)
    iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 24.0) -> Path:
    """Write frames uint8 [F, H, W, 3] (H, W even) as an H.264 yuv420p MP4 at `fps`; returns
    the path. Raises ValueError naming the file for other shapes, dtypes or odd sides."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = _check_frames(path, frames)
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(
            f"{path}: frames: expected even height and width (yuv420p), got "
            f"{frames.shape[1]}x{frames.shape[2]}"
        )
    # macro_block_size=2: keep the size as it is (the default 16 would rescale it).
    with imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=2,
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 [H, W, 3] image as PNG; returns the path."""
    path = Path(path)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{path}: image: expected uint8 [H, W, 3], got {image.dtype} {image.shape}"
        )
    Image.fromarray(image).save(path, format="PNG")
    return path
