"""One suite for every compositing implementation against the dense all-pairs oracle.

Measured errors (CPU, float32): forward <= 1e-6 for every output on these scenes; VJPs
<= 1e-5 relative. Tolerances are those of the issue (1e-4 for rgb/alpha/normal, 1e-3 for
depths, 1e-3 relative for gradients).
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering import intersect_tiles
from kernels import native_composite
from kernels.api import composite
from kernels.config import TileConfig
from kernels.reference import composite_dense
from tests.kernels.scenes import convention_view, opaque_view, random_view

IMPLEMENTATIONS = ["xla"]
if importlib.util.find_spec("kernels.pallas_composite") is not None:
    IMPLEMENTATIONS.append("pallas")
NATIVE = pytest.param(
    "native",
    marks=pytest.mark.skipif(
        native_composite.available() is not None, reason=str(native_composite.available())
    ),
)
IMPLEMENTATIONS.append(NATIVE)

TOL = {
    "color": 1e-4,
    "alpha": 1e-4,
    "normal": 1e-4,
    "depth": 1e-3,
    "median_depth": 1e-3,
    "distortion": 1e-3,
}
DIFF_FIELDS = ("means2d", "transforms", "opacities", "normals", "colors")


def run(impl, splats, height, width, background, config):
    isect = intersect_tiles(splats, height, width, config)
    batch = lambda x: x[None]
    out = composite(
        jax.tree.map(batch, splats),
        jax.tree.map(batch, isect),
        height,
        width,
        background[None],
        config,
        implementation=impl,
    )
    return jax.tree.map(lambda x: x[0], out)


def assert_close(out, ref):
    for name, tol in TOL.items():
        err = float(jnp.max(jnp.abs(getattr(out, name) - getattr(ref, name))))
        assert err <= tol, f"{name}: max abs error {err} > {tol}"


CASES = [
    # seed, (H, W), channels, tile, chunk, surfels
    (0, (40, 56), 3, 16, 32, 300),
    (1, (37, 29), 8, 8, 8, 250),
    (2, (48, 48), 3, 16, 16, 600),
]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed,size,channels,tile,chunk,num", CASES)
def test_forward_matches_dense(impl, seed, size, channels, tile, chunk, num):
    cfg = TileConfig(tile_size=tile, chunk_size=chunk)
    splats = random_view(seed, num, *size, channels, cfg)
    bg = jnp.linspace(0.1, 0.9, channels)
    ref = composite_dense(splats, *size, bg, cfg)
    assert float(ref.alpha.max()) > 0.5  # the scene is visible
    assert_close(run(impl, splats, *size, bg, cfg), ref)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed,channels,tile", [(0, 3, 16), (1, 5, 8)])
def test_forward_matches_dense_on_edge_on_and_near_plane_surfels(impl, seed, channels, tile):
    """Edge-on, near-plane-straddling and large thin tilted surfels beside small ones
    (tests/kernels/scenes.py convention_scene), 37 x 45 px."""
    cfg = TileConfig(tile_size=tile, chunk_size=16)
    splats = convention_view(seed, 37, 45, channels, cfg)
    bg = jnp.linspace(0.1, 0.9, channels)
    ref = composite_dense(splats, 37, 45, bg, cfg)
    assert_close(run(impl, splats, 37, 45, bg, cfg), ref)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_early_stop_and_empty_tiles(impl):
    cfg = TileConfig(tile_size=8, chunk_size=4)
    h, w = 40, 40
    splats = opaque_view(3, h, w, cfg)
    ref = composite_dense(splats, h, w, jnp.ones(3), cfg)
    assert float(ref.alpha.max()) > 1 - 2e-4  # rays reach the 1e-4 transmittance stop
    assert float(ref.alpha.min()) == 0.0  # and some tiles are empty
    assert_close(run(impl, splats, h, w, jnp.ones(3), cfg), ref)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_invalid_splats_are_ignored(impl):
    cfg = TileConfig()
    splats = random_view(4, 200, 32, 32, 3, cfg)
    splats = splats._replace(valid=splats.valid.at[::2].set(False))
    ref = composite_dense(splats, 32, 32, jnp.zeros(3), cfg)
    keep = jax.tree.map(lambda x: x[1::2], splats)
    ref_subset = composite_dense(keep, 32, 32, jnp.zeros(3), cfg)
    assert_close(ref, ref_subset)
    assert_close(run(impl, splats, 32, 32, jnp.zeros(3), cfg), ref)


def _relative_error(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "seed,size,channels,scene",
    [(5, (24, 40), 3, "random"), (6, (32, 32), 3, "opaque"), (2, (37, 45), 3, "convention")],
)
def test_vjp_matches_dense(impl, seed, size, channels, scene):
    cfg = TileConfig(tile_size=8, chunk_size=8)
    splats = {
        "random": lambda: random_view(seed, 200, *size, channels, cfg),
        "opaque": lambda: opaque_view(seed, *size, cfg),
        "convention": lambda: convention_view(seed, *size, channels, cfg),
    }[scene]()
    bg = jnp.full((channels,), 0.3)
    isect = intersect_tiles(splats, *size, cfg)
    diff = {f: getattr(splats, f) for f in DIFF_FIELDS}

    def with_diff(d):
        return splats._replace(**d)

    f_ref = lambda d, b: composite_dense(with_diff(d), *size, b, cfg)
    batch = lambda x: x[None]
    f_impl = lambda d, b: jax.tree.map(
        lambda x: x[0],
        composite(
            jax.tree.map(batch, with_diff(d)),
            jax.tree.map(batch, isect),
            *size,
            b[None],
            cfg,
            implementation=impl,
        ),
    )
    out_ref, vjp_ref = jax.vjp(f_ref, diff, bg)
    out_impl, vjp_impl = jax.vjp(f_impl, diff, bg)
    keys = jax.random.split(jax.random.key(seed), len(out_ref))
    cot = type(out_ref)(*(jax.random.normal(k, x.shape) for k, x in zip(keys, out_ref)))
    g_ref, gb_ref = vjp_ref(cot)
    g_impl, gb_impl = vjp_impl(cot)
    for name in DIFF_FIELDS:
        err = _relative_error(g_impl[name], g_ref[name])
        assert err <= 1e-3, f"d/d{name}: relative error {err}"
        assert float(jnp.linalg.norm(g_ref[name])) > 0
    assert _relative_error(gb_impl, gb_ref) <= 1e-3


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_vmap_over_views(impl):
    cfg = TileConfig(tile_size=8, chunk_size=8)
    views = [random_view(7, 150, 24, 24, 3, cfg, view=v) for v in (0, 1)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *views)
    isect = jax.vmap(lambda s: intersect_tiles(s, 24, 24, cfg))(stacked)
    out = composite(stacked, isect, 24, 24, jnp.zeros((2, 3)), cfg, implementation=impl)
    for v in (0, 1):
        ref = composite_dense(views[v], 24, 24, jnp.zeros(3), cfg)
        assert_close(jax.tree.map(lambda x, v=v: x[v], out), ref)


def test_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match="implementation"):
        composite(None, None, 8, 8, None, implementation="nope")


def test_cuda_adapter_names_available_backends():
    splats = random_view(0, 10, 16, 16)
    with pytest.raises(ImportError, match="available backends: xla, pallas, native, dense"):
        run("cuda", splats, 16, 16, jnp.zeros(3), TileConfig())


def test_cuda_adapter_calls_installed_package(monkeypatch):
    """A stand-in package with the documented signature is picked up and its outputs used."""
    import sys
    import types

    cfg = TileConfig()
    splats = random_view(1, 120, 24, 24)
    ref = composite_dense(splats, 24, 24, jnp.zeros(3), cfg)
    module = types.ModuleType("diff_surfel_rasterization_jax")
    calls = []

    def composite_splats(
        means2d,
        transforms,
        opacities,
        normals,
        colors,
        tile_ranges,
        ids,
        height,
        width,
        background,
        near,
        far,
    ):
        calls.append((height, width, near, far))
        s = splats._replace(
            means2d=means2d,
            transforms=transforms,
            opacities=opacities,
            normals=normals,
            colors=colors,
        )
        return composite_dense(s, height, width, background, cfg)._asdict()

    module.composite_splats = composite_splats
    monkeypatch.setitem(sys.modules, "diff_surfel_rasterization_jax", module)
    assert_close(run("cuda", splats, 24, 24, jnp.zeros(3), cfg), ref)
    assert calls and calls[0] == (24, 24, cfg.near, cfg.far)


def test_grazing_ray_gradient_is_finite():
    """A ray almost parallel to the splat (q_z ~ 1e-36, q_z^2 underflows): the pixel uses the
    screen-space filter, and the gradient w.r.t. the transform must stay finite (it was NaN:
    0 * d(q_x / q_z)/d q_z = 0 * inf)."""
    from kernels.numerics import ray_splat_uv
    from kernels.xla_composite import _pair_alpha_depth

    cfg = TileConfig()
    # tw = (0, 0, 1), tu = (1e-18, 0, 0), tv = (0, 1e-18, 0): q_z = 1e-36, centre at the pixel.
    geom = jnp.array([0.5, 0.5, 1e-18, 0, 0, 0, 1e-18, 0, 0, 0, 1.0, 0.9], jnp.float32)
    px = py = jnp.float32(0.5)
    alpha, _ = _pair_alpha_depth(geom, px, py, cfg)
    np.testing.assert_allclose(alpha, 0.9, rtol=1e-6)  # the filter's peak: opacity
    grad = jax.grad(lambda g: _pair_alpha_depth(g, px, py, cfg)[0])(geom)
    assert np.all(np.isfinite(grad))
    # Ordinary rays are untouched: (u, v) = (q_x, q_y) / q_z exactly.
    hit, u, v, _, far = ray_splat_uv(jnp.float32(3.0), jnp.float32(-1.0), jnp.float32(2.0))
    assert bool(hit) and not bool(far) and float(u) == 1.5 and float(v) == -0.5


def test_grazing_ray_hit_depth_keeps_its_sign():
    """A far pair (|u| > 1e6) takes its hit depth from q: (q_x T_w.x + q_y T_w.y) / q_z + T_w.z,
    whose sign decides the near test (in front: drawn by the filter; behind: skipped), with
    finite gradients (only T_w.z's, 1, gets through)."""
    from kernels.numerics import hit_depth, ray_splat_uv

    t_w = (jnp.float32(0.5), jnp.float32(0.0), jnp.float32(1.0))

    def depth(q_x, t_w2):
        q = (q_x, jnp.float32(0.0), jnp.float32(1.0))
        _, u, v, _, far = ray_splat_uv(*q)
        assert bool(far)
        return hit_depth(*q, u, v, far, (t_w[0], t_w[1], t_w2))

    assert float(depth(jnp.float32(3e7), t_w[2])) == 1.5e7 + 1
    assert float(depth(jnp.float32(-3e7), t_w[2])) == -1.5e7 + 1  # behind the camera
    grads = jax.grad(depth, argnums=(0, 1))(jnp.float32(3e7), t_w[2])
    assert float(grads[0]) == 0.0 and float(grads[1]) == 1.0
    # A tiny q_z: the depth term is clipped to 1e12 (1e30 would overflow in products).
    q = (jnp.float32(1.0), jnp.float32(0.0), jnp.float32(1e-30))
    _, u, v, _, far = ray_splat_uv(*q)
    assert float(hit_depth(*q, u, v, far, t_w)) == np.float32(1e12)
