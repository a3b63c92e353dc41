"""Cameras of the synthetic chunks: the data's 16-view layout, drawn per object.

Camera layout per chunk (copied from the data's c.npy): every camera looks at the origin with
right = (-sin az, cos az, 0) and down = forward x right. Per object: orbit elevation
U(8, 22) deg, near-horizontal elevation an integer in [-3, 1] deg, and two radii in
U(1.5, 1.95) (orbit and top/bottom views share one, near-horizontal views use the other).
View 0 top, 1-4 orbit (azimuths a, a+105, a+210, a+315), 5-7 near-horizontal (b, b+120,
b+240), 8 bottom, 9-12 orbit, 13-15 near-horizontal. Start azimuths lie on a 15 deg grid and
are drawn so that, for up to 3 chunks, no orbit or near-horizontal view repeats between the
chunks of an object (3 chunks use all 24 orbit azimuths); the in-plane rotation of the
top/bottom views also changes per chunk.

A camera is one c.npy row, float32 [25]: the row-major OpenCV cam2world (x right, y down,
+z forward, world z-up), then K normalised by the image size (fx = fy = FOCAL = 25/18
~ 1.3889, cx = cy = 0.5, K[2, 2] = 1/H as in the data). The cameras of object i come from
their own random stream (numpy SeedSequence([seed, i, 1])), independent of its shape's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FOCAL", "NUM_VIEWS", "chunk_cameras", "look_at", "object_cameras", "orbit_cameras"]

NUM_VIEWS = 16
FOCAL = 25.0 / 18.0  # fx = fy normalised by the image size (FoV 39.6 deg), as in the data


def look_at(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """float64 [4, 4] OpenCV cam2world of a camera at (azimuth, elevation, radius) looking at
    the origin, with right = (-sin az, cos az, 0) and down = forward x right (the data's
    convention; also defined at the poles)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    position = radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    forward = -position / radius
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2] = right, down, forward
    cam2world[:3, 3] = position
    return cam2world


def _camera_row(cam2world: np.ndarray, resolution: int) -> np.ndarray:
    k = np.array([[FOCAL, 0.0, 0.5], [0.0, FOCAL, 0.5], [0.0, 0.0, 1.0 / resolution]])
    return np.concatenate([cam2world.reshape(16), k.reshape(9)])


def _orbit_starts(rng: np.random.Generator, count: int) -> list[int]:
    """`count` start indices (15 deg steps) of 4-view orbits {s, s+7, s+14, s+21} (105 deg
    apart) such that up to 6 orbits never share a view.

    Multiplying by 7 (its own inverse mod 24) maps an orbit to the block {u, .., u+3}, so the
    orbits starting at s = 7 (c + 4 j) mod 24, j = 0..5, tile the 24 azimuths."""
    c = int(rng.integers(4))
    blocks = [int(j) for j in rng.permutation(6)]
    starts = [(7 * (c + 4 * j)) % 24 for j in blocks[:count]]
    return starts + [int(s) for s in rng.integers(24, size=max(count - 6, 0))]


def _flat_starts(rng: np.random.Generator, count: int) -> list[int]:
    """`count` start indices of 3-view rings {s, s+8, s+16} (120 deg apart): distinct starts
    mod 8 never share a view (up to 8 rings)."""
    starts = [int(s) for s in rng.permutation(8)[:count]]
    return starts + [int(s) for s in rng.integers(24, size=max(count - 8, 0))]


def object_cameras(rng: np.random.Generator, num_chunks: int, resolution: int) -> list[np.ndarray]:
    """float32 [16, 25] c.npy rows for each of `num_chunks` chunks of one object (see the
    module docstring for the layout)."""
    el_orbit = rng.uniform(8.0, 22.0)
    el_flat = float(rng.integers(-3, 2))
    r_orbit, r_flat = rng.uniform(1.5, 1.95, size=2)
    # Azimuths on a 15 deg grid (24 steps): orbits step by 105 deg = 7 steps, near-horizontal
    # views by 120 deg = 8 steps (as in the data).
    orbit = _orbit_starts(rng, 2 * num_chunks)
    flat = _flat_starts(rng, 2 * num_chunks)
    # In-plane rotation of the top and bottom views, different per chunk.
    pole = rng.permutation(24)
    chunks = []
    for c in range(num_chunks):
        views = [(15.0 * pole[c % 24] + 90.0, 90.0, r_orbit)]
        views += [(15.0 * (orbit[2 * c] + 7 * k), el_orbit, r_orbit) for k in range(4)]
        views += [(15.0 * (flat[2 * c] + 8 * k), el_flat, r_flat) for k in range(3)]
        views += [(15.0 * pole[c % 24] + 90.0, -90.0, r_orbit)]
        views += [(15.0 * (orbit[2 * c + 1] + 7 * k), el_orbit, r_orbit) for k in range(4)]
        views += [(15.0 * (flat[2 * c + 1] + 8 * k), el_flat, r_flat) for k in range(3)]
        assert len(views) == NUM_VIEWS
        rows = [
            _camera_row(look_at(((a + 180.0) % 360.0) - 180.0, e, r), resolution)
            for a, e, r in views
        ]
        chunks.append(np.stack(rows).astype(np.float32))
    return chunks


def chunk_cameras(seed: int, index: int, num_chunks: int, resolution: int) -> list[np.ndarray]:
    """The cameras `write_object` uses for object `index` of dataset `seed`."""
    return object_cameras(_camera_rng(seed, index), num_chunks, resolution)


def _camera_rng(seed: int, index: int) -> np.random.Generator:
    # A stream separate from make_object's, so that cameras and shapes vary independently.
    return np.random.default_rng([seed, index, 1])


def orbit_cameras(azimuths_deg, elevation_deg: float, radius: float, resolution: int) -> np.ndarray:
    """float32 [len(azimuths), 25] c.npy rows of cameras at one elevation and radius looking
    at the origin (fixed evaluation cameras, e.g. ga_jax.metrics.judges)."""
    rows = [_camera_row(look_at(a, elevation_deg, radius), resolution) for a in azimuths_deg]
    return np.stack(rows).astype(np.float32)
