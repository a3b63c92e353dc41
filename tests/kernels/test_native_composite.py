"""The native (C++ XLA FFI) CPU compositor: what tests/kernels/test_composite.py (forward and
VJP against the dense oracle) does not cover: several views and tile sizes in one call, the
whole render's gradients against the XLA backend, determinism, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering import orbit_cameras, render_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels import native_composite
from kernels.config import TileConfig
from kernels.reference import composite_dense
from kernels.types import Splats
from tests.kernels.scenes import opaque_view, random_view
from tests.rendering.exact_gradients import assert_gradients_match, exact_gradient

pytestmark = pytest.mark.skipif(
    native_composite.available() is not None, reason=str(native_composite.available())
)


def _max_errors(out, ref):
    return {name: float(jnp.max(jnp.abs(getattr(out, name) - getattr(ref, name))))
            for name in out._fields}


@pytest.mark.parametrize("tile", [8, 16, 20, 32])
def test_views_and_tile_sizes_in_one_call(tile):
    """Three views with different scenes, an image size that no tile divides, D = 5; tile 20
    pads its rows to two 16-lane blocks."""
    cfg = TileConfig(tile_size=tile)
    h, w, d = 45, 38, 5
    opaque = opaque_view(2, h, w, cfg)  # 150 surfels, reaches the transmittance stop
    opaque = opaque._replace(colors=jnp.linspace(0, 1, 150 * d).reshape(150, d))
    views = [random_view(seed, 150, h, w, d, cfg) for seed in (0, 1)] + [opaque]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *views)
    bg = jnp.stack([jnp.full((d,), 0.2 * v) for v in range(3)])
    out, pairs = native_composite.composite_native_views(stacked, h, w, bg, cfg)
    assert pairs.shape == (3,) and bool(jnp.all(pairs > 0))
    for v in range(3):
        ref = composite_dense(views[v], h, w, bg[v], cfg)
        errors = _max_errors(jax.tree.map(lambda x, v=v: x[v], out), ref)
        assert max(errors.values()) <= 1e-5, errors


def test_render_gradients_match_xla_backend():
    """Gradients w.r.t. the surfels through projection and compositing, native and xla
    against the dense oracle (the scales against the exact float64 gradient:
    tests/rendering/exact_gradients.py); the loss values agree."""
    surfels = random_surfels(jax.random.key(3), 400)
    cams = orbit_cameras(3, 40, 48)
    weights = jax.random.normal(jax.random.key(4), (3, 40, 48, 3))

    def loss(s, c, backend):
        out = render_surfels(s, c, jnp.full((3,), 0.5, s.means.dtype), backend=backend)
        return (jnp.sum(out.rgb * weights.astype(out.rgb.dtype)) + jnp.sum(out.alpha)
                + jnp.sum(out.depth) + jnp.sum(out.normal_cam[..., 2])
                + 10.0 * jnp.sum(out.distortion))

    value_xla, g_xla = jax.value_and_grad(loss)(surfels, cams, "xla")
    value_nat, g_nat = jax.jit(jax.value_and_grad(loss), static_argnums=2)(surfels, cams, "native")
    np.testing.assert_allclose(value_nat, value_xla, rtol=1e-5)
    exact = exact_gradient(loss, surfels, cams)
    g_dense = jax.grad(loss)(surfels, cams, "dense")
    assert_gradients_match(g_xla, g_dense, exact)
    assert_gradients_match(g_nat, g_dense, exact)


def test_gradients_are_deterministic_and_thread_count_independent_forward(monkeypatch):
    """The same call twice gives bitwise equal gradients (fixed tile-to-thread assignment);
    the forward does not depend on the number of threads."""
    cfg = TileConfig()
    splats = jax.tree.map(lambda x: x[None], random_view(5, 300, 64, 64, 3, cfg))
    bg = jnp.zeros((1, 3))

    def loss(colors, opacities):
        s = splats._replace(colors=colors, opacities=opacities)
        out, _ = native_composite.composite_native_views(s, 64, 64, bg, cfg)
        return jnp.sum(out.color ** 2) + jnp.sum(out.depth)

    grad = jax.grad(loss, argnums=(0, 1))
    first = grad(splats.colors, splats.opacities)
    second = grad(splats.colors, splats.opacities)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("GA_JAX_NATIVE_THREADS", "1")
    one = native_composite.composite_native_views(splats, 64, 64, bg, cfg)[0]
    monkeypatch.setenv("GA_JAX_NATIVE_THREADS", "3")
    three = native_composite.composite_native_views(splats, 64, 64, bg, cfg)[0]
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


def test_grazing_ray_gradient_is_finite():
    """As tests/kernels/test_composite.py's XLA case: q_z ~ 1e-36 at the pixel centre."""
    cfg = TileConfig()
    transforms = jnp.array([[[1e-18, 0, 0], [0, 1e-18, 0], [0, 0, 1.0]]], jnp.float32)
    splats = Splats(
        means2d=jnp.array([[0.5, 0.5]]), transforms=transforms, depths=jnp.ones((1,)),
        normals=jnp.array([[0.0, 0.0, -1.0]]), opacities=jnp.array([0.9]),
        colors=jnp.ones((1, 3)), extents=jnp.array([[2.0, 2.0]]), valid=jnp.array([True]),
    )
    batch = jax.tree.map(lambda x: x[None], splats)

    def alpha_at_origin(t):
        out, _ = native_composite.composite_native_views(
            batch._replace(transforms=t), 4, 4, jnp.zeros((1, 3)), cfg)
        return out.alpha[0, 0, 0]

    np.testing.assert_allclose(alpha_at_origin(transforms[None]), 0.9, rtol=1e-6)
    assert np.all(np.isfinite(jax.grad(alpha_at_origin)(transforms[None])))


def test_missing_compiler_is_a_clear_import_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr(native_composite.shutil, "which", lambda name: None)
    with pytest.raises(ImportError, match="C\\+\\+ compiler.*available backends: xla"):
        native_composite.build(tmp_path / "lib.so")


def test_bad_settings_name_the_field(monkeypatch):
    splats = jax.tree.map(lambda x: x[None], random_view(6, 20, 16, 16))
    with pytest.raises(ValueError, match="tile_size"):
        native_composite.composite_native_views(splats, 16, 16, jnp.zeros((1, 3)),
                                                TileConfig(tile_size=65))
    monkeypatch.setenv("GA_JAX_NATIVE_THREADS", "zero")
    with pytest.raises(ValueError, match="GA_JAX_NATIVE_THREADS"):
        native_composite.composite_native_views(splats, 16, 16, jnp.zeros((1, 3)))


def test_no_surfels_shows_the_background():
    """N = 0: the kernel takes the view count from the images, not the (empty) splats."""
    empty = Splats(
        means2d=jnp.zeros((2, 0, 2)), transforms=jnp.zeros((2, 0, 3, 3)),
        depths=jnp.zeros((2, 0)), normals=jnp.zeros((2, 0, 3)), opacities=jnp.zeros((2, 0)),
        colors=jnp.zeros((2, 0, 3)), extents=jnp.zeros((2, 0, 2)),
        valid=jnp.zeros((2, 0), bool),
    )
    bg = jnp.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    out, pairs = native_composite.composite_native_views(empty, 20, 24, bg, TileConfig())
    np.testing.assert_array_equal(pairs, [0, 0])
    np.testing.assert_allclose(out.color, jnp.broadcast_to(bg[:, None, None], (2, 20, 24, 3)))
    for name in ("alpha", "depth", "median_depth", "normal", "distortion"):
        assert float(jnp.abs(getattr(out, name)).max()) == 0.0, name
