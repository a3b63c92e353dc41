"""Casting rays through an object: the jitted caster over its parts, and the shading.

The caster takes world rays, moves them into each part's local frame, intersects them
analytically (intersect.py, torus.py) and keeps the nearest hit: its distance t, its part,
the world normal (the analytic gradient at the hit) and the shaded colour. Shading (display
space): colour = albedo * min(1, ambient + key light from above + head light), Lambertian.
It runs in float32 and is compiled once per process: parts are padded to MAX_PARTS and rays
go through in fixed-size batches, so one compilation serves every object and resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ga_jax.data.synthetic.intersect import (
    dot,
    hit_box,
    hit_cone,
    hit_cylinder,
    hit_none,
    hit_sphere,
)
from ga_jax.data.synthetic.objects import KINDS, MAX_PARTS, Part, SyntheticObject
from ga_jax.data.synthetic.torus import hit_torus

__all__ = ["bounding_radius", "cast_rays"]

_KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
_NONE = len(KINDS)  # padding part: never hit

# Shading (display space): ambient + key light from above + a head light so that the bottom
# view is not black.
_AMBIENT = 0.3
_KEY = 0.55
_HEAD = 0.35
_KEY_DIR = np.array([0.35, 0.25, 1.0]) / np.linalg.norm([0.35, 0.25, 1.0])

# Rays per call of the jitted caster: one compilation serves every resolution.
_RAY_BATCH = 1 << 13


@functools.cache
def _caster() -> Callable:
    """The jitted ray caster (built lazily so that importing this module stays cheap)."""
    import jax
    import jax.numpy as jnp

    # Indexed by _KIND_INDEX (the order of KINDS), then the padding part.
    branches = [hit_sphere, hit_box, hit_cylinder, hit_cone, hit_torus, hit_none]

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
            o = tuple(dot(rel, (rot[0, j], rot[1, j], rot[2, j])) for j in range(3))
            d = tuple(dot(wd, (rot[0, j], rot[1, j], rot[2, j])) for j in range(3))
            t, n = jax.lax.switch(kinds[i], branches, o, d, dims[i])
            n = tuple(dot(n, (rot[j, 0], rot[j, 1], rot[j, 2])) for j in range(3))
            closer = t < best_t
            best_t = jnp.where(closer, t, best_t)
            best_n = tuple(jnp.where(closer, n[k], best_n[k]) for k in range(3))
            best_part = jnp.where(closer, i, best_part)
        light = (
            _AMBIENT
            + _KEY * jnp.maximum(dot(best_n, tuple(float(x) for x in _KEY_DIR)), 0.0)
            + _HEAD * jnp.maximum(-dot(best_n, wd), 0.0)
        )
        light = jnp.minimum(light, 1.0)
        # MAX_PARTS = 2: select the albedo rather than gather.
        colour = jnp.stack(
            [jnp.where(best_part == 1, albedos[1, k], albedos[0, k]) * light for k in range(3)]
        )
        return best_t, best_part, jnp.stack(best_n), colour

    return cast


def _scene_arrays(obj: SyntheticObject, max_parts: int = MAX_PARTS) -> tuple[np.ndarray, ...]:
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


def bounding_radius(part: Part) -> float:
    """Radius of a sphere around part.centre that holds the part."""
    r, h = part.dims[0], part.dims[1]
    if part.kind == "sphere":
        return float(r)
    if part.kind == "box":
        return float(np.linalg.norm(part.dims))
    if part.kind in ("cylinder", "cone"):
        return float(np.hypot(r, h))
    return float(r + h)  # torus


def cast_rays(
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
