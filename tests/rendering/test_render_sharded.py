"""Rendering inside a sharded step (issue 20): with a mesh context that splits batches, each
device composites the views of its own objects (ga_jax/rendering/render.py _per_device), for
every backend, with the same values and gradients as one device and no splat gathered."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.rendering import orbit_cameras, render_surfels
from ga_jax.rendering.scenes import random_surfels
from ga_jax.train.compile_report import collective_bytes
from kernels.config import TileConfig
from tests.rendering.exact_gradients import SURFEL_FIELDS

CFG = TileConfig(tile_size=8, chunk_size=8)
OBJECTS, VIEWS, SIZE = 8, 2, 16


def scene():
    keys = jax.random.split(jax.random.key(3), OBJECTS)
    surfels = jax.vmap(lambda k: random_surfels(k, 120, 3))(keys)
    cams = orbit_cameras(VIEWS, SIZE, SIZE)
    cams = jax.tree.map(lambda x: jnp.broadcast_to(x, (OBJECTS,) + x.shape), cams)
    return surfels, cams


def loss_and_grads(backend, mesh=None):
    """(loss, gradients w.r.t. the surfels, compiled HLO) of a render loss, on `mesh` with
    the batch split over its ('data', 'fsdp') axes, or on one device."""

    def loss(surfels, cams):
        out = render_surfels(surfels, cams, jnp.array([0.1, 0.2, 0.3]), backend=backend, config=CFG)
        return jnp.sum(out.rgb**2) + jnp.sum(out.alpha * out.depth) + jnp.sum(out.normal_cam)

    surfels, cams = scene()
    fn = jax.jit(jax.value_and_grad(loss))
    if mesh is None:
        return *fn(surfels, cams), None
    with rules_context(mesh, None):
        split = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
        surfels, cams = jax.device_put((surfels, cams), split)
        text = fn.lower(surfels, cams).compile().as_text()
        value, grads = fn(surfels, cams)
    return value, grads, text


@pytest.mark.parametrize("backend", ["native", "pallas", "xla"])
def test_each_device_renders_its_own_objects(backend):
    mesh = make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
    value, grads, text = loss_and_grads(backend, mesh)
    value_1, grads_1, _ = loss_and_grads(backend)
    np.testing.assert_allclose(value, value_1, rtol=1e-5)
    for name in SURFEL_FIELDS:
        a, b = np.asarray(getattr(grads, name)), np.asarray(getattr(grads_1, name))
        assert np.max(np.abs(a - b)) <= 1e-5 * max(np.max(np.abs(b)), 1e-12), name
    # Nothing is gathered: the only collective left sums the scalar loss.
    totals = collective_bytes(text)
    for op in ("all-gather", "all-to-all", "collective-permute", "reduce-scatter"):
        assert totals[op]["count"] == 0, (op, totals)
    if backend == "native":  # the FFI kernel composites this device's views only
        local_views = OBJECTS * VIEWS // mesh.size
        calls = [line for line in text.splitlines() if "custom-call(" in line]
        assert calls
        for line in calls:
            leading = {int(m) for m in re.findall(r"f32\[(\d+),", line.split("custom-call(")[0])}
            assert leading == {local_views}, line[:200]
