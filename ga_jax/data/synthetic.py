"""Synthetic G-buffer dataset: procedural primitives rendered exactly into the Objaverse format.

Every file is written in exactly the format that `ga_jax.data.gbuffer.read_chunk` and
`read_ply_points` read for the real data (DESIGN.md section 1), so that training, tests and
demos run offline on data made on the fly.

Layout (for `generate_dataset(out=DIR, ...)`, CLI `python -m launch.make_synthetic`):

    DIR/dataset.json                      {class: [chunk paths relative to DIR]}, like the data
    DIR/synthetic.json                    the generator's arguments (provenance only)
    DIR/<class>/<group>/<id>/<chunk>/     one chunk: raw_img.jpg alpha.jpg normal.png
                                          depth.npz c.npy caption.txt ins.txt
    DIR_fps/<class>/<group>/<id>/fps-4096.ply
                                          the FPS cloud; a separate root beside DIR (as
                                          objaverse_fps beside objaverse_gbuffer), so
                                          `python -m launch.check_data --gbuffer_root=DIR
                                          --fps_root=DIR_fps` checks a synthetic set

`<class>` is the shape (sphere, cube, box, cylinder, cone, torus) or `composition` (two parts),
`<group>` is `index // 1000`, `<id>` the object index, `<chunk>` runs 1..num_chunks, and the
instance id in ins.txt is `<class>/<group>/<id>` (like `Animals/0/10017`).

Chunk files (V = 16 views of H x H pixels, tiled horizontally):
  raw_img.jpg  straight (not premultiplied) colour over white: stored = c * a + (1 - a)
  alpha.jpg    soft alpha: the fraction of S x S sub-pixel rays that hit (anti-aliased edges)
  normal.png   world normal n encoded as rgb = round(255 (m + 1) / 2) with m = (-n.x, n.z, -n.y),
               the inverse of the reader's decoding; the background encodes (0, -1, 0)
  depth.npz    `depth` float32 [V, H, H] camera z-depth of the hit, 0 on the background; at
               edge pixels the mean over sub-samples with 0 for misses (~ alpha * z, as in the
               data)
  c.npy        float32 [V, 25]: row-major OpenCV cam2world (x right, y down, +z forward, world
               z-up), then K normalised by the image size (fx = fy = 25/18 ~ 1.3889,
               cx = cy = 0.5, K[2, 2] = 1/H as in the data)
  caption.txt, ins.txt (no trailing newline, as in the data)

Camera layout per chunk (copied from the data's c.npy): every camera looks at the origin with
right = (-sin az, cos az, 0) and down = forward x right. Per object: orbit elevation
U(8, 22) deg, near-horizontal elevation an integer in [-3, 1] deg, and two radii in
U(1.5, 1.95) (orbit and top/bottom views share one, near-horizontal views use the other).
View 0 top, 1-4 orbit (azimuths a, a+105, a+210, a+315), 5-7 near-horizontal (b, b+120,
b+240), 8 bottom, 9-12 orbit, 13-15 near-horizontal. Start azimuths lie on a 15 deg grid and
are drawn so that, for up to 3 chunks, no orbit or near-horizontal view repeats between the
chunks of an object (3 chunks use all 24 orbit azimuths); the in-plane rotation of the
top/bottom views also changes per chunk.

Objects and captions (all inside [-0.45, 0.45]^3, centred on their bounding box):
  single part (75%): "a {size} {colour} {shape}", size small/medium/large = the largest
      half-extent of the bounding box 0.2 / 0.3 / 0.42 (+-0.02); random rotation about z and,
      for half of the objects, a random tilt of the shape's axis up to 90 deg.
  composition (25%): "a {colour} {top} on a {colour} {bottom}" (two different colours),
      bottom in {cube, box, cylinder} (a flat top), top in {sphere, cube, cylinder, cone,
      torus}, both upright, the top part sunk slightly into the bottom one so that the
      contact faces are strictly inside the union (no coplanar faces).
  "a" becomes "an" before a vowel ("an orange cone").
  Object i's content depends only on (seed, i) (numpy SeedSequence([seed, i])).

What is exact: rays are cast analytically against the primitives (closed-form quadratics for
the sphere and the cylinder / cone sides, slabs for boxes, planes for caps). For the torus, a few
sphere-tracing steps with its exact SDF approach the surface from the bounding sphere without
crossing it; from there the quartic is monotone between the roots of its derivative (a cubic,
solved in closed form), which brackets the first root; bisection on the quartic's sign (in a
factored form without cancellation) and a Newton polish on the SDF finish it, and a hit is
accepted only when |SDF| < 1e-5. Against a float64 quartic solve: no hit/miss disagreement in
~10^5 random rays, depth error ~1e-6 (<= 3e-5 for grazing rays). Normals are the analytic
gradients at the hit, depth is t * (camera z of the unit ray). Rendering runs in float32 (JAX,
jitted once per process). Pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).
Shading: colour = albedo * min(1, ambient + key light from above + head light), Lambertian.
Anti-aliasing is adaptive: every pixel's centre ray is cast; pixels whose 3x3 neighbourhood
changes hit/miss, part, or jumps in depth are re-rendered with S x S (default 4 x 4) stratified
sub-pixel rays: colour and alpha are their means; depth and normal stay the centre ray's exact
values where all sub-samples hit (every alpha = 1 pixel unprojects exactly onto the surface)
and are blended only where the pixel is partially covered. Features thinner than a pixel that
no centre ray hits are therefore missed.
FPS clouds: points are drawn exactly on the analytic surfaces (area-weighted over parts and
faces, in float64), points strictly inside another part are dropped (only the outer surface of
a composition remains), then farthest point sampling (ga_jax.data.fps) picks 4096 of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.gbuffer import write_ply_points

__all__ = [
    "COLOURS",
    "KINDS",
    "SIZES",
    "Part",
    "SyntheticObject",
    "chunk_cameras",
    "encode_normals",
    "fps_root_for",
    "generate_dataset",
    "look_at",
    "make_object",
    "object_cameras",
    "part_inside",
    "render_views",
    "sample_surface",
    "write_object",
]

# Primitive kinds; the index is the branch of the jitted ray caster.
KINDS = ("sphere", "box", "cylinder", "cone", "torus")
_KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
_NONE = len(KINDS)  # padding part: never hit

# Named albedos (display RGB in [0, 1]); white is left out (white background).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.30, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.55, 0.20, 0.75),
    "pink": (0.95, 0.45, 0.70),
    "cyan": (0.10, 0.80, 0.85),
    "brown": (0.50, 0.30, 0.12),
    "grey": (0.50, 0.50, 0.50),
    "black": (0.08, 0.08, 0.08),
}

# Largest half-extent of the object's bounding box per size word (+- 0.02 jitter).
SIZES: dict[str, float] = {"small": 0.2, "medium": 0.3, "large": 0.42}

SINGLE_SHAPES = ("sphere", "cube", "box", "cylinder", "cone", "torus")
BOTTOM_SHAPES = ("cube", "box", "cylinder")
TOP_SHAPES = ("sphere", "cube", "cylinder", "cone", "torus")
COMPOSITION_PROB = 0.25

NUM_VIEWS = 16
FOCAL = 25.0 / 18.0  # fx = fy normalised by the image size (FoV 39.6 deg), as in the data
FPS_POINTS = 4096
# Parts per object: compositions have two; the caster is compiled for exactly this many.
_MAX_PARTS = 2

# Shading (display space): ambient + key light from above + a head light so that the bottom
# view is not black.
_AMBIENT = 0.3
_KEY = 0.55
_HEAD = 0.35
_KEY_DIR = np.array([0.35, 0.25, 1.0]) / np.linalg.norm([0.35, 0.25, 1.0])

# Rays per call of the jitted caster: one compilation serves every resolution.
_RAY_BATCH = 1 << 13
_TORUS_STEPS = 16
_TORUS_BISECT = 26
_TORUS_POLISH = 2
_TORUS_ACCEPT = 1e-5
# A second difference of depth (metres) between neighbouring centre rays that marks a
# self-occlusion edge.
_DEPTH_EDGE = 0.02


# --------------------------------------------------------------------------------------------
# Object description


@dataclasses.dataclass(frozen=True, eq=False)
class Part:
    """One primitive in world space: p_world = rotation @ p_local + centre.

    Local shapes (all centred on the local origin):
      sphere    dims[0] = radius
      box       dims = half extents (x, y, z)
      cylinder  axis z, dims = (radius, half height, -)
      cone      axis z, base disc of radius dims[0] at z = -dims[1], apex at z = +dims[1]
      torus     axis z, dims = (major radius R, minor radius r, -)
    """

    kind: str
    centre: np.ndarray  # [3] float64
    rotation: np.ndarray  # [3, 3] float64, local -> world
    dims: np.ndarray  # [3] float64
    colour: str
    albedo: np.ndarray  # [3] float64 display RGB

    def scaled(self, scale: float, shift: np.ndarray) -> Part:
        """The part after p -> scale * (p + shift) (dims scale too)."""
        return dataclasses.replace(
            self, centre=scale * (self.centre + shift), dims=scale * self.dims
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticObject:
    """A procedural object: its parts, caption and ids (see the module docstring)."""

    index: int
    class_name: str
    caption: str
    parts: tuple[Part, ...]

    @property
    def instance_id(self) -> str:
        return f"{self.class_name}/{self.index // 1000}/{self.index}"


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _part_aabb(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Exact world bounding box (lo, hi) of a part under its rotation."""
    r, h = part.dims[0], part.dims[1]
    axis = part.rotation[:, 2]
    # Half-width of a disc of radius 1 with normal `axis`, per world coordinate.
    disc = np.sqrt(np.clip(1.0 - axis**2, 0.0, None))
    if part.kind == "sphere":
        return part.centre - r, part.centre + r
    if part.kind == "box":
        ext = np.abs(part.rotation) @ part.dims
        return part.centre - ext, part.centre + ext
    if part.kind == "cylinder":
        ext = h * np.abs(axis) + r * disc
        return part.centre - ext, part.centre + ext
    if part.kind == "cone":
        apex = part.centre + h * axis
        base = part.centre - h * axis
        return np.minimum(apex, base - r * disc), np.maximum(apex, base + r * disc)
    if part.kind == "torus":
        ext = r * disc + h
        return part.centre - ext, part.centre + ext
    raise ValueError(f"unknown part kind {part.kind!r}, expected one of {KINDS}")


def _local_shape(shape: str, rng: np.random.Generator) -> tuple[str, np.ndarray, float]:
    """(kind, dims, half height along local z) of a shape word at unit-ish size."""
    if shape == "sphere":
        return "sphere", np.array([1.0, 0.0, 0.0]), 1.0
    if shape == "cube":
        return "box", np.ones(3), 1.0
    if shape == "box":
        dims = np.array([1.0, rng.uniform(0.35, 0.8), rng.uniform(0.35, 0.8)])
        dims = rng.permutation(dims)
        return "box", dims, dims[2]
    if shape == "cylinder":
        h = rng.uniform(0.5, 1.4)
        return "cylinder", np.array([1.0, h, 0.0]), h
    if shape == "cone":
        h = rng.uniform(0.7, 1.4)
        return "cone", np.array([1.0, h, 0.0]), h
    if shape == "torus":
        r = rng.uniform(0.25, 0.45)
        return "torus", np.array([1.0, r, 0.0]), r
    raise ValueError(f"unknown shape {shape!r}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _albedo(rng: np.random.Generator, colour: str) -> np.ndarray:
    # A small jitter so that objects of one colour are not pixel-identical.
    jitter = rng.uniform(-0.04, 0.04, size=3)
    return np.clip(np.asarray(COLOURS[colour]) + jitter, 0.0, 1.0)


def make_object(seed: int, index: int) -> SyntheticObject:
    """The procedural object number `index` of dataset `seed` (a pure function of both)."""
    rng = np.random.default_rng([seed, index])
    colours = list(COLOURS)
    if rng.uniform() < COMPOSITION_PROB:
        bottom, top = _pick(rng, BOTTOM_SHAPES), _pick(rng, TOP_SHAPES)
        c_bottom, c_top = rng.choice(len(colours), size=2, replace=False)
        c_bottom, c_top = colours[c_bottom], colours[c_top]
        kb, db, hb = _local_shape(bottom, rng)
        kt, dt, ht = _local_shape(top, rng)
        # The top part is narrower than the bottom one: widths are dims[0] for round parts and
        # the smaller of x, y for boxes.
        width_b = min(db[0], db[1]) if kb == "box" else db[0]
        width_t = max(dt[0], dt[1]) if kt == "box" else dt[0] + (dt[1] if kt == "torus" else 0)
        s = width_b * rng.uniform(0.45, 0.85) / width_t
        dt, ht = dt * s, ht * s
        # Sink the top part a little so that contact faces are strictly inside the union.
        sink = 0.04 * ht if kt in ("sphere", "torus") else 0.02 * min(ht, hb)
        rot_b, rot_t = _rot_z(rng.uniform(0, 2 * np.pi)), _rot_z(rng.uniform(0, 2 * np.pi))
        parts = [
            Part(kb, np.zeros(3), rot_b, db, c_bottom, _albedo(rng, c_bottom)),
            Part(kt, np.array([0, 0, hb + ht - sink]), rot_t, dt, c_top, _albedo(rng, c_top)),
        ]
        target = rng.uniform(0.3, 0.42)
        class_name = "composition"
        caption = f"{_article(c_top)} {c_top} {top} on {_article(c_bottom)} {c_bottom} {bottom}"
    else:
        shape = _pick(rng, SINGLE_SHAPES)
        size = _pick(rng, tuple(SIZES))
        colour = _pick(rng, colours)
        kind, dims, _ = _local_shape(shape, rng)
        rotation = _rot_z(rng.uniform(0, 2 * np.pi))
        if rng.uniform() < 0.5:
            rotation = rotation @ _rot_x(rng.uniform(0, np.pi / 2))
        parts = [Part(kind, np.zeros(3), rotation, dims, colour, _albedo(rng, colour))]
        target = SIZES[size] + rng.uniform(-0.02, 0.02)
        class_name = shape
        caption = f"{_article(size)} {size} {colour} {shape}"
    # Centre the bounding box on the origin and scale its largest half-extent to `target`.
    boxes = [_part_aabb(p) for p in parts]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    scale = target / np.max((hi - lo) / 2)
    shift = -(lo + hi) / 2
    parts = tuple(p.scaled(scale, shift) for p in parts)
    return SyntheticObject(index=index, class_name=class_name, caption=caption, parts=parts)


# --------------------------------------------------------------------------------------------
# Cameras


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


# --------------------------------------------------------------------------------------------
# Ray casting (JAX, float32)


def _safe(x, eps=1e-12):
    import jax.numpy as jnp

    return jnp.where(jnp.abs(x) < eps, jnp.where(x < 0, -eps, eps), x)


# Vectors in the caster are tuples (x, y, z) of [N] arrays: every operation is elementwise, so
# XLA fuses each primitive into a few loops (no [N, 3] x [3, 3] dots, no strided columns).


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _axpy(t, d, o):
    """o + t d."""
    return (o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2])


def _normalise(v):
    import jax.numpy as jnp

    inv = 1.0 / jnp.maximum(jnp.sqrt(_dot(v, v)), 1e-12)
    return (v[0] * inv, v[1] * inv, v[2] * inv)


def _hit_sphere(o, d, dims):
    import jax.numpy as jnp

    r = dims[0]
    b = _dot(o, d)
    # r^2 - |closest approach|^2 instead of b^2 - c: no cancellation for a distant camera.
    q = _axpy(-b, d, o)
    disc = r * r - _dot(q, q)
    t = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
    ok = (disc >= 0) & (t > 0)
    p = _axpy(t, d, o)
    return jnp.where(ok, t, jnp.inf), (p[0] / r, p[1] / r, p[2] / r)


def _hit_box(o, d, dims):
    import jax.numpy as jnp

    lo, hi = [], []
    for k in range(3):
        inv = 1.0 / _safe(d[k])
        t1, t2 = (-dims[k] - o[k]) * inv, (dims[k] - o[k]) * inv
        lo.append(jnp.minimum(t1, t2))
        hi.append(jnp.maximum(t1, t2))
    tnear = jnp.maximum(jnp.maximum(lo[0], lo[1]), lo[2])
    tfar = jnp.minimum(jnp.minimum(hi[0], hi[1]), hi[2])
    ok = (tnear <= tfar) & (tnear > 0)
    # The entering face is the slab whose entry is the latest (first such axis on ties).
    x_face = lo[0] == tnear
    y_face = ~x_face & (lo[1] == tnear)
    z_face = ~x_face & ~y_face
    n = tuple(
        jnp.where(face, -jnp.sign(d[k]), 0.0) for k, face in enumerate((x_face, y_face, z_face))
    )
    return jnp.where(ok, tnear, jnp.inf), n


def _hit_cap(o, d, z, radius, ok_dir):
    """t of the plane z = const inside the disc of radius `radius` around the z axis."""
    import jax.numpy as jnp

    t = (z - o[2]) / _safe(d[2])
    px, py = o[0] + t * d[0], o[1] + t * d[1]
    ok = (t > 0) & (px * px + py * py <= radius * radius) & ok_dir
    return jnp.where(ok, t, jnp.inf)


def _hit_cylinder(o, d, dims):
    import jax.numpy as jnp

    r, h = dims[0], dims[1]
    a = _safe(d[0] * d[0] + d[1] * d[1])
    b = (o[0] * d[0] + o[1] * d[1]) / a
    qx, qy = o[0] - b * d[0], o[1] - b * d[1]
    disc = (r * r - qx * qx - qy * qy) / a
    t_side = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
    z_side = o[2] + t_side * d[2]
    t_side = jnp.where((disc >= 0) & (t_side > 0) & (jnp.abs(z_side) <= h), t_side, jnp.inf)
    t_top = _hit_cap(o, d, h, r, d[2] < 0)
    t_bot = _hit_cap(o, d, -h, r, d[2] > 0)
    t = jnp.minimum(t_side, jnp.minimum(t_top, t_bot))
    p = _axpy(t, d, o)
    side = t == t_side
    n = (
        jnp.where(side, p[0] / r, 0.0),
        jnp.where(side, p[1] / r, 0.0),
        jnp.where(side, 0.0, jnp.where(t == t_top, 1.0, -1.0)),
    )
    return t, n


def _hit_cone(o, d, dims):
    import jax.numpy as jnp

    r, h = dims[0], dims[1]
    k2 = (r / (2 * h)) ** 2
    w0 = h - o[2]  # distance below the apex
    # x^2 + y^2 = k^2 (h - z)^2  ->  A t^2 + 2 B t + C = 0.
    A = d[0] * d[0] + d[1] * d[1] - k2 * d[2] * d[2]
    B = o[0] * d[0] + o[1] * d[1] + k2 * w0 * d[2]
    C = o[0] * o[0] + o[1] * o[1] - k2 * w0 * w0
    disc = B * B - A * C
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    # Stable roots: q = -(B + sign(B) sqrt), t1 = q / A, t2 = C / q.
    q = -(B + jnp.where(B >= 0, sq, -sq))

    def valid(t):
        z = o[2] + t * d[2]
        return jnp.where((disc >= 0) & (t > 0) & (z >= -h) & (z <= h), t, jnp.inf)

    t_side = jnp.minimum(valid(q / _safe(A)), valid(C / _safe(q)))
    t_base = _hit_cap(o, d, -h, r, d[2] > 0)
    t = jnp.minimum(t_side, t_base)
    p = _axpy(t, d, o)
    g = _normalise((p[0], p[1], k2 * (h - p[2])))
    side = t == t_side
    n = (jnp.where(side, g[0], 0.0), jnp.where(side, g[1], 0.0), jnp.where(side, g[2], -1.0))
    return t, n


def _torus_sdf(p, big, small):
    import jax.numpy as jnp

    rho = jnp.sqrt(p[0] * p[0] + p[1] * p[1])
    return jnp.sqrt((rho - big) ** 2 + p[2] * p[2]) - small


def _torus_grad(p, big):
    import jax.numpy as jnp

    rho = jnp.maximum(jnp.sqrt(p[0] * p[0] + p[1] * p[1]), 1e-12)
    f = 1.0 - big / rho
    return _normalise((p[0] * f, p[1] * f, p[2]))


def _torus_sign_function(p, big, small):
    """(d_tube^2 - r^2) (|p|^2 + R^2 - r^2 + 2 R rho): the torus quartic, evaluated in the
    factored form that has no cancellation; its sign is the SDF's sign."""
    import jax.numpy as jnp

    rho = jnp.sqrt(p[0] * p[0] + p[1] * p[1])
    tube = (rho - big) ** 2 + p[2] * p[2] - small**2
    return tube * ((rho + big) ** 2 + p[2] * p[2] - small**2)


def _cubic_real_roots(b2, b1, b0):
    """The real roots of s^3 + b2 s^2 + b1 s + b0 as 3 arrays [N] (NaN where complex)."""
    import jax.numpy as jnp

    shift = b2 / 3.0
    p = b1 - b2 * shift
    q = 2.0 * shift**3 - shift * b1 + b0
    disc = (q / 2.0) ** 2 + (p / 3.0) ** 3
    # One real root (disc > 0): Cardano.
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    one = jnp.cbrt(-q / 2.0 + sq) + jnp.cbrt(-q / 2.0 - sq)
    # Three real roots (disc <= 0): the trigonometric form.
    m = 2.0 * jnp.sqrt(jnp.maximum(-p / 3.0, 0.0))
    arg = jnp.clip(3.0 * q / jnp.where(p < 0, p * m, -1.0), -1.0, 1.0)
    phi = jnp.arccos(arg) / 3.0
    single = disc > 0
    return tuple(
        jnp.where(single, one if k == 0 else jnp.nan, m * jnp.cos(phi - 2.0 * jnp.pi / 3.0 * k))
        - shift
        for k in range(3)
    )


def _sort3(a, b, c):
    import jax.numpy as jnp

    a, b = jnp.minimum(a, b), jnp.maximum(a, b)
    b, c = jnp.minimum(b, c), jnp.maximum(b, c)
    a, b = jnp.minimum(a, b), jnp.maximum(a, b)
    return a, b, c


def _hit_torus(o, d, dims):
    """First hit of the torus (axis z, major R = dims[0], minor r = dims[1]).

    1. Sphere-trace the exact SDF from the bounding sphere's entry (never crosses the
       surface): t0 is before the first root, and the shifted quartic below has small
       coefficients.
    2. With t = t0 + s, the quartic q(s) = s^4 + 4b s^3 + c2 s^2 + c1 s + c0 is monotone
       between the roots of its derivative (a cubic, closed form): the first of those
       critical points (or the bounding sphere's exit) where q <= 0 brackets the first root.
    3. Bisect the bracket on the sign of the factored quartic, then Newton-polish on the SDF.
    Rays that graze the torus so closely that the quartic's dip is below float32 resolution
    are misses.
    """
    import jax
    import jax.numpy as jnp

    big, small = dims[0], dims[1]
    b = _dot(o, d)
    q = _axpy(-b, d, o)
    disc = (big + small) ** 2 - _dot(q, q)
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    t_in = jnp.maximum(-b - sq, 0.0)
    t_out = -b + sq

    def march(_, t):
        step = _torus_sdf(_axpy(t, d, o), big, small)
        return jnp.minimum(t + jnp.maximum(step, 0.0), t_out)

    t0 = jax.lax.fori_loop(0, _TORUS_STEPS, march, t_in)
    p0 = _axpy(t0, d, o)
    span = jnp.maximum(t_out - t0, 0.0)
    # Quartic coefficients in s (|d| = 1): A(s) = s^2 + 2 bb s + G, rho^2 = e2 s^2 + 2 e1 s + e0.
    bb = _dot(p0, d)
    g = _dot(p0, p0) + big**2 - small**2
    e2 = d[0] * d[0] + d[1] * d[1]
    e1 = p0[0] * d[0] + p0[1] * d[1]
    c2 = 4.0 * bb * bb + 2.0 * g - 4.0 * big**2 * e2
    c1 = 4.0 * bb * g - 8.0 * big**2 * e1
    # q'(s) / 4 = s^3 + 3 bb s^2 + c2 / 2 s + c1 / 4.
    crit = _cubic_real_roots(3.0 * bb, c2 / 2.0, c1 / 4.0)
    crit = [jnp.where(jnp.isfinite(c), jnp.clip(c, 0.0, span), span) for c in crit]
    ends = (*_sort3(*crit), span)
    inside = [_torus_sign_function(_axpy(s, d, p0), big, small) <= 0 for s in ends]
    start_inside = _torus_sign_function(p0, big, small) <= 0
    # The first end point inside brackets the first root with the end point before it.
    lo, hi = jnp.zeros_like(span), span
    found = start_inside
    for k in range(4):
        take = inside[k] & ~found
        hi = jnp.where(take, ends[k], hi)
        lo = jnp.where(take, ends[k - 1] if k > 0 else 0.0, lo)
        found = found | inside[k]
    lo = jnp.where(start_inside, 0.0, lo)
    hi = jnp.where(start_inside, 0.0, hi)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        out = _torus_sign_function(_axpy(mid, d, p0), big, small) > 0
        return jnp.where(out, mid, lo), jnp.where(out, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _TORUS_BISECT, bisect, (lo, hi))
    t = t0 + 0.5 * (lo + hi)

    def polish(_, t):
        p = _axpy(t, d, o)
        slope = _dot(_torus_grad(p, big), d)
        step = _torus_sdf(p, big, small) / jnp.where(slope < -1e-3, slope, -1e-3)
        # The bracket is already tight: a step larger than 1e-4 means a near-tangent ray
        # where Newton is unreliable, so keep the bisection's answer there.
        return jnp.where(jnp.abs(step) < 1e-4, t - step, t)

    t = jax.lax.fori_loop(0, _TORUS_POLISH, polish, t)
    p = _axpy(t, d, o)
    ok = found & (disc >= 0) & (t > 0)
    ok &= jnp.abs(_torus_sdf(p, big, small)) < _TORUS_ACCEPT
    return jnp.where(ok, t, jnp.inf), _torus_grad(p, big)


def _hit_none(o, d, dims):
    import jax.numpy as jnp

    del d, dims
    zero = jnp.zeros_like(o[0])
    return jnp.full_like(o[0], jnp.inf), (zero, zero, zero)


@functools.cache
def _caster() -> Callable:
    """The jitted ray caster (built lazily so that importing this module stays cheap)."""
    import jax
    import jax.numpy as jnp

    branches = [_hit_sphere, _hit_box, _hit_cylinder, _hit_cone, _hit_torus, _hit_none]

    @jax.jit
    def cast(kinds, centres, rotations, dims, albedos, origins, dirs):
        """Nearest hit of rays (origins, dirs [3, N]) with the union of parts; returns t [N]
        (inf = miss), part [N] (-1 = miss), world normal [3, N], shaded colour [3, N]."""
        wo = (origins[0], origins[1], origins[2])
        wd = (dirs[0], dirs[1], dirs[2])
        best_t = jnp.full_like(wo[0], jnp.inf)
        best_n = (jnp.zeros_like(wo[0]),) * 3
        best_part = jnp.full(wo[0].shape, -1, jnp.int32)
        for i in range(kinds.shape[0]):
            rot = rotations[i]
            rel = tuple(wo[k] - centres[i, k] for k in range(3))
            # World -> local: p_local[j] = sum_k p[k] rot[k, j]; the direction stays unit.
            o = tuple(_dot(rel, (rot[0, j], rot[1, j], rot[2, j])) for j in range(3))
            d = tuple(_dot(wd, (rot[0, j], rot[1, j], rot[2, j])) for j in range(3))
            t, n = jax.lax.switch(kinds[i], branches, o, d, dims[i])
            n = tuple(_dot(n, (rot[j, 0], rot[j, 1], rot[j, 2])) for j in range(3))
            closer = t < best_t
            best_t = jnp.where(closer, t, best_t)
            best_n = tuple(jnp.where(closer, n[k], best_n[k]) for k in range(3))
            best_part = jnp.where(closer, i, best_part)
        light = (
            _AMBIENT
            + _KEY * jnp.maximum(_dot(best_n, tuple(float(x) for x in _KEY_DIR)), 0.0)
            + _HEAD * jnp.maximum(-_dot(best_n, wd), 0.0)
        )
        light = jnp.minimum(light, 1.0)
        # _MAX_PARTS = 2: select the albedo rather than gather.
        colour = jnp.stack(
            [jnp.where(best_part == 1, albedos[1, k], albedos[0, k]) * light for k in range(3)]
        )
        return best_t, best_part, jnp.stack(best_n), colour

    return cast


def _scene_arrays(obj: SyntheticObject, max_parts: int = _MAX_PARTS) -> tuple[np.ndarray, ...]:
    """Pads the parts to `max_parts` so that one compiled caster serves every object."""
    if len(obj.parts) > max_parts:
        raise ValueError(f"object {obj.index}: {len(obj.parts)} parts, at most {max_parts}")
    kinds = np.full(max_parts, _NONE, np.int32)
    centres = np.zeros((max_parts, 3), np.float32)
    rotations = np.tile(np.eye(3, dtype=np.float32), (max_parts, 1, 1))
    dims = np.ones((max_parts, 3), np.float32)
    albedos = np.zeros((max_parts, 3), np.float32)
    for i, p in enumerate(obj.parts):
        kinds[i] = _KIND_INDEX[p.kind]
        centres[i], rotations[i], dims[i], albedos[i] = p.centre, p.rotation, p.dims, p.albedo
    return kinds, centres, rotations, dims, albedos


def _bounding_radius(part: Part) -> float:
    """Radius of a sphere around part.centre that holds the part."""
    r, h = part.dims[0], part.dims[1]
    if part.kind == "sphere":
        return float(r)
    if part.kind == "box":
        return float(np.linalg.norm(part.dims))
    if part.kind in ("cylinder", "cone"):
        return float(np.hypot(r, h))
    return float(r + h)  # torus


def _cast_rays(
    obj: SyntheticObject, origins: np.ndarray, dirs: np.ndarray, near: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t [N] (inf = miss), part [N] (-1 = miss), world normal [N, 3], colour [N, 3] of rays
    [N, 3]. Only the `near` rays (those that meet a part's bounding sphere) are cast, through
    the jitted caster in fixed-size batches (one compilation for every resolution and
    object); the others are misses."""
    n = origins.shape[0]
    idx = np.nonzero(near)[0]
    t = np.full(n, np.inf, np.float32)
    part_id = np.full(n, -1, np.int32)
    normal = np.zeros((n, 3), np.float32)
    colour = np.zeros((n, 3), np.float32)
    cast = _caster()
    scene = _scene_arrays(obj)
    for start in range(0, len(idx), _RAY_BATCH):
        sel = idx[start : start + _RAY_BATCH]
        o, d = origins[sel], dirs[sel]
        pad = _RAY_BATCH - len(sel)
        if pad:
            o = np.concatenate([o, np.zeros((pad, 3), np.float32)])
            d = np.concatenate([d, np.tile(np.float32([[0, 0, 1]]), (pad, 1))])
        tt, pp, nn, cc = (np.asarray(x) for x in cast(*scene, o.T.copy(), d.T.copy()))
        n_sel = len(sel)
        t[sel], part_id[sel] = tt[:n_sel], pp[:n_sel]
        normal[sel], colour[sel] = nn[:, :n_sel].T, cc[:, :n_sel].T
    return t, part_id, normal, colour


def _pixel_rays(
    obj: SyntheticObject,
    cameras: np.ndarray,
    views: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    resolution: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World origins, unit directions, camera-z of the unit directions and the `near` mask
    (the ray meets a part's bounding sphere) of rays through image points (xs, ys) in pixels
    of views `views` (all [N], views sorted ascending)."""
    cam2world = cameras[:, :16].reshape(-1, 4, 4).astype(np.float64)
    k = cameras[:, 16:].reshape(-1, 3, 3).astype(np.float64)
    origins = np.empty((len(views), 3), np.float32)
    dirs = np.empty((len(views), 3), np.float32)
    cz = np.empty(len(views), np.float64)
    near = np.zeros(len(views), bool)
    bounds = np.searchsorted(views, np.arange(cameras.shape[0] + 1))
    for v in range(cameras.shape[0]):
        sl = slice(bounds[v], bounds[v + 1])
        if sl.start == sl.stop:
            continue
        fx, fy = k[v, 0, 0] * resolution, k[v, 1, 1] * resolution
        cx, cy = k[v, 0, 2] * resolution, k[v, 1, 2] * resolution
        cam = np.stack([(xs[sl] - cx) / fx, (ys[sl] - cy) / fy, np.ones(sl.stop - sl.start)], -1)
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        world = cam @ cam2world[v, :3, :3].T
        dirs[sl] = world
        origins[sl] = cam2world[v, :3, 3]
        cz[sl] = cam[:, 2]
        # A ray from o meets the sphere (c, rho) iff its angle to c - o is at most
        # asin(rho / |c - o|): one dot product per ray and part.
        for part in obj.parts:
            rel = part.centre - cam2world[v, :3, 3]
            dist = np.linalg.norm(rel)
            rho = _bounding_radius(part) * 1.001 + 1e-6
            if dist <= rho:
                near[sl] = True
                continue
            near[sl] |= world @ (rel / dist) >= np.sqrt(1.0 - (rho / dist) ** 2) - 1e-6
    return origins, dirs, cz, near


def _neighbourhood_edges(label: np.ndarray, z: np.ndarray) -> np.ndarray:
    """bool [V, H, W]: pixels to supersample.

    A pixel is an edge when its 3x3 neighbourhood changes label (miss / part), which covers
    both sides of every silhouette and part boundary, or when it sits at a depth
    discontinuity of one part (a self-occlusion, e.g. a torus's inner rim): there the second
    difference of the depth along a row or column exceeds _DEPTH_EDGE, which a smooth surface
    (first differences can be large on slanted faces) does not reach away from silhouettes.
    """
    v, h, w = label.shape
    lab = np.pad(label, ((0, 0), (1, 1), (1, 1)), mode="edge")
    edge = np.zeros(label.shape, bool)
    for di in range(3):
        for dj in range(3):
            edge |= lab[:, di : di + h, dj : dj + w] != label
    zz = np.pad(z, ((0, 0), (1, 1), (1, 1)), mode="edge")
    # Only within one part (label changes are handled above; the background's 0 is no depth).
    same_row = (lab[:, 1:-1, :-2] == label) & (lab[:, 1:-1, 2:] == label) & (label >= 0)
    same_col = (lab[:, :-2, 1:-1] == label) & (lab[:, 2:, 1:-1] == label) & (label >= 0)
    rows = same_row & (np.abs(zz[:, 1:-1, :-2] - 2 * z + zz[:, 1:-1, 2:]) > _DEPTH_EDGE)
    cols = same_col & (np.abs(zz[:, :-2, 1:-1] - 2 * z + zz[:, 2:, 1:-1]) > _DEPTH_EDGE)
    jump = rows | cols
    # Both pixels of a jump, as for label changes.
    jump[:, :, 1:] |= rows[:, :, :-1]
    jump[:, :, :-1] |= rows[:, :, 1:]
    jump[:, 1:] |= cols[:, :-1]
    jump[:, :-1] |= cols[:, 1:]
    return edge | jump


def render_views(
    obj: SyntheticObject, cameras: np.ndarray, resolution: int, supersample: int = 4
) -> dict[str, np.ndarray]:
    """Render views of an object with c.npy rows `cameras` [V, 25] at H = W = resolution.

    Returns float32 arrays: `rgb` [V, H, W, 3] straight colour over white (c a + 1 - a),
    `alpha` [V, H, W], `depth` [V, H, W] z-depth (0 background, ~alpha * z at edges),
    `normal` [V, H, W, 3] unit world normals ((0, -1, 0) on the background). Pixel (i, j)
    has its centre at (j + 0.5, i + 0.5). Edge pixels (see the module docstring) average
    supersample^2 stratified rays for colour and alpha; their depth and normal are the centre
    ray's where all sub-samples hit and blended otherwise.
    """
    cameras = np.asarray(cameras, np.float32)
    num_views, size = cameras.shape[0], resolution
    vv, ii, jj = np.meshgrid(np.arange(num_views), np.arange(size), np.arange(size), indexing="ij")
    vv, ii, jj = vv.reshape(-1), ii.reshape(-1), jj.reshape(-1)
    origins, dirs, cz, near = _pixel_rays(obj, cameras, vv, jj + 0.5, ii + 0.5, size)
    t, part, normal, colour = _cast_rays(obj, origins, dirs, near)
    hit = np.isfinite(t)
    z = np.where(hit, t * cz, 0.0)
    alpha = hit.astype(np.float64)
    premult = colour * hit[:, None]
    normal = np.where(hit[:, None], normal, 0.0).astype(np.float64)

    shape = (num_views, size, size)
    edge = _neighbourhood_edges(part.reshape(shape), z.reshape(shape)).reshape(-1)
    idx = np.nonzero(edge)[0]
    if idx.size:
        s = supersample
        offsets = (np.arange(s) + 0.5) / s
        ox, oy = np.meshgrid(offsets, offsets, indexing="xy")
        ox, oy = ox.reshape(-1), oy.reshape(-1)
        sv = np.repeat(vv[idx], s * s)
        sx = (jj[idx][:, None] + ox[None, :]).reshape(-1)
        sy = (ii[idx][:, None] + oy[None, :]).reshape(-1)
        o2, d2, cz2, near2 = _pixel_rays(obj, cameras, sv, sx, sy, size)
        t2, _, n2, c2 = _cast_rays(obj, o2, d2, near2)
        hit2 = np.isfinite(t2)
        m = len(idx)
        cover = hit2.reshape(m, -1).mean(1)
        premult[idx] = (c2 * hit2[:, None]).reshape(m, s * s, 3).mean(1)
        # Depth and normal stay those of the exact centre ray where the pixel is fully covered
        # (so that every alpha = 1 pixel unprojects onto the surface); partially covered pixels
        # blend like the data: depth = mean over sub-samples with 0 for misses (~alpha * z),
        # normal = the normalised mean of the hit normals.
        keep = (cover < 1) | ~hit[idx]
        partial = idx[keep]
        alpha[idx] = cover
        z[partial] = np.where(hit2, t2 * cz2, 0.0).reshape(m, -1).mean(1)[keep]
        normal[partial] = np.where(hit2[:, None], n2, 0.0).reshape(m, s * s, 3).sum(1)[keep]
    norm = np.linalg.norm(normal, axis=-1, keepdims=True)
    background = np.array([0.0, -1.0, 0.0])
    normal = np.where(norm > 1e-8, normal / np.maximum(norm, 1e-8), background)
    rgb = premult + (1.0 - alpha)[:, None]
    return {
        "rgb": rgb.reshape(shape + (3,)).astype(np.float32),
        "alpha": alpha.reshape(shape).astype(np.float32),
        "depth": z.reshape(shape).astype(np.float32),
        "normal": normal.reshape(shape + (3,)).astype(np.float32),
    }


# --------------------------------------------------------------------------------------------
# Surface sampling (numpy, float64)


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


# --------------------------------------------------------------------------------------------
# Files


def encode_normals(normal: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] PNG values of world normals [..., 3]: the inverse of the reader's
    n = (-m.x, -m.z, m.y) with m = 2 rgb / 255 - 1, i.e. m = (-n.x, n.z, -n.y)."""
    n = np.asarray(normal, np.float64)
    m = np.stack([-n[..., 0], n[..., 2], -n[..., 1]], -1)
    return np.clip(np.round((m + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _tile(views: np.ndarray) -> np.ndarray:
    """[V, H, W, ...] -> [H, V*W, ...] (view v = columns v*W .. v*W + W - 1)."""
    return np.concatenate(list(views), axis=1)


def _write_chunk(
    path: Path, views: dict[str, np.ndarray], cameras: np.ndarray, caption: str, ins: str
) -> None:
    path.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint8(_tile(views["rgb"])), "RGB").save(
        path / "raw_img.jpg", quality=95, subsampling=0
    )
    Image.fromarray(_to_uint8(_tile(views["alpha"])), "L").save(path / "alpha.jpg", quality=95)
    Image.fromarray(encode_normals(_tile(views["normal"])), "RGB").save(path / "normal.png")
    np.savez_compressed(path / "depth.npz", depth=views["depth"].astype(np.float32))
    np.save(path / "c.npy", cameras.astype(np.float32))
    (path / "caption.txt").write_text(caption, encoding="utf-8")
    (path / "ins.txt").write_text(ins, encoding="utf-8")


def fps_root_for(out: str | os.PathLike) -> Path:
    """The FPS root beside a G-buffer root: DIR -> DIR_fps."""
    out = Path(out)
    return out.with_name(out.name + "_fps")


def write_object(
    seed: int,
    index: int,
    out: str | os.PathLike,
    fps_out: str | os.PathLike,
    *,
    resolution: int = 128,
    num_chunks: int = 3,
    supersample: int = 4,
    fps_candidates: int = 3 * FPS_POINTS,
) -> tuple[str, list[str]]:
    """Render and write object `index` of dataset `seed`; returns (class, chunk paths
    relative to `out`). The FPS cloud goes to `fps_out/<ins>/fps-4096.ply`."""
    obj = make_object(seed, index)
    cams = chunk_cameras(seed, index, num_chunks, resolution)
    rel = []
    for c, cameras in enumerate(cams, start=1):
        views = render_views(obj, cameras, resolution, supersample)
        chunk = f"{obj.instance_id}/{c}"
        _write_chunk(Path(out) / chunk, views, cameras, obj.caption, obj.instance_id)
        rel.append(chunk)
    points = sample_surface(obj, fps_candidates, np.random.default_rng([seed, index, 2]))
    chosen = farthest_point_sample(points, FPS_POINTS)
    ply = Path(fps_out) / obj.instance_id / "fps-4096.ply"
    ply.parent.mkdir(parents=True, exist_ok=True)
    write_ply_points(ply, points[chosen].astype(np.float32))
    return obj.class_name, rel


def _worker_init() -> None:
    # One XLA thread per worker: the pool already uses every core.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def _write_one(job: tuple) -> tuple[int, str, list[str]]:
    seed, index, out, fps_out, kwargs = job
    class_name, rel = write_object(seed, index, out, fps_out, **kwargs)
    return index, class_name, rel


def generate_dataset(
    out: str | os.PathLike,
    num_objects: int,
    *,
    seed: int = 0,
    resolution: int = 128,
    num_chunks: int = 3,
    supersample: int = 4,
    workers: int = 1,
    fps_out: str | os.PathLike | None = None,
    progress: bool = True,
    start: int = 0,
) -> dict[str, float]:
    """Write objects start .. start + num_objects - 1 of dataset `seed` (module docstring).

    `workers` > 1 renders objects in that many spawned processes (each compiles the caster
    once). Progress lines (objects done, objects/min, ETA) go to stderr. Returns timing
    stats: seconds, objects_per_minute.
    """
    if num_objects < 1 or resolution < 4 or num_chunks < 1 or supersample < 1 or workers < 1:
        raise ValueError(
            "expected num_objects >= 1, resolution >= 4, num_chunks >= 1, supersample >= 1, "
            f"workers >= 1; got {num_objects}, {resolution}, {num_chunks}, {supersample}, "
            f"{workers}"
        )
    out = Path(out)
    fps_out = Path(fps_out) if fps_out is not None else fps_root_for(out)
    out.mkdir(parents=True, exist_ok=True)
    fps_out.mkdir(parents=True, exist_ok=True)
    kwargs = {"resolution": resolution, "num_chunks": num_chunks, "supersample": supersample}
    jobs = [(seed, i, str(out), str(fps_out), kwargs) for i in range(start, start + num_objects)]
    results: dict[int, tuple[str, list[str]]] = {}
    t0 = last = time.perf_counter()
    reported = 0

    def report(done: int, final: bool = False) -> None:
        nonlocal last, reported
        now = time.perf_counter()
        if not progress or (not final and now - last < 2.0) or done == reported:
            return
        last, reported = now, done
        rate = done / max(now - t0, 1e-9) * 60
        eta = (num_objects - done) / max(rate, 1e-9) * 60
        print(
            f"[make_synthetic] {done}/{num_objects} objects, {rate:.1f} objects/min, "
            f"elapsed {now - t0:.0f} s, ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    if workers == 1:
        for job in jobs:
            index, class_name, rel = _write_one(job)
            results[index] = (class_name, rel)
            report(len(results))
    else:
        ctx = multiprocessing.get_context("spawn")  # fork after jax import is unsafe
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for index, class_name, rel in pool.imap_unordered(_write_one, jobs):
                results[index] = (class_name, rel)
                report(len(results))
    seconds = time.perf_counter() - t0
    report(len(results), final=True)

    index_file: dict[str, list[str]] = {}
    for i in sorted(results):
        class_name, rel = results[i]
        index_file.setdefault(class_name, []).extend(rel)
    (out / "dataset.json").write_text(json.dumps(dict(sorted(index_file.items())), indent=1))
    meta = {
        "generator": "ga_jax.data.synthetic",
        "seed": seed,
        "start": start,
        "num_objects": num_objects,
        "resolution": resolution,
        "num_chunks": num_chunks,
        "supersample": supersample,
        "fps_root": os.path.relpath(fps_out, out),
    }
    (out / "synthetic.json").write_text(json.dumps(meta, indent=1))
    return {"seconds": seconds, "objects_per_minute": num_objects / seconds * 60}
