"""Training-time distributions against their definitions (moments within sampling error) and
the shifted sampling grid against the peers' formula (../shared/notes/
peer_samplers_and_evaluation.md), translated to t = 0 noise."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ga_jax.flow.timesteps import sample_times, sampling_grid, shift_times


def test_logit_normal_times_have_the_requested_logit_moments():
    n, mean, std = 200_000, 0.5, 1.5
    t = np.asarray(sample_times(jax.random.key(0), (n,), "logit_normal", mean, std), np.float64)
    assert t.dtype.kind == "f" and 0 < t.min() and t.max() < 1
    logit = np.log(t) - np.log1p(-t)
    # Standard errors: std / sqrt(n) = 0.0034 for the mean, ~std / sqrt(2n) = 0.0024 for the std.
    assert abs(logit.mean() - mean) < 0.015, logit.mean()
    assert abs(logit.std() - std) < 0.012, logit.std()


def test_uniform_times():
    u = np.asarray(sample_times(jax.random.key(1), (200_000,)))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.002  # se 6.5e-4, 4e-4
    with pytest.raises(ValueError, match="kind"):
        sample_times(jax.random.key(0), (3,), "beta")
    with pytest.raises(ValueError, match="std"):
        sample_times(jax.random.key(0), (3,), "logit_normal", 0.0, 0.0)


def test_shifted_grid_matches_the_peers_formula_and_keeps_the_ends():
    k = 3.0
    grid = np.asarray(sampling_grid(12, k), np.float64)
    # The peers' grid runs over noise-ness tau from 1 to 0: tau' = k tau / (1 + (k - 1) tau).
    tau = np.linspace(1, 0, 13)
    peers = k * tau / (1 + (k - 1) * tau)
    np.testing.assert_allclose(grid, 1.0 - peers, atol=1e-6)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
    assert np.diff(grid)[0] < np.diff(grid)[-1]  # the smallest steps at the noise end
    np.testing.assert_allclose(sampling_grid(12, 1.0), np.linspace(0, 1, 13), atol=1e-7)
    assert float(shift_times(0.25, 1.0)) == 0.25
    with pytest.raises(ValueError, match="timestep shift"):
        sampling_grid(4, 0.5)
    with pytest.raises(ValueError, match="sampling steps"):
        sampling_grid(0)
