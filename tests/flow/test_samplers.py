"""Samplers against ODEs with closed-form solutions (errors bounded, convergence orders
measured), NFE against run-time evaluation counts, failure reporting, reproducible per-point
noise, and inpainting against closed-form and numpy-stepped references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.flow.samplers import Known, SamplerSettings, initial_noise, sample

# dx/dt = A x on rows of 2: x(1) = x(0) expm(A)^T.
A = np.array([[-0.7, 1.3], [-1.1, -0.2]], np.float32)


def linear_field(x, t, args):
    return x @ args.T


def exact(x0):
    w, v = np.linalg.eig(A.astype(np.float64))
    expm = (v @ np.diag(np.exp(w)) @ np.linalg.inv(v)).real
    return x0.astype(np.float64) @ expm.T


def counting(field, calls):
    def counted(x, t, args):
        jax.debug.callback(lambda: calls.append(1))
        return field(x, t, args)

    return counted


def test_euler_and_heun_converge_at_first_and_second_order():
    x0 = np.random.default_rng(2).normal(size=(3, 4, 2)).astype(np.float32)
    steps = (4, 8, 16, 32)
    slopes, errors = {}, {}
    for name in ("euler", "heun"):
        errors[name] = [
            np.abs(
                np.asarray(sample(linear_field, x0, A, SamplerSettings(name, n)).x) - exact(x0)
            ).max()
            for n in steps
        ]
        slopes[name] = -np.polyfit(np.log(steps), np.log(errors[name]), 1)[0]
    assert 0.9 < slopes["euler"] < 1.15, slopes
    assert 1.85 < slopes["heun"] < 2.2, slopes
    assert errors["heun"][-1] < 1e-3 < errors["euler"][-1]


def test_fixed_step_nfe_and_bad_settings():
    x0 = np.zeros((1, 2, 2), np.float32)
    for name, per_step in (("euler", 1), ("heun", 2)):
        calls = []
        result = sample(counting(linear_field, calls), x0, A, SamplerSettings(name, 12))
        jax.block_until_ready(result)
        assert int(result.nfe) == len(calls) == 12 * per_step
        assert bool(result.success) and result.message == "success"
    with pytest.raises(ValueError, match="sampler name"):
        SamplerSettings("rk4")
    with pytest.raises(ValueError, match="sampling steps"):
        SamplerSettings("euler", 0)
    with pytest.raises(ValueError, match="dopri5"):
        SamplerSettings("dopri5", rtol=0.0)


def test_dopri5_error_and_nfe():
    x0 = np.random.default_rng(3).normal(size=(3, 4, 2)).astype(np.float32)
    # Tolerances tightened from the reference's rtol 1e-3 / atol 1e-6 to rtol 1e-6 / atol 1e-8,
    # so that the error bound tests the solver, not the tolerance; float32 rounding stays
    # below 1e-6 here.
    settings = SamplerSettings("dopri5", rtol=1e-6, atol=1e-8, max_steps=4096)
    result = sample(linear_field, x0, A, settings)
    assert bool(result.success) and int(result.status) == 0
    assert np.abs(np.asarray(result.x) - exact(x0)).max() <= 1e-5
    # The reference's tolerances: a global error of the order of rtol, far above the tight
    # solve's; NFE equal to the evaluations counted at run time.
    calls = []
    result = sample(counting(linear_field, calls), x0, A, SamplerSettings("dopri5"))
    jax.block_until_ready(result)
    assert int(result.nfe) == len(calls), (int(result.nfe), len(calls))
    assert 1e-5 < np.abs(np.asarray(result.x) - exact(x0)).max() <= 5e-3


def test_dopri5_at_max_steps_is_reported_not_raised():
    x0 = np.ones((1, 4, 2), np.float32)
    stiff = lambda x, t, args: -200.0 * x + jnp.sin(50.0 * t)
    calls = []
    settings = SamplerSettings("dopri5", rtol=1e-8, atol=1e-10, max_steps=3)
    result = sample(counting(stiff, calls), x0, None, settings)
    jax.block_until_ready(result)
    assert not bool(result.success) and int(result.status) == 1
    assert "max_steps" in result.message
    assert np.all(np.isfinite(np.asarray(result.x)))
    assert int(result.nfe) == len(calls) == 1 + 6 * 3


# -- noise and determinism ---------------------------------------------------------------------


def test_noise_rows_depend_only_on_seed_sample_and_point():
    full = np.asarray(initial_noise(7, jnp.arange(3), jnp.arange(10), 4))
    assert full.shape == (3, 10, 4) and full.dtype == np.float32
    subset = np.asarray(initial_noise(7, jnp.array([2, 0]), jnp.array([9, 3, 4]), 4))
    np.testing.assert_array_equal(subset, full[[2, 0]][:, [9, 3, 4]])
    # Independent reference: the documented key derivation, one row at a time.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 0), 1), 6)
    np.testing.assert_array_equal(full[1, 6], jax.random.normal(key, (4,), jnp.float32))
    stream_2 = np.asarray(initial_noise(7, jnp.arange(3), jnp.arange(10), 4, stream=2))
    assert not np.any(stream_2 == full)  # the stages of one seed draw different noise
    rows = full.reshape(-1, 4)
    assert len(np.unique(rows, axis=0)) == len(rows)  # no two (sample, point) rows alike
    other = np.asarray(initial_noise(8, jnp.arange(3), jnp.arange(10), 4))
    assert not np.any(other == full)


def test_sampling_is_deterministic_for_a_seed():
    def field(x, t, args):  # couples rows, so every row of the noise matters
        return -x + args * jnp.mean(x, axis=-2, keepdims=True) * t

    for settings in (SamplerSettings("heun", 8), SamplerSettings("dopri5")):
        a = sample(field, initial_noise(1, jnp.arange(2), jnp.arange(6), 2), 0.5, settings)
        b = sample(field, initial_noise(1, jnp.arange(2), jnp.arange(6), 2), 0.5, settings)
        c = sample(field, initial_noise(2, jnp.arange(2), jnp.arange(6), 2), 0.5, settings)
        np.testing.assert_array_equal(a.x, b.x)
        assert int(a.nfe) == int(b.nfe)
        assert not np.allclose(a.x, c.x)


# -- inpainting --------------------------------------------------------------------------------


def row_zero_field(x, t, args):
    """Every row moves with row 0's current value: the free rows integrate what the known row
    0 shows the network, so the result tells whether it rode its path."""
    return jnp.broadcast_to(x[..., :1, :], x.shape)


def path_coefficients(path, t):
    t = np.asarray(t, np.float64)
    if path == "gvp":
        return np.sin(np.pi * t / 2), np.cos(np.pi * t / 2)
    return t, 1 - t


@pytest.mark.parametrize("path", ["gvp", "linear"])
@pytest.mark.parametrize("name", ["euler", "heun", "dopri5"])
def test_inpainting_holds_known_rows_and_shows_them_on_their_path(name, path):
    x0 = np.asarray(initial_noise(2, jnp.arange(2), jnp.arange(5), 3))
    values = np.random.default_rng(6).normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.zeros((2, 5), bool)
    mask[:, 0] = mask[:, 3] = True
    steps = 10
    settings = SamplerSettings(name, steps, rtol=1e-7, atol=1e-9, max_steps=4096)
    result = sample(row_zero_field, x0, None, settings, Known(mask, values), path)
    x = np.asarray(result.x)
    np.testing.assert_array_equal(x[mask], values[mask])  # exactly
    # Free rows: x(1) = x(0) + integral of row 0's path a(t) y + b(t) n over the solver's
    # quadrature (left Riemann sum for Euler, trapezoid for Heun, exact for Dopri5).
    y, n = values[:, :1].astype(np.float64), x0[:, :1].astype(np.float64)
    if name == "dopri5":
        weight = 2 / np.pi if path == "gvp" else 0.5  # integral of a, and of b, over [0, 1]
        shift = weight * (y + n)
    else:
        t = np.linspace(0.0, 1.0, steps + 1)
        a, b = path_coefficients(path, t)
        w = np.full(steps + 1, 1.0 / steps)
        if name == "euler":
            w[-1] = 0.0
        else:
            w[0] = w[-1] = 0.5 / steps
        shift = (w @ a) * y + (w @ b) * n
    want = x0 + shift
    np.testing.assert_allclose(x[~mask], want[~mask], rtol=1e-5, atol=2e-6)


def test_known_shapes_are_checked():
    x0 = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="known"):
        sample(row_zero_field, x0, None, None, Known(np.zeros((2, 4), bool), x0))
