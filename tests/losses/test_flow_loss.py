"""The flow-matching loss against a numpy computation of the GVP / linear targets, and its
minimiser: the network that returns the true velocity has zero loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.losses.flow import flow_draws, flow_matching_loss


@pytest.mark.parametrize("path", ["gvp", "linear"])
def test_loss_matches_numpy(path):
    rng = np.random.default_rng(0)
    x1, x0 = rng.normal(size=(2, 4, 9, 3)).astype(np.float32)
    t = rng.uniform(size=4).astype(np.float32)
    w = rng.normal(size=(3, 3)).astype(np.float32)
    predict = lambda x, t: x @ w + t[:, None, None]
    tt = t[:, None, None].astype(np.float64)
    if path == "gvp":
        h = np.pi / 2
        x_t = np.sin(h * tt) * x1 + np.cos(h * tt) * x0
        v = h * (np.cos(h * tt) * x1 - np.sin(h * tt) * x0)
    else:
        x_t, v = tt * x1 + (1 - tt) * x0, x1 - x0
    want = np.mean((x_t @ w + tt - v) ** 2)
    got = flow_matching_loss(predict, jnp.asarray(x1), jnp.asarray(x0), jnp.asarray(t), path)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_true_velocity_has_zero_loss_and_shapes_are_checked():
    x1 = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 2)), jnp.float32)
    x0, t = flow_draws(jax.random.key(0), x1)
    assert x0.shape == x1.shape and t.shape == (3,)
    # Linear path: the velocity is x1 - x0 whatever x_t.
    assert float(flow_matching_loss(lambda x, t: x1 - x0, x1, x0, t, "linear")) == 0.0
    with pytest.raises(ValueError, match="prediction's shape"):
        flow_matching_loss(lambda x, t: x[:, :1], x1, x0, t, "linear")
