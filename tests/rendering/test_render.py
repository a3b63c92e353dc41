"""render_surfels end to end: batching, backgrounds, gradients, overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering import Surfels, orbit_cameras, render_surfels
from ga_jax.rendering.scenes import random_surfels
from kernels.config import TileConfig
from tests.rendering.exact_gradients import (
    SURFEL_FIELDS,
    assert_gradients_match,
    exact_gradient,
    relative_error,
    to_float64,
)

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
    """xla's gradients (hand-written compositing VJP) against the dense oracle's autodiff
    (the scales against the exact float64 gradient: tests/rendering/exact_gradients.py), and
    in float64 equal to the oracle's to rounding."""
    surfels, cams = _batch(n_obj=1, n=120)
    weights = jax.random.normal(jax.random.key(5), (1, 2, 24, 32, 3))

    def loss(s, c, backend):
        out = render_surfels(s, c, config=CFG, backend=backend)
        return (
            jnp.sum(out.rgb * weights.astype(out.rgb.dtype))
            + jnp.sum(out.median_depth)
            + jnp.sum(out.depth)
            + 10 * jnp.sum(out.distortion)
            + jnp.sum(out.normal_world)
        )

    exact = exact_gradient(loss, surfels, cams)
    g_xla = jax.grad(loss)(surfels, cams, "xla")
    g_dense = jax.grad(loss)(surfels, cams, "dense")
    assert_gradients_match(g_xla, g_dense, exact)
    with jax.enable_x64(True):
        g64 = jax.grad(loss)(to_float64(surfels), to_float64(cams), "xla")
    for name in SURFEL_FIELDS:
        err = relative_error(getattr(g64, name), getattr(exact, name))
        assert err < 1e-8, f"{name}: float64 xla vs dense, relative error {err}"


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


def test_float64_finite_differences_every_output():
    """Under jax_enable_x64 the xla backend renders in float64 (so do 'dense' and the
    projection): autodiff of every output against central differences to 1e-6 relative.

    Three large half-transparent surfels (1/255 cutoff outside the image, far apart in depth)
    and a sub-pixel one drawn by the low-pass filter, whose centre and hit depth then carry
    gradient too; nothing crosses a threshold for steps of 1e-6.
    """
    with jax.enable_x64(True):
        f64 = lambda x: jnp.asarray(x, jnp.float64)
        surfels = Surfels(
            means=f64([[0.0, 0.0, 0.0], [0.15, -0.1, 0.2], [-0.2, 0.15, -0.15], [0.05, 0.02, 0.4]]),
            quaternions=f64(
                [[1.0, 0.1, 0.2, 0.0], [0.9, -0.3, 0.1, 0.2], [0.7, 0.0, 0.5, 0.3],
                 [0.4, 0.8, -0.2, 0.3]]
            ),
            scales=f64([[0.7, 0.6], [0.6, 0.8], [0.7, 0.7], [0.004, 0.002]]),
            opacities=f64([0.6, 0.5, 0.7, 0.9]),
            colors=f64([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9], [0.5, 0.5, 0.1]]),
        )
        cams = orbit_cameras(2, 16, 16, radius=1.2)
        cams = cams.replace(cam2world=f64(cams.cam2world), intrinsics=f64(cams.intrinsics))
        keys = jax.random.split(jax.random.key(0), 6)
        w_rgb = jax.random.normal(keys[0], (2, 16, 16, 3), jnp.float64)
        w_normal = jax.random.normal(keys[1], (2, 16, 16, 3), jnp.float64)
        w_pix = [jax.random.normal(k, (2, 16, 16), jnp.float64) for k in keys[2:]]
        names = ("means", "quaternions", "scales", "opacities", "colors")

        def loss(*fields):
            s = surfels.replace(**dict(zip(names, fields)))
            out = render_surfels(s, cams, f64([0.5, 0.5, 0.5]), config=CFG)
            assert out.rgb.dtype == jnp.float64
            return (
                jnp.sum(out.rgb * w_rgb)
                + jnp.sum(out.normal_cam * w_normal)
                + jnp.sum(out.alpha * w_pix[0])
                + jnp.sum(out.depth * w_pix[1])
                + jnp.sum(out.median_depth * w_pix[2])
                + 100.0 * jnp.sum(out.distortion * w_pix[3])
            )

        args = tuple(getattr(surfels, n) for n in names)
        grads = jax.grad(loss, argnums=tuple(range(5)))(*args)
        rng = np.random.default_rng(0)
        eps = 1e-6
        for which, name in enumerate(names):
            direction = f64(rng.normal(size=args[which].shape))
            plus, minus = list(args), list(args)
            plus[which] = args[which] + eps * direction
            minus[which] = args[which] - eps * direction
            fd = float(loss(*plus) - loss(*minus)) / (2 * eps)
            ad = float(jnp.sum(grads[which] * direction))
            assert abs(fd - ad) <= 1e-6 * abs(ad) + 1e-9, (name, fd, ad)


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
