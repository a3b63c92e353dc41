"""render_surfels end to end: batching, backgrounds, gradients, overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering import Surfels, orbit_cameras, render_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels.config import TileConfig

CFG = TileConfig(tile_size=8, chunk_size=8)


def _batch(n_obj=2, n=150, views=2, size=(24, 32), channels=3):
    keys = jax.random.split(jax.random.key(0), n_obj)
    surfels = jax.vmap(lambda k: random_surfels(k, n, channels))(keys)
    cams = orbit_cameras(views, *size)
    cams = jax.tree.map(lambda x: jnp.broadcast_to(x, (n_obj,) + x.shape), cams)
    return surfels, cams


def test_batched_render_matches_dense_backend_and_per_object_renders():
    surfels, cams = _batch()
    bg = jnp.array([0.2, 0.5, 0.9])
    out = render_surfels(surfels, cams, bg, config=CFG)
    ref = render_surfels(surfels, cams, bg, config=CFG, backend="dense")
    assert out.rgb.shape == (2, 2, 24, 32, 3) and out.alpha.shape == (2, 2, 24, 32)
    for name in ("rgb", "alpha", "normal_cam", "normal_world"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=1e-4)
    for name in ("depth", "median_depth", "distortion"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=1e-3)
    one = render_surfels(
        jax.tree.map(lambda x: x[1], surfels), jax.tree.map(lambda x: x[1], cams), bg, config=CFG
    )
    np.testing.assert_allclose(one.rgb, out.rgb[1], atol=1e-6)
    # Empty pixels show the background; world normals are the camera normals rotated back.
    empty = np.asarray(out.alpha) == 0
    assert empty.any()
    np.testing.assert_allclose(np.asarray(out.rgb)[empty], np.broadcast_to(bg, (empty.sum(), 3)))
    rot = cams.cam2world[..., :3, :3]
    back = jnp.einsum("ovji,ovhwj->ovhwi", rot, out.normal_world)
    np.testing.assert_allclose(back, out.normal_cam, atol=1e-5)


def test_any_number_of_channels_and_per_view_background():
    surfels, cams = _batch(channels=8)
    bg = jax.random.uniform(jax.random.key(3), (2, 2, 8))
    out = render_surfels(surfels, cams, bg, config=CFG)
    assert out.rgb.shape[-1] == 8
    empty = np.asarray(out.alpha[1, 0]) == 0
    np.testing.assert_allclose(
        np.asarray(out.rgb[1, 0])[empty], np.broadcast_to(bg[1, 0], (empty.sum(), 8))
    )


def test_gradients_wrt_surfel_parameters_match_dense():
    surfels, cams = _batch(n_obj=1, n=120)
    weights = jax.random.normal(jax.random.key(5), (1, 2, 24, 32, 3))

    def loss(s, backend):
        out = render_surfels(s, cams, config=CFG, backend=backend)
        return (
            jnp.sum(out.rgb * weights)
            + jnp.sum(out.median_depth)
            + jnp.sum(out.depth)
            + 10 * jnp.sum(out.distortion)
            + jnp.sum(out.normal_world)
        )

    g = jax.grad(loss)(surfels, "xla")
    g_ref = jax.grad(loss)(surfels, "dense")
    for name in ("means", "quaternions", "scales", "opacities", "colors"):
        a, b = getattr(g, name), getattr(g_ref, name)
        assert float(jnp.linalg.norm(b)) > 0, name
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        assert rel < 1e-3, f"{name}: relative error {rel}"


def test_finite_differences_on_tiny_scene():
    """Autodiff vs central differences on 3 large, half-transparent surfels.

    The surfels are larger than the image (their 1/255 cutoff lies outside it) and far apart
    in depth, so the loss is smooth: no pixel crosses the cutoff or changes depth order.
    """
    surfels = Surfels(
        means=jnp.array([[0.0, 0.0, 0.0], [0.15, -0.1, 0.2], [-0.2, 0.15, -0.15]]),
        quaternions=jnp.array([[1.0, 0.1, 0.2, 0.0], [0.9, -0.3, 0.1, 0.2], [0.7, 0.0, 0.5, 0.3]]),
        scales=jnp.array([[0.7, 0.6], [0.6, 0.8], [0.7, 0.7]]),
        opacities=jnp.array([0.6, 0.5, 0.7]),
        colors=jnp.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9]]),
    )
    cams = orbit_cameras(2, 16, 16, radius=1.2)
    weights = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))

    def loss(means, scales, opacities):
        s = surfels.replace(means=means, scales=scales, opacities=opacities)
        return jnp.sum(render_surfels(s, cams, jnp.full(3, 0.5), config=CFG).rgb * weights)

    args = (surfels.means, surfels.scales, surfels.opacities)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    rng = np.random.default_rng(0)
    for which, eps in ((0, 2e-3), (1, 1e-3), (2, 1e-2)):
        direction = jnp.asarray(rng.normal(size=args[which].shape), jnp.float32)
        plus = list(args)
        minus = list(args)
        plus[which] = args[which] + eps * direction
        minus[which] = args[which] - eps * direction
        fd = (loss(*plus) - loss(*minus)) / (2 * eps)
        ad = jnp.sum(grads[which] * direction)
        assert abs(float(fd - ad)) <= 0.03 * abs(float(ad)) + 1e-3, (which, float(fd), float(ad))


def test_overflow_raises_with_numbers():
    surfels, cams = _batch(n_obj=1)
    with pytest.raises(RuntimeError, match="exceed capacity=10"):
        render_surfels(surfels, cams, config=CFG, capacity=10)
    out = jax.jit(lambda s, c: render_surfels(s, c, config=CFG, capacity=10))(surfels, cams)
    assert bool(out.overflow.all())


def test_unknown_backend_and_bad_background():
    surfels, cams = _batch(n_obj=1)
    with pytest.raises(ValueError, match="backend"):
        render_surfels(surfels, cams, backend="opengl")
    with pytest.raises(ValueError, match="background"):
        render_surfels(surfels, cams, jnp.zeros(4))
