"""Flow maths against independent references: paths by finite differences and by solving for
their estimates, samplers on ODEs with closed-form solutions (convergence orders measured),
guidance identities and a hand-computed rescale, reproducible noise, inpainting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.flow.guidance import Guidance, drop_condition, guide, guided_velocity
from ga_jax.flow.paths import PATHS, data_estimate, interpolate, noise_estimate
from ga_jax.flow.samplers import Known, SamplerSettings, initial_noise, sample
from ga_jax.flow.timesteps import sample_times, sampling_grid, shift_times


@pytest.mark.parametrize("path", PATHS)
def test_velocity_target_is_the_time_derivative_of_x_t(path):
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=(2, 5, 3)).astype(np.float64)
    with jax.enable_x64(True):
        for t in (0.0, 0.1, 0.5, 0.93, 1.0):
            h = 1e-6
            lo = np.clip(t - h, 0, 1)
            hi = np.clip(t + h, 0, 1)
            xa, _ = interpolate(path, x0, x1, jnp.float64(lo))
            xb, _ = interpolate(path, x0, x1, jnp.float64(hi))
            _, v = interpolate(path, x0, x1, jnp.float64(t))
            # Central differences (one-sided at the ends: error ~ h |x_t''| / 2 ~ 3e-6).
            np.testing.assert_allclose((xb - xa) / (hi - lo), v, rtol=1e-5, atol=1e-5)
    x_t, _ = interpolate(path, x0, x1, 0.0)
    np.testing.assert_allclose(x_t, x0, atol=1e-6)  # t = 0 is noise
    x_t, _ = interpolate(path, x0, x1, 1.0)
    np.testing.assert_allclose(x_t, x1, atol=1e-6)  # t = 1 is data


@pytest.mark.parametrize("path", PATHS)
def test_estimates_recover_data_and_noise(path):
    rng = np.random.default_rng(1)
    x0, x1 = rng.normal(size=(2, 4, 7, 3)).astype(np.float32)
    t = np.array([0.0, 0.3, 0.8, 1.0], np.float32)
    x_t, v = interpolate(path, x0, x1, t)
    np.testing.assert_allclose(data_estimate(path, x_t, v, t), x1, atol=2e-5)
    np.testing.assert_allclose(noise_estimate(path, x_t, v, t), x0, atol=2e-5)


def test_unknown_path_is_named():
    with pytest.raises(ValueError, match="flow path.*'cosine'"):
        interpolate("cosine", jnp.zeros(3), jnp.zeros(3), 0.5)


# -- samplers on a linear ODE: dx/dt = A x (x rows of 2), x(1) = x(0) expm(A)^T ----------------

A = np.array([[-0.7, 1.3], [-1.1, -0.2]], np.float32)


def linear_field(x, t, args):
    return x @ args.T


def exact(x0):
    w, v = np.linalg.eig(A.astype(np.float64))
    expm = (v @ np.diag(np.exp(w)) @ np.linalg.inv(v)).real
    return x0.astype(np.float64) @ expm.T


def test_euler_and_heun_converge_at_first_and_second_order():
    x0 = np.random.default_rng(2).normal(size=(3, 4, 2)).astype(np.float32)
    steps = (4, 8, 16, 32)
    slopes = {}
    for name in ("euler", "heun"):
        errors = [
            np.abs(
                np.asarray(sample(linear_field, x0, A, SamplerSettings(name, n)).x) - exact(x0)
            ).max()
            for n in steps
        ]
        slopes[name] = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert 0.9 < slopes["euler"] < 1.15, slopes
    assert 1.85 < slopes["heun"] < 2.2, slopes


def test_dopri5_error_and_nfe():
    x0 = np.random.default_rng(3).normal(size=(3, 4, 2)).astype(np.float32)
    # Tighter than the reference's rtol 1e-3 / atol 1e-6 so that the error bound is the
    # solver's, not the tolerance's; float32 rounding stays below 1e-6 here.
    settings = SamplerSettings("dopri5", rtol=1e-6, atol=1e-8, max_steps=4096)
    result = sample(linear_field, x0, A, settings)
    assert bool(result.success)
    assert np.abs(np.asarray(result.x) - exact(x0)).max() <= 1e-5
    # NFE: count the evaluations at run time through a callback.
    calls = []

    def counted(x, t, args):
        jax.debug.callback(lambda: calls.append(1))
        return linear_field(x, t, args)

    result = sample(counted, x0, A, SamplerSettings("dopri5"))
    jax.block_until_ready(result)
    assert int(result.nfe) == len(calls), (int(result.nfe), len(calls))
    # The reference's tolerances (local error control at rtol 1e-3): a global error of that
    # order, and far above the tight solve's.
    assert 1e-5 < np.abs(np.asarray(result.x) - exact(x0)).max() <= 5e-3


def test_dopri5_at_max_steps_is_reported_not_raised():
    x0 = np.ones((1, 4, 2), np.float32)
    stiff = lambda x, t, args: -200.0 * x + jnp.sin(50.0 * t)
    result = sample(stiff, x0, None, SamplerSettings("dopri5", rtol=1e-8, atol=1e-10, max_steps=3))
    assert not bool(result.success)


def test_fixed_step_nfe_and_bad_settings():
    x0 = np.zeros((1, 2, 2), np.float32)
    assert int(sample(linear_field, x0, A, SamplerSettings("euler", 12)).nfe) == 12
    assert int(sample(linear_field, x0, A, SamplerSettings("heun", 12)).nfe) == 24
    with pytest.raises(ValueError, match="sampler name"):
        SamplerSettings("rk4")
    with pytest.raises(ValueError, match="sampling steps"):
        SamplerSettings("euler", 0)
    with pytest.raises(ValueError, match="timestep shift"):
        SamplerSettings("euler", 10, shift=0.5)


# -- times ------------------------------------------------------------------------------------


def test_shifted_grid_matches_the_peers_formula_and_keeps_the_ends():
    k = 3.0
    grid = np.asarray(sampling_grid(12, k), np.float64)
    tau = 1.0 - np.linspace(0, 1, 13)
    np.testing.assert_allclose(grid, 1.0 - k * tau / (1 + (k - 1) * tau), atol=1e-6)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
    assert grid[6] < 0.5  # more steps near the noise end
    np.testing.assert_allclose(sampling_grid(12, 1.0), np.linspace(0, 1, 13), atol=1e-7)
    assert float(shift_times(0.25, 1.0)) == 0.25


def test_time_distributions():
    t = np.asarray(sample_times(jax.random.key(0), (200_000,), "logit_normal", 0.5, 1.5))
    logit = np.log(t) - np.log1p(-t)
    assert abs(logit.mean() - 0.5) < 0.02 and abs(logit.std() - 1.5) < 0.02
    u = np.asarray(sample_times(jax.random.key(1), (200_000,)))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    with pytest.raises(ValueError, match="kind"):
        sample_times(jax.random.key(0), (3,), "beta")


def test_condition_dropout_is_joint_and_at_rate_p():
    b = 20_000
    condition = {"tokens": jnp.ones((b, 3, 2)), "pooled": jnp.ones((b, 4))}
    null = {"tokens": jnp.zeros((3, 2)), "pooled": jnp.zeros((4,))}
    out = drop_condition(jax.random.key(0), condition, null, 0.1)
    dropped_tokens = np.asarray(out["tokens"]).sum(axis=(1, 2)) == 0
    dropped_pooled = np.asarray(out["pooled"]).sum(axis=1) == 0
    np.testing.assert_array_equal(dropped_tokens, dropped_pooled)  # jointly
    assert abs(dropped_tokens.mean() - 0.1) < 0.01  # 3 sigma = 0.0064


# -- guidance ---------------------------------------------------------------------------------


def toy_network(x, t, args):
    """A velocity that depends on the condition, x and t, so every identity can fail."""
    params, condition = args
    return params * x * (1.0 + t) + condition["c"][:, None, :]


def test_guidance_identities():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    condition = {"c": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}
    null = {"c": jnp.zeros((3,))}
    args = (jnp.float32(0.7), condition)
    v_cond = toy_network(x, 0.4, args)
    # Scale 1: the conditional prediction (and no second call).
    assert guide(toy_network, Guidance(scale=1.0), null) is toy_network
    g = Guidance(scale=4.5, interval=(0.2, 0.6))
    guided = guide(toy_network, g, null)
    inside = guided(x, jnp.float32(0.4), args)
    v_uncond = toy_network(x, 0.4, (args[0], {"c": jnp.zeros((2, 3))}))
    np.testing.assert_allclose(inside, v_uncond + 4.5 * (v_cond - v_uncond), rtol=1e-6, atol=1e-6)
    for t in (jnp.float32(0.1), jnp.float32(0.7)):  # outside the interval: conditional
        # (within float32 rounding: the branch is compiled, the reference runs eagerly)
        np.testing.assert_allclose(guided(x, t, args), toy_network(x, t, args), rtol=1e-6)
    # Rescale 0 is plain guidance, exactly.
    plain = guided_velocity(v_cond, v_uncond, x, 0.4, Guidance(scale=4.5))
    zero = guided_velocity(v_cond, v_uncond, x, 0.4, Guidance(scale=4.5, rescale=0.0))
    np.testing.assert_array_equal(plain, zero)


@pytest.mark.parametrize("path", PATHS)
def test_guidance_rescale_by_hand(path):
    """Data estimates in float64 numpy, std-matched, mixed, converted back at the same x_t by
    solving x_t = a x1 + b x0, v = a' x1 + b' x0 for the velocity."""
    rng = np.random.default_rng(5)
    x, v_c, v_u = rng.normal(size=(3, 2, 6, 3))
    t, s, phi = 0.35, 3.0, 0.7
    got = guided_velocity(
        *(jnp.asarray(a, jnp.float32) for a in (v_c, v_u, x)), t,
        Guidance(scale=s, rescale=phi, path=path),
    )  # fmt: skip
    if path == "gvp":
        a, b = np.sin(np.pi * t / 2), np.cos(np.pi * t / 2)
        da, db = np.pi / 2 * b, -np.pi / 2 * a
    else:
        a, b, da, db = t, 1 - t, 1.0, -1.0
    to_x1 = lambda v: np.linalg.solve([[a, b], [da, db]], np.stack([x, v]).reshape(2, -1))[0]
    v_g = v_u + s * (v_c - v_u)
    x1_c, x1_g = to_x1(v_c).reshape(x.shape), to_x1(v_g).reshape(x.shape)
    ratio = x1_c.std(axis=(1, 2), keepdims=True) / x1_g.std(axis=(1, 2), keepdims=True)
    x1 = phi * x1_g * ratio + (1 - phi) * x1_g
    x0 = (x - a * x1) / b
    np.testing.assert_allclose(got, da * x1 + db * x0, rtol=1e-4, atol=1e-4)


# -- noise, determinism, inpainting -----------------------------------------------------------


def test_noise_rows_depend_only_on_seed_sample_and_point():
    full = np.asarray(initial_noise(7, jnp.arange(3), jnp.arange(10), 4))
    subset = np.asarray(initial_noise(7, jnp.array([2, 0]), jnp.array([9, 3, 4]), 4))
    np.testing.assert_array_equal(subset, full[[2, 0]][:, [9, 3, 4]])
    other = np.asarray(initial_noise(8, jnp.arange(3), jnp.arange(10), 4))
    assert not np.any(other == full)
    assert abs(full.std() - 1) < 0.3


def test_sampling_is_deterministic_for_a_seed():
    x0 = initial_noise(1, jnp.arange(2), jnp.arange(6), 2)
    g = guide(toy_network, Guidance(scale=3.0), {"c": jnp.zeros((2,))})
    args = (jnp.float32(0.3), {"c": jnp.ones((2, 2))})
    for settings in (SamplerSettings("heun", 8), SamplerSettings("dopri5")):
        a = sample(g, x0, args, settings)
        b = sample(g, initial_noise(1, jnp.arange(2), jnp.arange(6), 2), args, settings)
        np.testing.assert_array_equal(a.x, b.x)
        assert int(a.nfe) == int(b.nfe)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_inpainting_keeps_known_rows_exactly(name):
    x0 = initial_noise(2, jnp.arange(2), jnp.arange(8), 2)
    values = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8, 2)), jnp.float32)
    mask = jnp.zeros((2, 8), bool).at[:, :5].set(True)
    result = sample(linear_field, x0, A, SamplerSettings(name, 10), Known(mask, values, x0))
    np.testing.assert_array_equal(np.asarray(result.x)[:, :5], np.asarray(values)[:, :5])
    free = sample(linear_field, x0, A, SamplerSettings(name, 10))
    # The free rows of this field do not couple to other rows: they equal a plain sample.
    np.testing.assert_allclose(result.x[:, 5:], free.x[:, 5:], rtol=1e-6)
    with pytest.raises(ValueError, match="inpainting"):
        sample(linear_field, x0, A, SamplerSettings("dopri5"), Known(mask, values, x0))
