"""Points on an object's outer surface (numpy, float64), for its FPS cloud.

Points are drawn exactly on the analytic surfaces, area-weighted over parts and faces; points
strictly inside another part are dropped (only the outer surface of a composition remains).
generate.py then picks FPS_POINTS of them by farthest point sampling (ga_jax.data.fps).
"""

from __future__ import annotations

import numpy as np

from ga_jax.data.synthetic.objects import Part, SyntheticObject

__all__ = ["part_inside", "sample_surface"]


def _to_local(part: Part, points: np.ndarray) -> np.ndarray:
    return (points - part.centre) @ part.rotation


def part_inside(part: Part, points: np.ndarray) -> np.ndarray:
    """bool [P]: world points [P, 3] strictly inside the solid part."""
    p = _to_local(part, np.asarray(points, np.float64))
    r, h = part.dims[0], part.dims[1]
    rho2 = p[:, 0] ** 2 + p[:, 1] ** 2
    if part.kind == "sphere":
        return np.sum(p * p, -1) < r * r
    if part.kind == "box":
        return np.all(np.abs(p) < part.dims, -1)
    if part.kind == "cylinder":
        return (rho2 < r * r) & (np.abs(p[:, 2]) < h)
    if part.kind == "cone":
        radius = r * (h - p[:, 2]) / (2 * h)
        return (p[:, 2] > -h) & (p[:, 2] < h) & (rho2 < radius**2)
    if part.kind == "torus":
        return (np.sqrt(rho2) - r) ** 2 + p[:, 2] ** 2 < h * h
    raise ValueError(f"unknown part kind {part.kind!r}")


def _part_area(part: Part) -> float:
    r, h = part.dims[0], part.dims[1]
    if part.kind == "sphere":
        return 4 * np.pi * r * r
    if part.kind == "box":
        a, b, c = part.dims
        return 8 * (a * b + b * c + c * a)
    if part.kind == "cylinder":
        return 2 * np.pi * r * 2 * h + 2 * np.pi * r * r
    if part.kind == "cone":
        return np.pi * r * np.hypot(r, 2 * h) + np.pi * r * r
    if part.kind == "torus":
        return 4 * np.pi**2 * r * h
    raise ValueError(f"unknown part kind {part.kind!r}")


def _disc(rng: np.random.Generator, n: int, radius: float, z: float) -> np.ndarray:
    rad = radius * np.sqrt(rng.uniform(size=n))
    ang = rng.uniform(0, 2 * np.pi, n)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang), np.full(n, z)], -1)


def _sample_local(part: Part, n: int, rng: np.random.Generator) -> np.ndarray:
    """n area-uniform points [n, 3] on the part's local surface."""
    r, h = part.dims[0], part.dims[1]
    if part.kind == "sphere":
        v = rng.normal(size=(n, 3))
        return r * v / np.linalg.norm(v, axis=-1, keepdims=True)
    if part.kind == "box":
        a = part.dims
        face_area = np.array([a[1] * a[2], a[0] * a[2], a[0] * a[1]])
        axis = rng.choice(3, size=n, p=face_area / face_area.sum())
        p = rng.uniform(-1, 1, size=(n, 3)) * a
        sign = rng.choice([-1.0, 1.0], size=n)
        p[np.arange(n), axis] = sign * a[axis]
        return p
    if part.kind == "cylinder":
        side = 2 * np.pi * r * 2 * h
        on_side = rng.uniform(size=n) < side / (side + 2 * np.pi * r * r)
        ang = rng.uniform(0, 2 * np.pi, n)
        p = np.stack([r * np.cos(ang), r * np.sin(ang), rng.uniform(-h, h, n)], -1)
        caps = _disc(rng, n, r, 0.0)
        caps[:, 2] = rng.choice([-h, h], size=n)
        return np.where(on_side[:, None], p, caps)
    if part.kind == "cone":
        slant = np.pi * r * np.hypot(r, 2 * h)
        on_side = rng.uniform(size=n) < slant / (slant + np.pi * r * r)
        # The lateral area element grows linearly with the distance w below the apex.
        w = 2 * h * np.sqrt(rng.uniform(size=n))
        rad = r * w / (2 * h)
        ang = rng.uniform(0, 2 * np.pi, n)
        p = np.stack([rad * np.cos(ang), rad * np.sin(ang), h - w], -1)
        return np.where(on_side[:, None], p, _disc(rng, n, r, -h))
    if part.kind == "torus":
        # Area element (R + r cos v) du dv: rejection-sample v.
        out = np.empty((0, 3))
        while len(out) < n:
            m = 2 * (n - len(out)) + 16
            v = rng.uniform(0, 2 * np.pi, m)
            keep = rng.uniform(0, r + h, m) < r + h * np.cos(v)
            v = v[keep]
            u = rng.uniform(0, 2 * np.pi, len(v))
            ring = r + h * np.cos(v)
            pts = np.stack([ring * np.cos(u), ring * np.sin(u), h * np.sin(v)], -1)
            out = np.concatenate([out, pts])
        return out[:n]
    raise ValueError(f"unknown part kind {part.kind!r}")


def sample_surface(obj: SyntheticObject, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [n, 3] area-uniform world points on the object's outer surface.

    Points of one part strictly inside another part (hidden contact faces) are dropped and the
    sampling is repeated until n points remain.
    """
    areas = np.array([_part_area(p) for p in obj.parts])
    out = np.empty((0, 3))
    while len(out) < n:
        m = 2 * (n - len(out)) + 64
        counts = rng.multinomial(m, areas / areas.sum())
        for i, (part, count) in enumerate(zip(obj.parts, counts)):
            pts = _sample_local(part, int(count), rng) @ part.rotation.T + part.centre
            for j, other in enumerate(obj.parts):
                if j != i:
                    pts = pts[~part_inside(other, pts)]
            out = np.concatenate([out, pts])
    return out[rng.permutation(len(out))[:n]]
