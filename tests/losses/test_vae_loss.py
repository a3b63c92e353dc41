"""VAE loss terms against closed forms computed another way."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ga_jax.losses.vae import (
    default_loss_config,
    kl_weight,
    normal_loss,
    opacity_prior,
    resize_targets,
    vae_loss,
)


def test_kl_weight_schedule():
    cfg = default_loss_config()
    steps = jnp.array([0, 5_000, 17_500, 30_000, 50_000])
    w = np.asarray(kl_weight(steps, cfg))
    mid = 1e-9 + 0.5 * (2.5e-6 - 1e-9)
    np.testing.assert_allclose(w, [1e-9, 1e-9, mid, 2.5e-6, 2.5e-6], rtol=1e-6)


def test_opacity_prior_is_the_beta_negative_log_density():
    o = np.array([1e-4, 0.01, 0.3, 0.5, 0.9, 0.999])
    clipped = np.clip(o, 1 / 255, 0.99)
    expected = np.mean(-stats.beta(0.5, 0.25).logpdf(clipped))
    np.testing.assert_allclose(opacity_prior(jnp.asarray(o, jnp.float32)), expected, rtol=1e-5)
    # The prior prefers decided opacities: 0.5 costs more than 0.02 or 0.98.
    assert opacity_prior(jnp.array([0.5])) > max(opacity_prior(jnp.array([0.02])),
                                                 opacity_prior(jnp.array([0.98])))


def test_normal_loss():
    n = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # Identical unit normals under full coverage: 0; orthogonal: 1; no coverage: 1.
    np.testing.assert_allclose(normal_loss(n, n, jnp.ones(2)), 0.0, atol=1e-7)
    np.testing.assert_allclose(normal_loss(n, n[::-1], jnp.ones(2)), 1.0, atol=1e-7)
    np.testing.assert_allclose(normal_loss(n, n, jnp.zeros(2)), 1.0, atol=1e-7)


def test_resize_targets_area_average():
    rgb = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8, 3))
    tgt = dict(target_rgb=rgb, target_alpha=rgb[..., 0], target_normal=rgb)
    small = resize_targets(tgt, 4)
    expected = np.asarray(rgb).reshape(2, 3, 4, 2, 4, 2, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(small["target_rgb"], expected, atol=1e-6)
    assert small["target_alpha"].shape == (2, 3, 4, 4)


def fake_render(key, size):
    k = jax.random.split(key, 4)
    return SimpleNamespace(
        rgb=jax.random.uniform(k[0], (1, 2, size, size, 3)),
        alpha=jax.random.uniform(k[1], (1, 2, size, size)),
        normal_world=jax.random.normal(k[2], (1, 2, size, size, 3)),
        distortion=jax.random.uniform(k[3], (1, 2, size, size)),
    )


@pytest.mark.parametrize("step", [0, 20_000, 40_000])
def test_vae_loss_total_is_the_weighted_sum(step):
    cfg = default_loss_config()
    renders = [fake_render(jax.random.key(i), s) for i, s in enumerate((4, 8))]
    targets = [
        dict(target_rgb=r.rgb * 0.5, target_alpha=r.alpha * 0.9, target_normal=r.normal_world)
        for r in renders
    ]
    kl = jnp.array([3.0])
    base, fine = jnp.full((1, 5), 0.3), jnp.full((1, 20), 0.7)
    total, terms = vae_loss(renders, targets, kl, base, fine, jnp.asarray(step), cfg)
    expected = sum(
        np.mean(np.abs(r.rgb * 0.5)) + np.mean(np.abs(r.alpha * 0.1)) for r in renders
    )
    expected += float(kl_weight(step, cfg)) * 3.0
    if step >= cfg.normal_start_step:
        expected += cfg.normal * float(terms["normal"])
    if step >= cfg.distortion_start_step:
        expected += cfg.distortion * float(np.mean(renders[-1].distortion))
    expected += cfg.opacity_prior * float(opacity_prior(base) + opacity_prior(fine))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_lpips_needs_a_function():
    cfg = default_loss_config()
    cfg.use_lpips = True
    r = [fake_render(jax.random.key(0), 4)]
    t = [dict(target_rgb=r[0].rgb, target_alpha=r[0].alpha, target_normal=r[0].normal_world)]
    with pytest.raises(ValueError, match="use_lpips"):
        vae_loss(r, t, jnp.zeros(1), jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.asarray(0), cfg)
    # With a stand-in LPIPS (mean abs difference), the term is that function on one scale.
    fn = lambda a, b: jnp.mean(jnp.abs(a - b), axis=(-3, -2, -1))
    t[0]["target_rgb"] = r[0].rgb * 0.0
    _, terms = vae_loss(
        r, t, jnp.zeros(1), jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.asarray(0), cfg,
        lpips_fn=fn, rng=jax.random.key(0),
    )
    expected = np.mean(np.abs(r[0].rgb * r[0].alpha[..., None]))
    np.testing.assert_allclose(terms["lpips"], expected, rtol=1e-5)
