"""Synthetic G-buffer dataset: procedural primitives rendered exactly into the Objaverse format.

Every file is written in exactly the format that `ga_jax.data.gbuffer.read_chunk` and
`ga_jax.data.ply.read_ply_points` read for the real data (DESIGN.md section 1), so that
training, tests and demos run offline on data made on the fly. CLI:
`python -m launch.make_synthetic`.

One module per job, in the order the generator uses them:

  objects.py    Part, SyntheticObject, make_object: the procedural objects (spheres, cubes,
                boxes, cylinders, cones, tori, two-part compositions) and their captions, from
                the colour / size / shape vocabularies; a pure function of (seed, index)
  cameras.py    look_at, object_cameras, chunk_cameras: the data's 16-view camera layout per
                chunk (c.npy rows), from the object's own random stream
  intersect.py  closed-form ray intersections of the sphere, box, cylinder and cone (JAX)
  torus.py      the torus's first hit: a bracketed root of its quartic (JAX)
  raycast.py    cast_rays: the jitted caster over an object's parts (nearest hit, part,
                analytic normal, shading), compiled once per process
  render.py     render_views: pixel rays, adaptive anti-aliasing (soft alpha at edges), the
                rgb / alpha / depth / normal maps of a chunk's views
  surface.py    part_inside, sample_surface: area-uniform points on the outer surface
  generate.py   write_object, generate_dataset, fps_root_for: the dataset layout, the FPS
                clouds and the worker processes

The chunk files themselves are written by ga_jax.data.gbuffer.write_chunk, beside the reader.
Rays are cast analytically against the primitives in float32 (JAX, jitted once per process);
surface points are sampled in float64. Object i's content depends only on (seed, i).
"""

from __future__ import annotations

from ga_jax.data.gbuffer import encode_normals
from ga_jax.data.synthetic.cameras import (
    FOCAL,
    NUM_VIEWS,
    chunk_cameras,
    look_at,
    object_cameras,
    orbit_cameras,
)
from ga_jax.data.synthetic.generate import (
    FPS_POINTS,
    fps_root_for,
    generate_dataset,
    write_object,
)
from ga_jax.data.synthetic.objects import (
    BOTTOM_SHAPES,
    COLOURS,
    COMPOSITION_PROB,
    KINDS,
    MAX_PARTS,
    SINGLE_SHAPES,
    SIZES,
    TOP_SHAPES,
    Part,
    SyntheticObject,
    make_object,
    rot_x,
    rot_z,
)
from ga_jax.data.synthetic.render import render_views
from ga_jax.data.synthetic.surface import part_inside, sample_surface

__all__ = [
    "BOTTOM_SHAPES",
    "COLOURS",
    "COMPOSITION_PROB",
    "FOCAL",
    "FPS_POINTS",
    "KINDS",
    "MAX_PARTS",
    "NUM_VIEWS",
    "SINGLE_SHAPES",
    "SIZES",
    "TOP_SHAPES",
    "Part",
    "SyntheticObject",
    "chunk_cameras",
    "encode_normals",
    "fps_root_for",
    "generate_dataset",
    "look_at",
    "make_object",
    "object_cameras",
    "orbit_cameras",
    "part_inside",
    "render_views",
    "rot_x",
    "rot_z",
    "sample_surface",
    "write_object",
]
