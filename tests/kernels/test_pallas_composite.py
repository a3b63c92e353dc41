"""The tiled Pallas compositor against the dense all-pairs oracle (forward and VJP).

On CPU the kernels run in Pallas interpret mode, and the file's run time is dominated by
XLA compilation, so there are two static shapes and each compiles once: `run_case` (scene
-> kernel and oracle -> VJPs with random cotangents) is reused across seeds and scene
parameters.  Shape A renders both views at once under jax.vmap (the batched path that
kernels.api uses), shape B renders one view (the unbatched path).  Image sizes are not
multiples of the tile size, so the tile padding is exercised.

random_surfels' surfels are ~0.2 px wide at these resolutions (only the screen-space filter
would matter), so the scenes scale them up to exercise both the rho3d (ray-splat) and the
rho2d (filter) branch; `pair_stats` counts which code paths a scene exercises and the tests
assert on those counts.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering.cameras import orbit_cameras
from ga_jax.rendering.project import project_surfels
from ga_jax.rendering.scenes import random_surfels
from ga_jax.rendering.tiles import intersect_tiles
from kernels.config import TileConfig
from kernels.pallas_composite import _loop_end_slots, composite_pallas
from kernels.reference import composite_dense, pixel_centers
from kernels.types import CompositeOutput

DIFF_FIELDS = ("means2d", "transforms", "opacities", "normals", "colors")
FORWARD_TOL = dict(
    color=1e-4, alpha=1e-4, normal=1e-4, depth=1e-3, median_depth=1e-3, distortion=1e-3
)
VJP_RTOL = 1e-3
NUM_VIEWS = 2

# Static shapes: one compilation each.  A: D=3, tile 16, 40x56 (3x4 tiles, padded to 48x64),
# both views batched with vmap.  B: D=8, tile 8, 24x24 (3x3 tiles), a single view.
SHAPE_A = dict(num=200, channels=3, height=40, width=56, tile_size=16, batched=True)
SHAPE_B = dict(num=150, channels=8, height=24, width=24, tile_size=8, batched=False)


def make_views(seed, scale, radius, opacity, cull, *, num, channels, height, width, config):
    """Splats [NUM_VIEWS, num] of random surfels seen from an orbit of `radius`.

    scale multiplies the surfel sizes; opacity > 0 overrides every opacity; cull marks every
    surfel invalid.  (The "rbg" PRNG compiles twice as fast as threefry on CPU.)
    """
    surfels = random_surfels(jax.random.key(seed, impl="rbg"), num, channels)
    surfels = surfels.replace(
        scales=surfels.scales * scale,
        opacities=jnp.where(opacity > 0, opacity, surfels.opacities),
    )
    cameras = orbit_cameras(NUM_VIEWS, height, width, radius=radius)
    splats = project_surfels(surfels, cameras, config)
    return splats._replace(valid=splats.valid & ~jnp.asarray(cull, bool))


@functools.partial(jax.jit, static_argnames=("num", "channels", "height", "width", "tile_size"))
def make_scene(seed, scale, radius, opacity, cull, *, num, channels, height, width, tile_size):
    """Splats, tile intersections [NUM_VIEWS, ...] and a background colour."""
    config = TileConfig(tile_size=tile_size)
    splats = make_views(
        seed,
        scale,
        radius,
        opacity,
        cull,
        num=num,
        channels=channels,
        height=height,
        width=width,
        config=config,
    )
    isect = jax.vmap(lambda s: intersect_tiles(s, height, width, config))(splats)
    background = jax.random.uniform(jax.random.key(seed + 1, impl="rbg"), (channels,))
    return splats, isect, background


def pair_stats(splats, height, width, config):
    """How many (surfel, pixel) pairs of one view take each code path (dense, no tiles)."""
    px, py = pixel_centers(height, width)
    t_u, t_v, t_w = (splats.transforms[:, None, r] for r in range(3))
    q = jnp.cross(px[None, :, None] * t_w - t_u, py[None, :, None] * t_w - t_v)
    u, v = q[..., 0] / q[..., 2], q[..., 1] / q[..., 2]
    rho3d = u * u + v * v
    d = splats.means2d[:, None, :] - jnp.stack([px, py], -1)[None]
    rho2d = config.filter_inv_square * jnp.sum(d * d, -1)
    use3d = rho3d <= rho2d
    z = u * t_w[..., 0] + v * t_w[..., 1] + t_w[..., 2]  # the hit depth, for every pair
    alpha_raw = splats.opacities[:, None] * jnp.exp(-0.5 * jnp.minimum(rho3d, rho2d))
    seen = splats.valid[:, None] & (alpha_raw >= config.alpha_min)
    used = seen & (z >= config.near)
    count = lambda mask: jnp.sum(mask.astype(jnp.int32))
    return dict(
        rho3d=count(used & use3d),
        rho2d=count(used & ~use3d),
        clamped=count(used & (alpha_raw > config.alpha_max)),
        behind_near=count(seen & (z < config.near)),
    )


def cotangents(view, outputs):
    """Random cotangents for all six outputs of one view."""
    keys = jax.random.split(jax.random.key(100 + view, impl="rbg"), len(outputs))
    return CompositeOutput(
        *[jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, outputs, strict=True)]
    )


@functools.partial(
    jax.jit, static_argnames=("height", "width", "tile_size", "batched", "interpret")
)
def run_case(splats, isect, background, view, *, height, width, tile_size, batched, interpret=None):
    """Kernel and oracle, outputs and VJPs with random cotangents, and diagnostics: on view
    `view`, or with batched=True on all views at once under jax.vmap (fields get a leading
    view axis; the background is shared, so its gradient is summed over the views)."""
    config = TileConfig(tile_size=tile_size)
    if not batched:
        splats, isect = jax.tree.map(lambda x: x[view], (splats, isect))
    params = {f: getattr(splats, f) for f in DIFF_FIELDS}
    views = jax.vmap if batched else (lambda fn: fn)

    def pallas_fn(p, bg):
        one = lambda s, i: composite_pallas(s, i, height, width, bg, config, interpret=interpret)
        return views(one)(splats._replace(**p), isect)

    def dense_fn(p, bg):
        one = lambda s: composite_dense(s, height, width, bg, config)
        return views(one)(splats._replace(**p))

    out, vjp_p = jax.vjp(pallas_fn, params, background)
    ref, vjp_r = jax.vjp(dense_fn, params, background)
    if batched:
        cot = [cotangents(v, jax.tree.map(lambda x, v=v: x[v], ref)) for v in range(NUM_VIEWS)]
        cot = jax.tree.map(lambda *xs: jnp.stack(xs), *cot)
    else:
        cot = cotangents(view, ref)
    stats = views(lambda s: pair_stats(s, height, width, config))(splats)
    return dict(
        out=out,
        ref=ref,
        grads=vjp_p(cot),
        ref_grads=vjp_r(cot),
        ranges=isect.tile_ranges,
        count=jnp.max(isect.count),
        capacity=isect.surfel_ids.shape[-1],
        stats=jax.tree.map(jnp.sum, stats),
    )


def scene(seed, shape, scale=6.0, radius=1.7, opacity=0.0, cull=False):
    """make_scene with every traced argument passed positionally with a fixed dtype, so that
    all scenes of one shape share one compilation."""
    static = {k: v for k, v in shape.items() if k != "batched"}
    return make_scene(
        jnp.int32(seed),
        jnp.float32(scale),
        jnp.float32(radius),
        jnp.float32(opacity),
        jnp.bool_(cull),
        **static,
    )


def case(seed, view, shape, scale=6.0, radius=1.7, opacity=0.0, cull=False, interpret=None):
    """run_case on a scene (one compilation per shape and `interpret`)."""
    splats, isect, background = scene(seed, shape, scale, radius, opacity, cull)
    res = run_case(
        splats,
        isect,
        background,
        jnp.int32(view),
        height=shape["height"],
        width=shape["width"],
        tile_size=shape["tile_size"],
        batched=shape["batched"],
        interpret=interpret,
    )
    res["background"] = background
    return res


def check_forward(out: CompositeOutput, ref: CompositeOutput):
    """Max abs error per output.  No pixel is excluded: on CPU the kernel reproduces the
    oracle's transmittance to the last bit in these scenes, so no pixel's T crosses the
    0.5 (median) or 1e-4 (stop) threshold differently (that would show as a large error)."""
    errors = {}
    for name in CompositeOutput._fields:
        a, b = getattr(out, name), getattr(ref, name)
        assert a.shape == b.shape and a.dtype == jnp.float32, (name, a.shape, b.shape)
        errors[name] = float(jnp.max(jnp.abs(a - b)))
        assert errors[name] <= FORWARD_TOL[name], (name, errors[name])
    return errors


def relative_error(a, b, name):
    """max |a - b| / max |b|; also asserts every element within VJP_RTOL of the oracle's
    (relative, with a floor of 1e-5 max |b| for elements near zero)."""
    assert a.shape == b.shape, (name, a.shape, b.shape)
    assert bool(jnp.all(jnp.isfinite(a))), name
    scale = float(jnp.max(jnp.abs(b)))
    assert scale > 0, f"{name}: the oracle's gradient is zero, the test checks nothing"
    np.testing.assert_allclose(a, b, rtol=VJP_RTOL, atol=1e-5 * scale, err_msg=name)
    return float(jnp.max(jnp.abs(a - b))) / scale


def check_case(res, expect_pairs=True):
    assert int(res["count"]) <= res["capacity"], "pair capacity overflowed"
    errors = check_forward(res["out"], res["ref"])
    (g_params, g_bg), (r_params, r_bg) = res["grads"], res["ref_grads"]
    rel = {f: relative_error(g_params[f], r_params[f], f) for f in DIFF_FIELDS}
    rel["background"] = relative_error(g_bg, r_bg, "background")
    for name, value in rel.items():
        assert value <= VJP_RTOL, (name, value)
    if expect_pairs:
        assert int(res["count"]) > 0
    return errors, rel


@pytest.mark.parametrize(
    "shape, seed, view",
    [(SHAPE_A, 0, 0), (SHAPE_A, 1, 0), (SHAPE_B, 2, 0), (SHAPE_B, 3, 1)],
    ids=["40x56-D3-ts16-vmap-s0", "40x56-D3-ts16-vmap-s1", "24x24-D8-ts8-s2", "24x24-D8-ts8-s3"],
)
def test_matches_dense_oracle(shape, seed, view):
    res = case(seed, view, shape)
    check_case(res)
    # Both branches of the filter are exercised.
    assert int(res["stats"]["rho3d"]) > 100 and int(res["stats"]["rho2d"]) > 100, res["stats"]


def test_near_plane_inside_surfels():
    """Camera close to the object: some pixels of valid surfels intersect at z < near."""
    res = case(0, 0, SHAPE_A, radius=0.6)
    assert int(res["stats"]["behind_near"]) > 0, res["stats"]
    check_case(res)


def test_empty_tiles_show_background():
    shape = SHAPE_A
    res = case(0, 0, shape)
    ranges = np.asarray(res["ranges"])  # [views, tiles, 2]
    empty = ranges[..., 0] == ranges[..., 1]
    assert empty.any() and not empty.all()
    check_case(res)
    out, bg = res["out"], res["background"]
    ts, cols = shape["tile_size"], -(-shape["width"] // shape["tile_size"])
    for view, tile in zip(*np.nonzero(empty), strict=True):
        r, c = divmod(int(tile), cols)
        window = (view, slice(r * ts, (r + 1) * ts), slice(c * ts, (c + 1) * ts))
        np.testing.assert_array_equal(
            out.color[window], jnp.broadcast_to(bg, out.color[window].shape)
        )
        for field in ("alpha", "depth", "median_depth", "normal", "distortion"):
            assert float(jnp.max(jnp.abs(getattr(out, field)[window]))) == 0.0, field


def test_no_pairs_at_all():
    """Every surfel culled: every tile is empty, the image is the background, and only the
    background gets a gradient."""
    res = case(2, 0, SHAPE_B, cull=True)
    assert int(res["count"]) == 0
    out, ref = res["out"], res["ref"]
    check_forward(out, ref)
    bg = res["background"]
    np.testing.assert_array_equal(out.color, jnp.broadcast_to(bg, out.color.shape))
    (g_params, g_bg), (_, r_bg) = res["grads"], res["ref_grads"]
    for f in DIFF_FIELDS:
        assert float(jnp.max(jnp.abs(g_params[f]))) == 0.0, f
    assert relative_error(g_bg, r_bg, "background") <= VJP_RTOL


def test_opaque_overlap_early_exit():
    """Many large opaque surfels: alpha is clamped at 0.99 (zero gradient to the opacity),
    pixels hit the transmittance stop, and whole tiles leave their loop before the end of
    their pair list (the early exit)."""
    shape = SHAPE_B
    res = case(1, 0, shape, scale=40.0, radius=1.2, opacity=1.0)
    assert int(res["stats"]["clamped"]) > 0, res["stats"]
    splats, isect, _ = scene(1, shape, scale=40.0, radius=1.2, opacity=1.0)
    config = TileConfig(tile_size=shape["tile_size"])
    loop_ends = jax.jit(lambda s, i: _loop_end_slots(s, i, shape["height"], shape["width"], config))
    ends = np.asarray(loop_ends(*jax.tree.map(lambda x: x[0], (splats, isect))))
    ranges = np.asarray(res["ranges"])
    assert ((ends >= ranges[:, 0]) & (ends <= ranges[:, 1])).all()
    assert (ends < ranges[:, 1]).sum() >= 3, (ends, ranges)
    assert float(jnp.min(res["out"].alpha)) > 0.99
    check_case(res)


def test_compiled_path_lowers_to_triton():
    """interpret=False lowers to Triton IR for CUDA (single view and vmapped, forward and
    backward).  This runs the Pallas Triton lowering rules (supported primitives, power-of-two
    shapes) on a CPU machine; it does not compile the Triton kernel or run it."""
    shape = SHAPE_B
    config = TileConfig(tile_size=shape["tile_size"])
    hw = dict(height=shape["height"], width=shape["width"])
    splats, isect, background = scene(0, shape)

    def fwd_bwd(splats, isect, background):
        def render(colors, opacities, bg):
            s = splats._replace(colors=colors, opacities=opacities)
            one = lambda s, i: composite_pallas(
                s, i, background=bg, config=config, interpret=False, **hw
            )
            return jax.vmap(one)(s, isect) if s.valid.ndim == 2 else one(s, isect)

        out, vjp = jax.vjp(render, splats.colors, splats.opacities, background)
        return vjp(out)

    one_view = jax.tree.map(lambda x: x[0], (splats, isect))
    for args in [one_view + (background,), (splats, isect, background)]:
        traced = jax.jit(fwd_bwd).trace(*args)
        try:
            lowered = traced.lower(lowering_platforms=("cuda",))
        except (TypeError, RuntimeError) as err:
            # Older JAX: no cross-platform lowering (TypeError); JAX 0.11 wants a GPU (or an
            # abstract one) to lower Triton calls (RuntimeError). test_compiled_matches_
            # interpret_on_gpu covers the compiled kernel on GPU machines.
            pytest.skip(f"cannot lower for CUDA here: {err}")
        text = lowered.as_text()
        assert text.count("triton") >= 2  # the forward and the backward kernel


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
def test_compiled_matches_interpret_on_gpu():
    """interpret=False (Triton) against interpret=True and against the oracle, on GPU."""
    for shape, seed, kwargs in [
        (SHAPE_A, 0, {}),
        (SHAPE_B, 1, dict(scale=40.0, radius=1.2, opacity=1.0)),
    ]:
        compiled = case(seed, 0, shape, **kwargs, interpret=False)
        interp = case(seed, 0, shape, **kwargs, interpret=True)
        # Compiled code may round differently (FMA), which could flip the median's T > 0.5
        # test at a few pixels: at most 0.5% of pixels may differ in median depth, they are
        # left out of the median comparison, and then the transforms' gradient (the only one
        # the median's cotangent reaches) is not compared.
        median_diff = jnp.abs(compiled["out"].median_depth - interp["out"].median_depth) > 1e-3
        assert float(jnp.mean(median_diff)) <= 0.005
        for name in CompositeOutput._fields:
            a, b = getattr(compiled["out"], name), getattr(interp["out"], name)
            if name == "median_depth":
                a, b = jnp.where(median_diff, 0.0, a), jnp.where(median_diff, 0.0, b)
            assert float(jnp.max(jnp.abs(a - b))) <= FORWARD_TOL[name], name
        (g_c, bg_c), (g_i, bg_i) = compiled["grads"], interp["grads"]
        fields = (
            DIFF_FIELDS
            if not bool(jnp.any(median_diff))
            else [f for f in DIFF_FIELDS if f != "transforms"]
        )
        for f in fields:
            assert relative_error(g_c[f], g_i[f], f) <= VJP_RTOL, f
        assert relative_error(bg_c, bg_i, "background") <= VJP_RTOL
        if not bool(jnp.any(median_diff)):
            check_case(compiled)
