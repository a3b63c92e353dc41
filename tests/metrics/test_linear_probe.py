"""The linear probe: it finds a linear boundary where there is one, agrees with the Bayes
rule of two isotropic Gaussians (the nearest class mean), and stays near chance on noise."""

import numpy as np
import pytest

from ga_jax.evaluation.linear_probe import linear_probe


def _gaussians(rng, n, means):
    labels = rng.integers(len(means), size=n)
    return means[labels] + rng.normal(size=(n, means.shape[1])), labels


def test_probe_matches_the_nearest_mean_rule_on_gaussians():
    rng = np.random.default_rng(0)
    means = np.zeros((3, 8))
    means[0, 0], means[1, 1], means[2, 2] = 1.5, 1.5, 1.5
    x, y = _gaussians(rng, 3000, means)
    xt, yt = _gaussians(rng, 1000, means)
    got = linear_probe(x, [f"c{v}" for v in y], xt, [f"c{v}" for v in yt])
    nearest = np.argmin(((xt[:, None] - means[None]) ** 2).sum(-1), axis=1)
    bayes = np.mean(nearest == yt)
    assert got["classes"] == 3
    assert abs(got["test"] - bayes) < 0.03, (got, bayes)


def test_probe_is_near_chance_on_label_free_features_and_checks_shapes():
    rng = np.random.default_rng(1)
    x, xt = rng.normal(size=(2000, 16)), rng.normal(size=(1000, 16))
    y, yt = rng.integers(2, size=2000), rng.integers(2, size=1000)
    got = linear_probe(x, list(y), xt, list(yt))
    assert 0.45 < got["test"] < 0.55
    # A class never seen in training is scored wrong, not dropped.
    unseen = linear_probe(x, list(y), xt[:10], ["new"] * 10)
    assert unseen["test"] == 0.0
    with pytest.raises(ValueError, match=r"\[N, D\] and \[M, D\]"):
        linear_probe(x, list(y), xt[:, :3], list(yt))
    with pytest.raises(ValueError, match="one label per feature row"):
        linear_probe(x, list(y)[:5], xt, list(yt))
