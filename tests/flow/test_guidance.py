"""Guidance against independent references: the combination formula written out, the
rescale computed by hand in float64 numpy (data estimates by solving the path's 2 x 2
system), the interval followed through a sampler against a numpy Euler loop, and condition
dropout against its rate and jointness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.flow.guidance import Guidance, drop_condition, guide, guided_velocity
from ga_jax.flow.paths import PATHS, data_estimate
from ga_jax.flow.samplers import SamplerSettings, sample


def toy_network(x, t, args):
    """A velocity that depends on the condition, x and t, so every identity can fail."""
    params, condition = args
    return params * x * (1.0 + t) + condition["c"][:, None, :]


def toy_numpy(x, t, p, c):
    return p * x * (1.0 + t) + c[:, None, :]


def setup(seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    c = rng.normal(size=(2, 3)).astype(np.float32)
    return x, c, (jnp.float32(0.7), {"c": jnp.asarray(c)})


def test_scale_one_is_the_conditional_prediction():
    x, c, args = setup()
    # guide() returns the network itself: no unconditional call at all.
    assert guide(toy_network, Guidance(scale=1.0, rescale=0.5), {"c": jnp.zeros(3)}) is toy_network
    v_c, v_u = toy_network(x, 0.4, args), toy_network(x, 0.4, (args[0], {"c": jnp.zeros((2, 3))}))
    got = guided_velocity(v_c, v_u, x, 0.4, Guidance(scale=1.0))
    np.testing.assert_allclose(got, v_c, rtol=1e-6, atol=1e-6)  # v_u + (v_c - v_u) rounds


def test_guidance_inside_and_outside_the_interval():
    x, c, args = setup()
    s = 4.5
    guided = jax.jit(guide(toy_network, Guidance(scale=s, interval=(0.2, 0.6))))  # null: zeros
    for t in (0.2, 0.4, 0.6):  # inside, ends included
        v_c, v_u = toy_numpy(x, t, 0.7, c), toy_numpy(x, t, 0.7, np.zeros_like(c))
        got = guided(x, jnp.float32(t), args)
        np.testing.assert_allclose(got, v_u + s * (v_c - v_u), rtol=1e-5, atol=1e-5)
    for t in (0.0, 0.1, 0.7, 1.0):  # outside: the conditional prediction
        got = guided(x, jnp.float32(t), args)
        np.testing.assert_allclose(got, toy_numpy(x, t, 0.7, c), rtol=1e-6, atol=1e-6)


def test_rescale_zero_is_plain_guidance_exactly():
    x, c, args = setup()
    v_c = toy_network(x, 0.4, args)
    v_u = toy_network(x, 0.4, (args[0], {"c": jnp.zeros((2, 3))}))
    for path in PATHS:
        got = guided_velocity(v_c, v_u, x, 0.4, Guidance(scale=3.0, rescale=0.0, path=path))
        np.testing.assert_array_equal(got, v_u + 3.0 * (v_c - v_u))
    # At the data end (b(t) < 1e-3) the rescale is off: plain guidance again.
    got = guided_velocity(v_c, v_u, x, 1.0, Guidance(scale=3.0, rescale=0.7))
    np.testing.assert_array_equal(got, v_u + 3.0 * (v_c - v_u))


@pytest.mark.parametrize("path", PATHS)
def test_guidance_rescale_by_hand(path):
    """Data estimates in float64 numpy, std-matched, mixed, converted back at the same x_t by
    solving x_t = a x1 + b x0, v = a' x1 + b' x0 for the velocity."""
    rng = np.random.default_rng(5)
    x, v_c, v_u = rng.normal(size=(3, 2, 6, 3))
    t, s, phi = 0.35, 3.0, 0.7
    as32 = lambda a: jnp.asarray(a, jnp.float32)
    got = guided_velocity(as32(v_c), as32(v_u), as32(x), t, Guidance(s, rescale=phi, path=path))
    if path == "gvp":
        a, b = np.sin(np.pi * t / 2), np.cos(np.pi * t / 2)
        da, db = np.pi / 2 * b, -np.pi / 2 * a
    else:
        a, b, da, db = t, 1 - t, 1.0, -1.0
    system = np.array([[a, b], [da, db]])
    to_x1 = lambda v: np.linalg.solve(system, np.stack([x, v]).reshape(2, -1))[0].reshape(x.shape)
    v_g = v_u + s * (v_c - v_u)
    x1_c, x1_g = to_x1(v_c), to_x1(v_g)
    ratio = x1_c.std(axis=(1, 2), keepdims=True) / x1_g.std(axis=(1, 2), keepdims=True)
    x1 = phi * x1_g * ratio + (1 - phi) * x1_g
    x0 = (x - a * x1) / b
    np.testing.assert_allclose(got, da * x1 + db * x0, rtol=1e-4, atol=1e-4)
    # phi = 1: the result's data estimate has the conditional one's spread, per sample.
    full = guided_velocity(as32(v_c), as32(v_u), as32(x), t, Guidance(s, rescale=1.0, path=path))
    x1_full = np.asarray(data_estimate(path, as32(x), full, t))
    np.testing.assert_allclose(x1_full.std(axis=(1, 2)), x1_c.std(axis=(1, 2)), rtol=1e-4)


def test_sampler_guides_only_inside_the_interval_with_one_stacked_call():
    """Euler, 4 steps at t = 0, 0.25, 0.5, 0.75 with the interval [0.5, 1]: guided at the last
    two, against a numpy Euler loop; every network call is recorded with its batch size."""
    x, c, args = setup(6)
    s = 3.0
    calls = []

    def recorded(x, t, args):
        jax.debug.callback(lambda n: calls.append(int(n)), x.shape[0])
        return toy_network(x, t, args)

    g = guide(recorded, Guidance(scale=s, interval=(0.5, 1.0)), {"c": jnp.zeros(3)})
    result = sample(g, x, args, SamplerSettings("euler", 4))
    jax.block_until_ready(result)
    want = x.astype(np.float64)
    for t in (0.0, 0.25, 0.5, 0.75):
        v = toy_numpy(want, t, 0.7, c)
        if t >= 0.5:
            v_u = toy_numpy(want, t, 0.7, np.zeros_like(c))
            v = v_u + s * (v - v_u)
        want = want + 0.25 * v
    np.testing.assert_allclose(result.x, want, rtol=1e-5, atol=1e-5)
    assert calls == [2, 2, 4, 4]  # B rows outside, the stacked [cond; null] 2B rows inside
    assert int(result.nfe) == len(calls)


def test_bfloat16_network_gives_float32_guided_velocity():
    x, c, args = setup()
    bf16 = lambda x, t, a: toy_network(x, t, a).astype(jnp.bfloat16)
    g = jax.jit(guide(bf16, Guidance(scale=2.0, interval=(0.5, 1.0))))
    assert g(x, jnp.float32(0.2), args).dtype == g(x, jnp.float32(0.8), args).dtype == jnp.float32


def test_condition_dropout_is_joint_and_at_rate_p():
    b = 20_000
    rng = np.random.default_rng(7)
    condition = {
        "tokens": jnp.asarray(rng.uniform(1, 2, size=(b, 3, 2)), jnp.float32),
        "pooled": jnp.asarray(rng.uniform(1, 2, size=(b, 4)), jnp.float32),
    }
    null = {"tokens": jnp.full((3, 2), -1.0), "pooled": jnp.full((4,), -1.0)}
    out = drop_condition(jax.random.key(0), condition, null)  # p = 0.1 by default
    tokens, pooled = np.asarray(out["tokens"]), np.asarray(out["pooled"])
    dropped = np.all(tokens == -1, axis=(1, 2))
    np.testing.assert_array_equal(dropped, np.all(pooled == -1, axis=1))  # jointly
    np.testing.assert_array_equal(tokens[~dropped], np.asarray(condition["tokens"])[~dropped])
    assert abs(dropped.mean() - 0.1) < 0.0085  # 4 standard errors (0.0021)
    zeros = drop_condition(jax.random.key(1), condition, p=0.5)  # null None: zeros
    dropped = np.all(np.asarray(zeros["pooled"]) == 0, axis=1)
    assert abs(dropped.mean() - 0.5) < 0.015  # 4 standard errors (0.0035)
    with pytest.raises(ValueError, match="dropout"):
        drop_condition(jax.random.key(0), condition, p=1.5)


@pytest.mark.parametrize("name", ["heun", "dopri5"])
def test_guided_sampling_equals_sampling_the_combined_velocity(name):
    """The toy network is affine in its condition with null 0, so v_u + s (v_c - v_u) is the
    network at condition s c: a guided solve must match an unguided one at s c."""
    x, c, args = setup(8)
    s = 2.5
    settings = SamplerSettings(name, 16, rtol=1e-6, atol=1e-8)
    guided = sample(guide(toy_network, Guidance(scale=s)), x, args, settings)
    plain = sample(toy_network, x, (args[0], {"c": jnp.asarray(s * c)}), settings)
    assert bool(guided.success)
    np.testing.assert_allclose(guided.x, plain.x, rtol=2e-5, atol=2e-5)


def test_guided_functions_compare_equal_so_sampling_compiles_once():
    """The samplers take the velocity as a static argument: building the guided function
    again for the same network and guidance must hit the compilation cache."""
    from ga_jax.flow.samplers import sample

    calls = []

    def velocity(x, t, args):
        calls.append(1)  # runs only while tracing
        params, condition = args
        return params * x + condition

    g = Guidance(2.0, interval=(0.2, 0.8))
    assert guide(velocity, g) == guide(velocity, g)
    assert hash(guide(velocity, g)) == hash(guide(velocity, g))
    assert guide(velocity, g) != guide(velocity, Guidance(3.0))
    x0 = jnp.ones((2, 3, 1))
    args = (jnp.float32(0.5), jnp.ones((2, 3, 1)))
    sample(guide(velocity, g), x0, args)
    traced = len(calls)
    sample(guide(velocity, g), x0, args)
    assert len(calls) == traced  # no new trace
