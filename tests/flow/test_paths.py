"""Paths against independent references: DESIGN.md's formulas written out in numpy, the
velocity target against finite differences of x_t, and the estimates against the data and
noise the sample was built from."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.flow.paths import PATHS, data_estimate, interpolate, noise_estimate


def numpy_x_t(path, x0, x1, t):
    if path == "gvp":  # DESIGN.md section 6: sin(pi t / 2) x1 + cos(pi t / 2) x0
        return np.sin(np.pi * t / 2) * x1 + np.cos(np.pi * t / 2) * x0
    return t * x1 + (1 - t) * x0


@pytest.mark.parametrize("path", PATHS)
def test_velocity_target_is_the_time_derivative_of_x_t(path):
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=(2, 5, 3))
    h = 1e-6
    with jax.enable_x64(True):
        for t in (0.0, 0.1, 0.5, 0.93, 1.0):
            lo, hi = max(t - h, 0.0), min(t + h, 1.0)
            xa, _ = interpolate(path, x0, x1, jnp.float64(lo))
            xb, _ = interpolate(path, x0, x1, jnp.float64(hi))
            x_t, v = interpolate(path, x0, x1, jnp.float64(t))
            # Central differences, one-sided at the ends (error ~ h |x''| / 2 ~ 3e-6 there).
            np.testing.assert_allclose((xb - xa) / (hi - lo), v, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(x_t, numpy_x_t(path, x0, x1, t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_time_runs_from_noise_to_data_in_float32(path):
    rng = np.random.default_rng(1)
    x0, x1 = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    x_t, v = interpolate(path, x0, x1, np.array([0.0, 0.4, 1.0], np.float32))
    assert x_t.dtype == v.dtype == jnp.float32
    np.testing.assert_allclose(x_t[0], x0[0], atol=1e-6)  # t = 0 is noise
    np.testing.assert_allclose(x_t[2], x1[2], atol=1e-6)  # t = 1 is data
    np.testing.assert_allclose(x_t[1], numpy_x_t(path, x0[1], x1[1], 0.4), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_estimates_recover_data_and_noise(path):
    rng = np.random.default_rng(2)
    x0, x1 = rng.normal(size=(2, 4, 7, 3)).astype(np.float32)
    t = np.array([0.0, 0.3, 0.8, 1.0], np.float32)
    x_t, v = interpolate(path, x0, x1, t)
    np.testing.assert_allclose(data_estimate(path, x_t, v, t), x1, atol=2e-5)
    np.testing.assert_allclose(noise_estimate(path, x_t, v, t), x0, atol=2e-5)


def test_unknown_path_is_named():
    with pytest.raises(ValueError, match="flow path.*'cosine'"):
        interpolate("cosine", jnp.zeros(3), jnp.zeros(3), 0.5)
