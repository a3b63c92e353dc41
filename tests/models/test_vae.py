"""The VAE model: paper parameter counts, tiny-config shapes, initial surfels in closed form,
the cascade formula, scan/loop and remat equivalence, XYZ PE / KL / clamp by hand, and the
encoder's symmetries (view order, point order).

Compiles dominate the runtime on CPU, so most tests share one jitted tiny-VAE apply and
random parameters drawn in numpy from the eval_shape tree (no compiled init); one test
runs the real init.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.vae import paper, tiny
from configs.vae.model import tiny_model
from ga_jax.models import LOGICAL_AXIS_RULES
from ga_jax.models.common import (
    BlockStack,
    DiTBlock,
    ModelOptions,
    dot_product_attention,
    nerf_positional_encoding,
)
from ga_jax.models.vae import (
    DiagonalGaussian,
    SurfelHead,
    Upsampler,
    abstract_variables,
    build_vae,
    param_counts,
)
from ga_jax.models.vae.encoder import (
    cell_centre_xyz,
    foreground_cell_xyz,
    nearest_foreground_pixels,
)
from ga_jax.models.vae.surfel_head import fibonacci_directions
from ga_jax.parallel.mesh import logical_shardings, make_mesh
from ga_jax.rendering.surfels import check_surfels

LOOP = ModelOptions(scan_layers=False)  # unrolled blocks, for the SurfelHead tests

B, V, S = 2, 2, 32  # the tiny config's intended input: 2 views at 32 px
SURFEL_FIELDS = ("means", "quaternions", "scales", "opacities", "colors")


def _inputs(num_points: int, seed: int = 0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    encoder_input = jax.random.normal(k1, (B, V, S, S, 15))
    # A plausible xyz map in channels 12:15 (objects live in [-0.45, 0.45]^3).
    encoder_input = encoder_input.at[..., 12:15].set(0.45 * jnp.tanh(encoder_input[..., 12:15]))
    fps_xyz = jax.random.uniform(k2, (B, num_points, 3), minval=-0.45, maxval=0.45)
    return encoder_input, fps_xyz


def _random_params(abstract_params, seed: int):
    """Random parameters shaped like an (abstract) tree: kernels N(0, 1/fan_in), norm scales
    1 + N(0, 0.1^2), the rest N(0, 0.1^2). Every zero-initialised path (adaLN gates,
    residual heads, the multi-view proj_out) is live, so comparisons are not vacuous."""
    rng = np.random.default_rng(seed)

    def draw(path, x):
        noise = rng.standard_normal(x.shape).astype(np.float32)
        if path[-1].key == "scale":
            return jnp.asarray(1 + 0.1 * noise)
        if len(x.shape) < 2:
            return jnp.asarray(0.1 * noise)
        return jnp.asarray(noise / math.sqrt(math.prod(x.shape[:-1])))

    return jax.tree_util.tree_map_with_path(draw, nn.unbox(abstract_params))


def _stack_layers(tree):
    """Unrolled BlockStack params (layers_0..layers_{n-1}) -> scanned ('layers', stacked)."""
    if not isinstance(tree, dict):
        return tree
    if "layers_0" in tree:
        n = len([k for k in tree if k.startswith("layers_")])
        layers = [tree[f"layers_{i}"] for i in range(n)]
        return {"layers": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}
    return {k: _stack_layers(v) for k, v in tree.items()}


@pytest.fixture(scope="module")
def tiny_vae():
    cfg = tiny.get_config().model
    assert not cfg.scan_layers  # the tests convert these unrolled params to scanned ones
    model = build_vae(cfg)
    encoder_input, fps_xyz = _inputs(cfg.num_points)
    apply = jax.jit(lambda p, e, f: model.apply({"params": p}, e, f, train=False))
    return dict(
        cfg=cfg,
        model=model,
        params=_random_params(abstract_variables(model)["params"], seed=1),
        encoder_input=encoder_input,
        fps_xyz=fps_xyz,
        apply=apply,
    )


# 1. Parameter counts of the paper config (the function launch/param_count.py prints).
def test_paper_param_counts():
    abstract = abstract_variables(build_vae(paper.get_config().model))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(nn.unbox(abstract)))
    counts = param_counts(abstract["params"])
    assert abs(counts["encoder"] / 14.1e6 - 1) < 0.03, counts
    assert abs(counts["decoder"] / 156.6e6 - 1) < 0.03, counts
    # Measured: encoder 14,049,500; DiT 128,140,142 + surfel head 28,408,116 = 156,548,258.
    assert counts["encoder"] == 14_049_500
    assert counts["decoder"] == 156_548_258


def test_paper_params_carry_logical_names_and_shard():
    abstract = abstract_variables(build_vae(paper.get_config().model))["params"]
    leaves = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    unnamed = [x for x in leaves if not isinstance(x, nn.LogicallyPartitioned)]
    assert not unnamed, f"{len(unnamed)} parameters without logical axis names"
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2}, jax.devices()[:8])
    shardings = logical_shardings(abstract, mesh, LOGICAL_AXIS_RULES)
    qkv = shardings["decoder"]["blocks"]["layers"]["attn"]["query"]["kernel"].spec
    assert tuple(qkv) == (None, "fsdp", "tensor", None)  # ('layers', 'embed', 'heads', 'kv')


def test_traces_in_bf16_with_scan_remat_under_an_8_device_mesh():
    """eval_shape (no compile) of init + apply inside a mesh and the logical rules: every
    logical constraint and parameter box must fit its array; outputs stay float32."""
    cfg = tiny_model()
    cfg.update(dict(scan_layers=True, remat_policy="dots_saveable", dtype="bfloat16"))
    model = build_vae(cfg)
    encoder_input, fps_xyz = _inputs(cfg.num_points)
    encoder_input, fps_xyz = jnp.tile(encoder_input, (2, 1, 1, 1, 1)), jnp.tile(fps_xyz, (2, 1, 1))
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2}, jax.devices()[:8])
    with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        variables = jax.eval_shape(
            lambda: model.init(jax.random.key(0), encoder_input, fps_xyz, train=False)
        )
        surfels, posterior = jax.eval_shape(
            lambda v: model.apply(v, encoder_input, fps_xyz, rngs={"latent": jax.random.key(1)}),
            variables,
        )
    assert {x.dtype for x in jax.tree.leaves(nn.unbox(variables))} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves((surfels, posterior))} == {jnp.dtype("float32")}
    assert surfels[-1].means.shape == (2 * B, cfg.num_points * cfg.surfels.levels[0][0], 3)


# 2 + 3. The real init: shapes of every output, and the initial surfels in closed form.
def test_tiny_init_shapes_and_initial_surfels(tiny_vae):
    cfg, model, fps_xyz = tiny_vae["cfg"], tiny_vae["model"], tiny_vae["fps_xyz"]
    encoder_input = tiny_vae["encoder_input"]
    # An rbg key: the same init, but XLA compiles its random bits about twice as fast on CPU.
    variables = jax.jit(lambda k: model.init({"params": k}, encoder_input, fps_xyz, train=False))(
        jax.random.key(1, impl="rbg")
    )
    params = nn.unbox(variables)["params"]
    assert jax.tree.structure(params) == jax.tree.structure(tiny_vae["params"])
    surfels, posterior = tiny_vae["apply"](params, encoder_input, fps_xyz)

    p, c = cfg.num_points, cfg.latent_dim
    assert posterior.mean.shape == posterior.logvar.shape == (B, p, c)
    assert posterior.mean.dtype == jnp.float32
    factors = [f for f, _ in cfg.surfels.levels]
    assert len(surfels) == 1 + len(factors)
    for level, s in enumerate(surfels):
        n = p * math.prod(factors[:level])
        assert s.means.shape == (B, n, 3)
        assert s.quaternions.shape == (B, n, 4)
        assert s.scales.shape == (B, n, 2)
        assert s.opacities.shape == (B, n)
        assert s.colors.shape == (B, n, cfg.surfels.color_dim)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s))
        check_surfels(s)

    base = surfels[0]
    np.testing.assert_array_equal(base.means, fps_xyz)  # zero-init offset head
    scale = math.log1p(math.exp(-2.5)) * 0.006492  # softplus(-2.5) * 0.006492
    np.testing.assert_allclose(base.scales, np.full(base.scales.shape, scale), rtol=1e-6)
    np.testing.assert_allclose(base.quaternions, np.broadcast_to([1.0, 0, 0, 0], (B, p, 4)))
    np.testing.assert_allclose(base.opacities, 0.5)
    np.testing.assert_allclose(base.colors, 0.5)
    for parent, child in zip(surfels[:-1], surfels[1:]):
        f = child.num // parent.num
        for name in SURFEL_FIELDS:  # zero-init residual heads: children copy their parent
            want = jnp.repeat(getattr(parent, name), f, axis=1)
            np.testing.assert_array_equal(getattr(child, name), want, err_msg=name)
    for s in surfels:
        np.testing.assert_allclose(jnp.linalg.norm(s.quaternions, axis=-1), 1.0, rtol=1e-6)
        assert bool(jnp.all((s.opacities > 0) & (s.opacities < 1)))


def _activate(xyz, pre):
    """The surfel activations, written independently in float64 numpy."""
    q = pre[..., 6:10] / np.linalg.norm(pre[..., 6:10], axis=-1, keepdims=True)
    return dict(
        means=xyz,
        opacities=1 / (1 + np.exp(-pre[..., 3])),
        scales=np.log1p(np.exp(pre[..., 4:6])) * 0.006492,
        quaternions=q,
        colors=0.5 * np.tanh(pre[..., 10:13]) + 0.5,
    )


@pytest.mark.parametrize("std", [0.0, 0.5])
def test_head_init_std(std):
    """head_init_std = 0: every surfel head kernel is zero (the paper); > 0: N(0, std^2)."""
    head = SurfelHead(num_heads=2, mlp_dim=32, levels=((3, 1),), options=LOOP, head_init_std=std)
    features = jnp.ones((1, 64, 16))
    params = nn.unbox(head.init(jax.random.key(0), features, jnp.zeros((1, 64, 3))))["params"]
    for kernel in (params["base"]["kernel"], params["upsample_0"]["head"]["kernel"]):
        if std == 0.0:
            assert not np.any(np.asarray(kernel))
        else:
            assert abs(float(jnp.std(kernel)) - std) < 0.1 * std and abs(float(kernel.mean())) < 0.1


def test_fibonacci_directions_cover_the_sphere():
    for count in (1, 4, 8, 64):
        d = fibonacci_directions(count)
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
        if count > 1:
            gap = np.min(np.linalg.norm(d[:, None] - d[None], axis=-1) + 9 * np.eye(count))
            assert gap > 1.5 / math.sqrt(count)  # no two directions crowd together
    assert np.linalg.norm(fibonacci_directions(64).mean(0)) < 0.05  # evenly spread


def test_child_spread_places_children_at_the_radius():
    """Zero heads: each child sits exactly child_spread[level] from its parent (0.225 tanh of
    atanh(r / 0.225)), along the Fibonacci directions; () adds no parameter (the paper)."""
    features, xyz = jnp.ones((1, 6, 16)), jnp.zeros((1, 6, 3))
    head = SurfelHead(
        num_heads=2,
        mlp_dim=32,
        levels=((4, 1), (2, 1)),
        options=LOOP,
        child_spread=(0.03, 0.01),
    )
    params = nn.unbox(head.init(jax.random.key(0), features, xyz))["params"]
    assert params["upsample_0"]["child_offsets"].shape == (4, 3)
    base, level1, level2 = head.apply({"params": params}, features, xyz)
    step1 = np.asarray(level1.means[0]) - np.repeat(np.asarray(base.means[0]), 4, axis=0)
    np.testing.assert_allclose(np.linalg.norm(step1, axis=-1), 0.03, rtol=1e-5)
    np.testing.assert_allclose(step1[:4], 0.03 * fibonacci_directions(4), atol=1e-6)
    step2 = np.asarray(level2.means[0]) - np.repeat(np.asarray(level1.means[0]), 2, axis=0)
    np.testing.assert_allclose(np.linalg.norm(step2, axis=-1), 0.01, rtol=1e-5)
    plain = SurfelHead(num_heads=2, mlp_dim=32, levels=((4, 1),), options=LOOP)
    assert (
        "child_offsets"
        not in nn.unbox(plain.init(jax.random.key(0), features, xyz))["params"]["upsample_0"]
    )


@pytest.mark.parametrize("spread", [(0.01,), (0.01, 0.3), (-0.01, 0.01)])
def test_child_spread_rejects_bad_radii(spread):
    head = SurfelHead(
        num_heads=2, mlp_dim=32, levels=((4, 1), (2, 1)), options=LOOP, child_spread=spread
    )
    with pytest.raises(ValueError, match="child_spread"):
        head.init(jax.random.key(0), jnp.ones((1, 6, 16)), jnp.zeros((1, 6, 3)))


def test_cascade_formula_with_random_heads():
    """Random (non-zero) heads, two levels: base xyz = fps + 0.0225 tanh(o); child xyz =
    parent xyz + 0.225 tanh(R[0:3]); child pre-activations = parent's + R (captured)."""
    head = SurfelHead(num_heads=2, mlp_dim=32, levels=((3, 1), (2, 2)), options=LOOP)
    k1, k2 = jax.random.split(jax.random.key(3))
    features = jax.random.normal(k1, (2, 5, 16))
    xyz = jax.random.uniform(k2, (2, 5, 3), minval=-0.45, maxval=0.45)
    params = _random_params(jax.eval_shape(head.init, k1, features, xyz)["params"], seed=3)
    run = jax.jit(
        lambda p: head.apply(
            {"params": p},
            features,
            xyz,
            capture_intermediates=lambda m, _: m.name == "base" or isinstance(m, Upsampler),
            mutable=["intermediates"],
        )
    )
    surfels, state = run(params)
    inter = state["intermediates"]
    pre = np.asarray(inter["base"]["__call__"][0], np.float64)
    pos = np.asarray(xyz, np.float64) + 0.1 * 0.225 * np.tanh(pre[..., 0:3])
    want = [_activate(pos, pre)]
    for level, (factor, _) in enumerate(head.levels):
        residual = np.asarray(inter[f"upsample_{level}"]["__call__"][0][1], np.float64)
        pos = np.repeat(pos, factor, axis=1) + 0.225 * np.tanh(residual[..., 0:3])
        pre = np.repeat(pre, factor, axis=1) + residual
        want.append(_activate(pos, pre))
    assert [s.num for s in surfels] == [5, 15, 30]
    for got, expected in zip(surfels, want):
        for name, value in expected.items():
            np.testing.assert_allclose(getattr(got, name), value, atol=3e-6, err_msg=name)
    assert np.ptp(np.asarray(surfels[-1].opacities)) > 0.1  # the heads really are non-trivial


def test_color_gain_scales_each_levels_colour_columns():
    """color_gain (g_0, g_1, g_2) equals no gain with each level's head colour columns (kernel
    and bias) scaled by that level's g, since the colour pre-activation is a sum of those
    linear heads; geometry unchanged. A uniform gain equals scaling every level."""
    features = jax.random.normal(jax.random.key(1), (1, 5, 16))
    xyz = jax.random.uniform(jax.random.key(2), (1, 5, 3), minval=-0.4, maxval=0.4)
    kw = dict(num_heads=2, mlp_dim=32, levels=((3, 1), (2, 1)), options=LOOP)
    plain = SurfelHead(**kw)
    params = _random_params(
        jax.eval_shape(plain.init, jax.random.key(0), features, xyz)["params"], seed=5
    )

    def scaled_heads(gains):
        def scale(path, leaf):
            names = [getattr(k, "key", "") for k in path]
            if names[-1] in ("kernel", "bias") and names[-2] in ("base", "head"):
                level = 0 if names[-2] == "base" else 1 + int(names[-3].split("_")[-1])
                return leaf.at[..., 10:].multiply(gains[level])
            return leaf

        return jax.tree_util.tree_map_with_path(scale, params)

    for gains in ((4.0, 2.0, 3.0), (4.0, 4.0, 4.0)):
        gained = SurfelHead(**kw, color_gain=gains)
        for got, want in zip(
            gained.apply({"params": params}, features, xyz),
            plain.apply({"params": scaled_heads(gains)}, features, xyz),
        ):
            for name in ("means", "scales", "quaternions", "opacities", "colors"):
                np.testing.assert_allclose(
                    getattr(got, name), getattr(want, name), atol=1e-6, err_msg=f"{gains} {name}"
                )
    colours = plain.apply({"params": params}, features, xyz)[-1].colors
    assert np.ptp(np.asarray(colours)) > 0.1  # the colour heads really are non-trivial
    for bad in ((1.0, 0.0, 1.0), (2.0, 2.0)):
        with pytest.raises(ValueError, match="color_gain"):
            SurfelHead(**kw, color_gain=bad).init(jax.random.key(0), features, xyz)


# 4. scan_layers and remat do not change the maths.
def test_scan_matches_loop(tiny_vae):
    cfg = tiny_model()
    cfg.scan_layers = True
    scanned = build_vae(cfg)
    params, args = tiny_vae["params"], (tiny_vae["encoder_input"], tiny_vae["fps_xyz"])
    stacked = _stack_layers(params)
    assert jax.tree.structure(stacked) == jax.tree.structure(
        nn.unbox(abstract_variables(scanned)["params"])
    )
    loop_out = tiny_vae["apply"](params, *args)
    scan_out = jax.jit(lambda p: scanned.apply({"params": p}, *args, train=False))(stacked)
    for a, b in zip(jax.tree.leaves(loop_out), jax.tree.leaves(scan_out)):
        assert bool(jnp.all(jnp.isfinite(b)))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def test_remat_keeps_the_parameter_tree():
    shapes = []
    for policy in ("none", "full", "dots_saveable"):
        cfg = tiny_model()
        cfg.remat_policy = policy
        shapes.append(jax.tree.map(lambda x: x.shape, nn.unbox(abstract_variables(build_vae(cfg)))))
    assert shapes[0] == shapes[1] == shapes[2]


@pytest.mark.parametrize("scan_layers", [True, False])
def test_remat_keeps_values_and_grads(scan_layers):
    x = jax.random.normal(jax.random.key(5), (2, 6, 32))
    c = jax.random.normal(jax.random.key(6), (2, 6, 32))
    results = []
    for policy in ("none", "full", "dots_saveable"):
        stack = BlockStack(DiTBlock, dict(num_heads=2, mlp_dim=64), 2, scan_layers, policy)
        if not results:
            params = _random_params(jax.eval_shape(stack.init, jax.random.key(0), x, c), 7)
        loss = lambda p, stack=stack: jnp.sum(jnp.sin(stack.apply(p, x, c)))  # noqa: E731
        results.append(jax.jit(jax.value_and_grad(loss))(params))
    for value, grads in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-6)
        # Recomputation reorders float sums: measured max |diff| 2.4e-6 on O(1) gradients.
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(results[0][1])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# 5. Hand computations: XYZ PE, cell centres, KL, logvar clamp, reparameterised sample.
def test_xyz_positional_encoding_by_hand():
    xyz = np.array([[0.1, -0.2, 0.3], [0.45, 0.0, -0.45]], np.float32)
    want = []
    for p in xyz:
        row = list(p)
        for k in range(10):
            row += [math.sin(2**k * c) for c in p] + [math.cos(2**k * c) for c in p]
        want.append(row)
    got = nerf_positional_encoding(jnp.asarray(xyz), 10)
    assert got.shape == (2, 63)
    np.testing.assert_allclose(got, np.array(want), atol=1e-6)


def test_cell_centre_xyz_by_hand():
    xyz_map = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    got = np.asarray(cell_centre_xyz(jnp.asarray(xyz_map), 4))  # centre at pixel 1.5
    np.testing.assert_allclose(got[:, 0, 0], xyz_map[:, 1:3, 1:3].mean(axis=(1, 2)))
    np.testing.assert_allclose(got[:, 1, 0], xyz_map[:, 5:7, 1:3].mean(axis=(1, 2)))
    odd = np.asarray(cell_centre_xyz(jnp.asarray(xyz_map[:, :6, :6]), 3))  # centre pixel 1
    np.testing.assert_allclose(odd[:, 1, 0], xyz_map[:, 4, 1])


def test_kl_matches_closed_form():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 5, 10)).astype(np.float32)
    logvar = rng.normal(size=(3, 5, 10)).astype(np.float32)
    posterior = DiagonalGaussian(jnp.asarray(mean), jnp.asarray(logvar))
    std = np.exp(0.5 * logvar.astype(np.float64))
    # KL(N(m, s^2) || N(0, 1)) = -log s + (s^2 + m^2) / 2 - 1/2 per dimension, summed.
    want = (-np.log(std) + (std**2 + mean**2) / 2 - 0.5).sum(axis=(1, 2))
    assert posterior.kl().shape == (3,)
    np.testing.assert_allclose(posterior.kl(), want, rtol=1e-5)
    zero = DiagonalGaussian(jnp.zeros((1, 4, 10)), jnp.zeros((1, 4, 10)))
    np.testing.assert_allclose(zero.kl(), 0.0)


def test_logvar_clamp_and_sample():
    raw = jnp.linspace(-200.0, 200.0, 11)
    moments = jnp.concatenate([jnp.zeros((1, 11, 1)), raw.reshape(1, 11, 1)], axis=-1)
    posterior = DiagonalGaussian.from_moments(moments)
    want = 20 * np.tanh(np.asarray(raw, np.float64) / 20)
    np.testing.assert_allclose(posterior.logvar[0, :, 0], want, rtol=1e-6, atol=1e-5)
    assert float(jnp.abs(posterior.logvar).max()) <= 20.0
    small = DiagonalGaussian.from_moments(jnp.array([[[0.5, 0.01]]]))  # ~identity near 0
    np.testing.assert_allclose(small.logvar, 0.01, rtol=1e-6)
    np.testing.assert_allclose(small.mean, 0.5)
    # The offset shifts the raw logvar before the clamp (std e^-3 at raw 0, offset -6).
    shifted = DiagonalGaussian.from_moments(moments, offset=-6.0)
    want = 20 * np.tanh((np.asarray(raw, np.float64) - 6.0) / 20)
    np.testing.assert_allclose(shifted.logvar[0, :, 0], want, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(shifted.std[0, 5, 0], np.exp(10 * np.tanh(-0.3)), rtol=1e-6)
    key = jax.random.key(7)
    eps = jax.random.normal(key, posterior.mean.shape)
    np.testing.assert_allclose(
        posterior.sample(key), posterior.mean + jnp.exp(posterior.logvar / 2) * eps, rtol=1e-6
    )


def test_sample_posterior_off_decodes_the_mean(tiny_vae):
    """sample_posterior=False: training decodes the posterior mean (no 'latent' rng needed),
    exactly what evaluation decodes; the default draws a sample, which differs."""
    cfg = tiny_vae["cfg"].copy_and_resolve_references()
    cfg.sample_posterior = False
    model = build_vae(cfg)
    params, enc, fps = tiny_vae["params"], tiny_vae["encoder_input"], tiny_vae["fps_xyz"]
    train_levels, _ = model.apply({"params": params}, enc, fps, train=True)
    eval_levels, _ = model.apply({"params": params}, enc, fps, train=False)
    np.testing.assert_array_equal(train_levels[-1].colors, eval_levels[-1].colors)
    sampled, _ = tiny_vae["model"].apply(
        {"params": params}, enc, fps, train=True, rngs={"latent": jax.random.key(0)}
    )
    assert float(jnp.abs(sampled[-1].colors - eval_levels[-1].colors).max()) > 1e-5


def test_foreground_cell_xyz_by_hand():
    rng = np.random.default_rng(3)
    xyz_map = rng.uniform(-0.4, 0.4, (2, 8, 8, 3)).astype(np.float32)
    xyz_map[rng.uniform(size=(2, 8, 8)) < 0.6] = 0.0  # background pixels
    xyz_map[0, :4, :4] = 0.0  # a cell with no foreground at all
    got_xyz, got_fg = (np.asarray(x) for x in foreground_cell_xyz(jnp.asarray(xyz_map), 4))
    for b in range(2):
        for i in range(2):
            for j in range(2):
                cell = xyz_map[b, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].reshape(-1, 3)
                fg = cell[np.any(cell != 0, axis=-1)]
                assert got_fg[b, i, j] == (len(fg) > 0)
                want = fg.mean(axis=0) if len(fg) else np.zeros(3)
                np.testing.assert_allclose(got_xyz[b, i, j], want, rtol=1e-5, atol=1e-7)
    assert not got_fg[0, 0, 0]


@pytest.mark.parametrize("implementation", ["xla", "chunked"])
def test_masked_attention_equals_attention_over_the_kept_keys(implementation):
    kq, kk, kv = jax.random.split(jax.random.key(9), 3)
    q = jax.random.normal(kq, (2, 21, 2, 8))
    k = jax.random.normal(kk, (2, 30, 2, 8))
    v = jax.random.normal(kv, (2, 30, 2, 8))
    mask = jax.random.uniform(jax.random.key(10), (2, 30)) < 0.4
    got = dot_product_attention(q, k, v, implementation=implementation, chunk_size=8, key_mask=mask)
    for b in range(2):
        keep = np.asarray(mask[b])
        ref = dot_product_attention(q[b : b + 1], k[b : b + 1, keep], v[b : b + 1, keep])
        np.testing.assert_allclose(got[b : b + 1], ref, rtol=1e-5, atol=1e-6)


def test_encoder_foreground_tokens_runs_and_falls_back_without_foreground():
    cfg = tiny_model()
    cfg.encoder.foreground_tokens = True
    model = build_vae(cfg)
    params = _random_params(abstract_variables(model)["params"], seed=2)
    encoder_input, fps_xyz = _inputs(cfg.num_points)
    encoder_input = encoder_input.at[:, :, :16, :, 12:15].set(0.0)  # top half: background
    empty = encoder_input.at[1, ..., 12:15].set(0.0)  # object 1: no foreground anywhere

    def moments(x):
        return model.apply({"params": params}, x, fps_xyz, method=model.encode).mean

    a, b = moments(encoder_input), moments(empty)
    assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(b)))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)  # object 0 unchanged


def test_nearest_foreground_pixels_matches_a_pixel_loop():
    encoder_input, fps_xyz = _inputs(7, seed=4)
    # A background region (xyz 0) that contains the pixels nearest to some points.
    encoder_input = encoder_input.at[:, 0, :10, :, 12:15].set(0.0)
    fps_xyz = fps_xyz.at[:, 0].set(0.0)
    got_pixel, got_distance = nearest_foreground_pixels(encoder_input, fps_xyz, (12, 15))
    x, p = np.asarray(encoder_input, np.float64), np.asarray(fps_xyz, np.float64)
    for b in range(B):
        for i in range(p.shape[1]):
            best, best_d = None, np.inf
            for v in range(V):
                for row in range(S):
                    for col in range(S):
                        xyz = x[b, v, row, col, 12:15]
                        d = np.sqrt(np.sum((xyz - p[b, i]) ** 2))
                        if np.any(xyz != 0) and d < best_d:
                            best, best_d = x[b, v, row, col], d
            np.testing.assert_allclose(got_pixel[b, i], best, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(got_distance[b, i], best_d, rtol=1e-4, atol=1e-4)
    # An object without foreground: distance inf (the embedding's tanh takes it to 1).
    empty = encoder_input.at[1, ..., 12:15].set(0.0)
    _, distance = nearest_foreground_pixels(empty, fps_xyz, (12, 15))
    assert np.all(np.isinf(distance[1])) and np.all(np.isfinite(distance[0]))


def test_encoder_pixel_aligned_rgb_embeds_the_nearest_pixels_colour():
    cfg = tiny_model()
    cfg.encoder.pixel_aligned_rgb = True
    model = build_vae(cfg)
    params = _random_params(abstract_variables(model)["params"], seed=5)
    embed = params["encoder"]["pixel_rgb_embed"]
    assert embed["kernel"].shape == (4, 64)
    encoder_input, fps_xyz = _inputs(cfg.num_points)
    posterior, state = model.apply(
        {"params": params},
        encoder_input,
        fps_xyz,
        method=model.encode,
        capture_intermediates=True,
    )
    got = state["intermediates"]["encoder"]["pixel_rgb_embed"]["__call__"][0]
    pixel, distance = nearest_foreground_pixels(encoder_input, fps_xyz, (12, 15))
    features = np.concatenate(
        [np.asarray(pixel[..., 0:3]), np.tanh(np.asarray(distance) / 0.05)[..., None]], -1
    )
    want = features @ np.asarray(embed["kernel"]) + np.asarray(embed["bias"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    # With the embedding zeroed the encoder is the one without the option.
    zeroed = {**params["encoder"], "pixel_rgb_embed": jax.tree.map(jnp.zeros_like, embed)}
    plain = {k: v for k, v in params["encoder"].items() if k != "pixel_rgb_embed"}
    cfg.encoder.pixel_aligned_rgb = False
    off = build_vae(cfg)
    on_zeroed = model.apply(
        {"params": {**params, "encoder": zeroed}}, encoder_input, fps_xyz, method=model.encode
    ).mean
    without = off.apply(
        {"params": {**params, "encoder": plain}}, encoder_input, fps_xyz, method=off.encode
    ).mean
    np.testing.assert_allclose(on_zeroed, without, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(posterior.mean - without))) > 1e-3


def test_chunked_attention_matches_xla_and_numpy():
    kq, kk, kv = jax.random.split(jax.random.key(8), 3)
    q = jax.random.normal(kq, (2, 37, 3, 8))
    k = jax.random.normal(kk, (2, 50, 3, 8))
    v = jax.random.normal(kv, (2, 50, 3, 8))
    ref = dot_product_attention(q, k, v, implementation="xla")
    got = dot_product_attention(q, k, v, implementation="chunked", chunk_size=16)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(ref, np.einsum("bhqk,bkhd->bqhd", probs, v), rtol=1e-4, atol=1e-5)


# 6. Symmetries of the encoder: no view embedding, no point-index embedding.
def test_encoder_is_view_permutation_invariant(tiny_vae):
    params, enc, fps = tiny_vae["params"], tiny_vae["encoder_input"], tiny_vae["fps_xyz"]
    a = tiny_vae["apply"](params, enc, fps)[1]
    b = tiny_vae["apply"](params, enc[:, ::-1], fps)[1]
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.logvar, b.logvar, rtol=1e-4, atol=1e-5)
    # ...yet it does look at every view: changing one view's colours changes the latent.
    c = tiny_vae["apply"](params, enc.at[:, 1, ..., :3].multiply(-1.0), fps)[1]
    assert float(jnp.abs(c.mean - a.mean).max()) > 1e-3


def test_encoder_is_point_permutation_equivariant(tiny_vae):
    params, enc, fps = tiny_vae["params"], tiny_vae["encoder_input"], tiny_vae["fps_xyz"]
    perm = np.random.default_rng(1).permutation(fps.shape[1])
    a = tiny_vae["apply"](params, enc, fps)[1]
    b = tiny_vae["apply"](params, enc, fps[:, perm])[1]
    np.testing.assert_allclose(a.mean[:, perm], b.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.logvar[:, perm], b.logvar, rtol=1e-4, atol=1e-5)


def test_config_errors_name_the_field():
    cfg = tiny_model()
    cfg.encoder.widht = 3
    with pytest.raises(ValueError, match=r"config.model.encoder: unknown field\(s\) \['widht'\]"):
        build_vae(cfg)
    model = build_vae(tiny_model())
    with pytest.raises(ValueError, match="num_points=128"):
        jax.eval_shape(
            lambda: model.init(
                jax.random.key(0), jnp.zeros((1, 1, 4, 4, 15)), jnp.zeros((1, 64, 3))
            )
        )
