"""Closed-form ray intersections of the primitives in their local frames (JAX, float32).

Each `hit_<kind>(o, d, dims)` takes local ray origins o and unit directions d and a part's
dims (objects.Part) and returns (t, n): the distance to the first hit in front of the origin
(inf = miss) and the local unit normal there. Sphere, cylinder and cone sides are quadratics
solved without cancellation, boxes are slabs, caps are planes clipped to a disc. The torus,
the one quartic, is in torus.py.

Vectors here are tuples (x, y, z) of [N] arrays: every operation is elementwise, so XLA fuses
each primitive into a few loops (no [N, 3] x [3, 3] dots, no strided columns). jax is imported
inside the functions so that importing the package stays cheap.
"""

from __future__ import annotations

__all__ = [
    "axpy",
    "dot",
    "hit_box",
    "hit_cone",
    "hit_cylinder",
    "hit_none",
    "hit_sphere",
    "normalise",
    "safe",
]


def safe(x, eps=1e-12):
    """x moved away from 0 to +-eps (keeping its sign), for divisions."""
    import jax.numpy as jnp

    return jnp.where(jnp.abs(x) < eps, jnp.where(x < 0, -eps, eps), x)


def dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def axpy(t, d, o):
    """o + t d."""
    return (o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2])


def normalise(v):
    import jax.numpy as jnp

    inv = 1.0 / jnp.maximum(jnp.sqrt(dot(v, v)), 1e-12)
    return (v[0] * inv, v[1] * inv, v[2] * inv)


def hit_sphere(o, d, dims):
    import jax.numpy as jnp

    r = dims[0]
    b = dot(o, d)
    # r^2 - |closest approach|^2 instead of b^2 - c: no cancellation for a distant camera.
    q = axpy(-b, d, o)
    disc = r * r - dot(q, q)
    t = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
    ok = (disc >= 0) & (t > 0)
    p = axpy(t, d, o)
    return jnp.where(ok, t, jnp.inf), (p[0] / r, p[1] / r, p[2] / r)


def hit_box(o, d, dims):
    import jax.numpy as jnp

    lo, hi = [], []
    for k in range(3):
        inv = 1.0 / safe(d[k])
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

    t = (z - o[2]) / safe(d[2])
    px, py = o[0] + t * d[0], o[1] + t * d[1]
    ok = (t > 0) & (px * px + py * py <= radius * radius) & ok_dir
    return jnp.where(ok, t, jnp.inf)


def hit_cylinder(o, d, dims):
    import jax.numpy as jnp

    r, h = dims[0], dims[1]
    a = safe(d[0] * d[0] + d[1] * d[1])
    b = (o[0] * d[0] + o[1] * d[1]) / a
    qx, qy = o[0] - b * d[0], o[1] - b * d[1]
    disc = (r * r - qx * qx - qy * qy) / a
    t_side = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
    z_side = o[2] + t_side * d[2]
    t_side = jnp.where((disc >= 0) & (t_side > 0) & (jnp.abs(z_side) <= h), t_side, jnp.inf)
    t_top = _hit_cap(o, d, h, r, d[2] < 0)
    t_bot = _hit_cap(o, d, -h, r, d[2] > 0)
    t = jnp.minimum(t_side, jnp.minimum(t_top, t_bot))
    p = axpy(t, d, o)
    side = t == t_side
    n = (
        jnp.where(side, p[0] / r, 0.0),
        jnp.where(side, p[1] / r, 0.0),
        jnp.where(side, 0.0, jnp.where(t == t_top, 1.0, -1.0)),
    )
    return t, n


def hit_cone(o, d, dims):
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

    t_side = jnp.minimum(valid(q / safe(A)), valid(C / safe(q)))
    t_base = _hit_cap(o, d, -h, r, d[2] > 0)
    t = jnp.minimum(t_side, t_base)
    p = axpy(t, d, o)
    g = normalise((p[0], p[1], k2 * (h - p[2])))
    side = t == t_side
    n = (jnp.where(side, g[0], 0.0), jnp.where(side, g[1], 0.0), jnp.where(side, g[2], -1.0))
    return t, n


def hit_none(o, d, dims):
    """The padding part (objects with fewer than MAX_PARTS parts): never hit."""
    import jax.numpy as jnp

    del d, dims
    zero = jnp.zeros_like(o[0])
    return jnp.full_like(o[0], jnp.inf), (zero, zero, zero)
