"""Procedural objects and their captions: a pure function of (seed, index).

Objects and captions (all inside [-0.45, 0.45]^3, centred on their bounding box):
  single part (75%): "a {size} {colour} {shape}", size small/medium/large = the largest
      half-extent of the bounding box 0.2 / 0.3 / 0.42 (+-0.02); random rotation about z and,
      for half of the objects, a random tilt of the shape's axis up to 90 deg.
  composition (25%): "a {colour} {top} on a {colour} {bottom}" (two different colours),
      bottom in {cube, box, cylinder} (a flat top), top in {sphere, cube, cylinder, cone,
      torus}, both upright, the top part anywhere on the bottom's top face (not only
      centred) and sunk slightly into it so that the contact faces are strictly inside the
      union (no coplanar faces).
  "a" becomes "an" before a vowel ("an orange cone").
  Object i's content depends only on (seed, i) (numpy SeedSequence([seed, i])).

`<class>` of an object (its directory in the dataset) is the shape word, or `composition`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BOTTOM_SHAPES",
    "COLOURS",
    "COMPOSITION_PROB",
    "KINDS",
    "MAX_PARTS",
    "SINGLE_SHAPES",
    "SIZES",
    "TOP_SHAPES",
    "Part",
    "SyntheticObject",
    "make_object",
    "rot_x",
    "rot_z",
]

# Primitive kinds; the index is the branch of the jitted ray caster.
KINDS = ("sphere", "box", "cylinder", "cone", "torus")

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

# Parts per object: compositions have two; the caster is compiled for exactly this many.
MAX_PARTS = 2


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


def rot_z(angle: float) -> np.ndarray:
    """float64 [3, 3] rotation by `angle` (radians) about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(angle: float) -> np.ndarray:
    """float64 [3, 3] rotation by `angle` (radians) about the x axis."""
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


def article(word: str) -> str:
    """The indefinite article before `word` in a caption."""
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
        rot_b, rot_t = rot_z(rng.uniform(0, 2 * np.pi)), rot_z(rng.uniform(0, 2 * np.pi))
        parts = [
            Part(kb, np.zeros(3), rot_b, db, c_bottom, _albedo(rng, c_bottom)),
            Part(kt, np.array([0, 0, hb + ht - sink]), rot_t, dt, c_top, _albedo(rng, c_top)),
        ]
        target = rng.uniform(0.3, 0.42)
        # The top part rests anywhere on the bottom's top face (its footprint circle inside
        # the face's inscribed circle), not only at its centre, so that an edit moving it
        # sideways stays within what the models were trained on.
        reach = 0.9 * max(width_b - s * width_t, 0.0) * np.sqrt(rng.uniform())
        angle = rng.uniform(0, 2 * np.pi)
        offset = reach * np.array([np.cos(angle), np.sin(angle), 0.0])
        parts[1] = dataclasses.replace(parts[1], centre=parts[1].centre + offset)
        class_name = "composition"
        caption = f"{article(c_top)} {c_top} {top} on {article(c_bottom)} {c_bottom} {bottom}"
    else:
        shape = _pick(rng, SINGLE_SHAPES)
        size = _pick(rng, tuple(SIZES))
        colour = _pick(rng, colours)
        kind, dims, _ = _local_shape(shape, rng)
        rotation = rot_z(rng.uniform(0, 2 * np.pi))
        if rng.uniform() < 0.5:
            rotation = rotation @ rot_x(rng.uniform(0, np.pi / 2))
        parts = [Part(kind, np.zeros(3), rotation, dims, colour, _albedo(rng, colour))]
        target = SIZES[size] + rng.uniform(-0.02, 0.02)
        class_name = shape
        caption = f"{article(size)} {size} {colour} {shape}"
    # Centre the bounding box on the origin and scale its largest half-extent to `target`.
    boxes = [_part_aabb(p) for p in parts]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    scale = target / np.max((hi - lo) / 2)
    shift = -(lo + hi) / 2
    parts = tuple(p.scaled(scale, shift) for p in parts)
    return SyntheticObject(index=index, class_name=class_name, caption=caption, parts=parts)
