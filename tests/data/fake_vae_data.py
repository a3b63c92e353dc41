"""A tiny G-buffer dataset made on the fly: spheres seen by 16 cameras, in the exact format.

Each object is a sphere (centre `centre`, radius `radius`) ray-cast analytically, so every
file agrees with the geometry: z-depth, hard alpha, world normals, shaded RGB on white, and
an FPS cloud of points on the sphere. Tests compare the pipeline with independent
computations on these files; the sphere also gives a check independent of unproject_depth
(xyz points must lie on it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ga_jax.data.ply import write_ply_points

FOCAL = 1.3889


def look_at_rows(eyes: np.ndarray, focal: float = FOCAL) -> np.ndarray:
    """c.npy rows [V, 25] of OpenCV cameras at eyes [V, 3] looking at the origin, z-up."""
    rows = np.zeros((len(eyes), 25), np.float32)
    for v, eye in enumerate(np.asarray(eyes, np.float64)):
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:  # looking straight down/up
            right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        cam2world = np.eye(4)
        cam2world[:3, :3] = np.stack([right, down, forward], axis=1)
        cam2world[:3, 3] = eye
        rows[v, :16] = cam2world.ravel()
        rows[v, 16:] = [focal, 0, 0.5, 0, focal, 0.5, 0, 0, 1 / 512]
    return rows


def orbit_eyes(rng: np.random.Generator, views: int) -> np.ndarray:
    azimuth = rng.uniform(0, 2 * np.pi, views)
    elevation = rng.uniform(-1.2, 1.2, views)
    radius = rng.uniform(1.5, 1.95, views)
    return radius[:, None] * np.stack(
        [np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
         np.sin(elevation)], axis=-1)


def render_sphere(rows: np.ndarray, size: int, centre, radius: float, colour):
    """Analytic G-buffer of a sphere: rgb [V,H,H,3] on white, alpha, z-depth, world normal."""
    centre = np.asarray(centre, np.float64)
    cam2world = rows[:, :16].reshape(-1, 4, 4).astype(np.float64)
    pix = np.arange(size) + 0.5
    x = (pix[None, :] - 0.5 * size) / (FOCAL * size)
    y = (pix[:, None] - 0.5 * size) / (FOCAL * size)
    cam = np.stack(np.broadcast_arrays(x, y, np.ones_like(x)), axis=-1)  # [H, W, 3]
    unit = cam / np.linalg.norm(cam, axis=-1, keepdims=True)
    d = np.einsum("vij,hwj->vhwi", cam2world[:, :3, :3], unit)
    o = cam2world[:, None, None, :3, 3] - centre
    b = np.sum(o * d, axis=-1)
    c = np.sum(o * o, axis=-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    t = np.where(hit, -b - np.sqrt(np.maximum(disc, 0)), 0.0)
    depth = np.where(hit, t * unit[None, ..., 2], 0.0)  # z-depth = t * cos(theta)
    normal = (o + t[..., None] * d) / radius
    shade = 0.55 + 0.45 * np.clip(normal[..., 2:3], -1, 1)
    rgb = np.where(hit[..., None], np.asarray(colour) * shade, 1.0)
    normal = np.where(hit[..., None], normal, [0.0, -1.0, 0.0])
    return rgb, hit.astype(np.float64), depth.astype(np.float32), normal


def write_chunk(path: Path, rows, rgb, alpha, depth, normal, caption: str, ins: str) -> None:
    """Write one chunk directory in the data's format from float arrays [V, H, H, ...]."""
    path.mkdir(parents=True, exist_ok=True)

    def tile(a):
        return np.concatenate(list(a), axis=1)

    to8 = lambda a: np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
    Image.fromarray(to8(tile(rgb))).save(path / "raw_img.jpg", quality=95)
    Image.fromarray(to8(tile(alpha))).save(path / "alpha.jpg", quality=95)
    # world n = (-n_raw.x, -n_raw.z, n_raw.y)  <=>  n_raw = (-n.x, n.z, -n.y)
    n_raw = np.stack([-normal[..., 0], normal[..., 2], -normal[..., 1]], axis=-1)
    Image.fromarray(to8(tile((n_raw + 1) / 2))).save(path / "normal.png")
    np.savez_compressed(path / "depth.npz", depth=depth.astype(np.float32))
    np.save(path / "c.npy", rows.astype(np.float32))
    (path / "caption.txt").write_text(caption + "\n")
    (path / "ins.txt").write_text(ins + "\n")


def make_fake_dataset(
    root: Path,
    classes: dict[str, int] | None = None,
    chunks_per_object: int = 2,
    views: int = 16,
    size: int = 64,
    points: int = 256,
    seed: int = 0,
) -> tuple[Path, Path, dict]:
    """Write <root>/gbuffer (dataset.json + chunks) and <root>/fps; returns the two roots and
    {chunk path: {centre, radius}} for the checks."""
    classes = {"Spheres": 2, "Balls": 1} if classes is None else classes
    rng = np.random.default_rng(seed)
    gbuffer, fps = root / "gbuffer", root / "fps"
    listing, truth = {}, {}
    for name, count in classes.items():
        listing[name] = []
        for obj in range(count):
            ins = f"{name}/0/{obj}"
            centre = rng.uniform(-0.08, 0.08, 3)
            radius = rng.uniform(0.2, 0.3)
            colour = rng.uniform(0.2, 0.9, 3)
            surface = rng.normal(size=(points, 3))
            surface = centre + radius * surface / np.linalg.norm(surface, axis=1, keepdims=True)
            (fps / ins).mkdir(parents=True, exist_ok=True)
            write_ply_points(fps / ins / "fps-4096.ply", surface.astype(np.float32))
            for chunk in range(1, chunks_per_object + 1):
                rows = look_at_rows(orbit_eyes(rng, views))
                rgb, alpha, depth, normal = render_sphere(rows, size, centre, radius, colour)
                rel = f"{ins}/{chunk}"
                write_chunk(gbuffer / rel, rows, rgb, alpha, depth, normal,
                            f"a {name.lower()[:-1]} number {obj}", ins)
                listing[name].append(rel)
                truth[rel] = {"centre": centre, "radius": radius}
    (gbuffer / "dataset.json").write_text(json.dumps(listing, indent=1))
    return gbuffer, fps, truth
