"""The PatchGAN discriminator and its hinge losses (issue 4, the optional adversarial term)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ga_jax.losses.patchgan import (
    PatchDiscriminator,
    build_discriminator,
    default_discriminator_config,
    discriminator_hinge_loss,
    generator_hinge_loss,
)


def test_output_map_is_the_published_30x30_at_256px():
    """pix2pix's 3-layer PatchGAN maps a 256 px image to a 30 x 30 logit map."""
    disc = PatchDiscriminator(base_channels=8, num_layers=3, norm_groups=4)
    images = jnp.zeros((2, 256, 256, 3))
    shapes = jax.eval_shape(lambda: disc.init_with_output(jax.random.key(0), images)[0])
    assert shapes.shape == (2, 30, 30, 1)


def test_parameter_count_matches_pix2pix():
    """The default (64 channels, 3 layers) has the 2.765 M parameters that the pix2pix /
    CycleGAN code reports for its NLayerDiscriminator (GroupNorm has BatchNorm's 2 per
    channel); by layer: 3,136 + 131,328 + 524,800 + 2,098,176 + 8,193."""
    disc = build_discriminator(default_discriminator_config())
    params = jax.eval_shape(disc.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    assert count == 2_765_633


def test_hinge_losses_by_hand():
    real = jnp.array([2.0, 0.5, -1.0])
    fake = jnp.array([-3.0, 0.0, 0.25])
    expected_d = 0.5 * (np.mean([0.0, 0.5, 2.0]) + np.mean([0.0, 1.0, 1.25]))
    np.testing.assert_allclose(discriminator_hinge_loss(real, fake), expected_d, rtol=1e-6)
    np.testing.assert_allclose(generator_hinge_loss(fake), np.mean([3.0, 0.0, -0.25]), rtol=1e-6)
    # A confident, correct discriminator has zero loss.
    assert float(discriminator_hinge_loss(jnp.full(4, 1.5), jnp.full(4, -1.5))) == 0.0


def test_discriminator_learns_to_separate_real_from_fake():
    """A few AdamW steps on smooth 'real' images vs noisy 'fake' ones drive the hinge loss
    from ~1 (chance) towards 0, and the generator term rises for the fakes."""
    cfg = default_discriminator_config()
    cfg.base_channels, cfg.norm_groups, cfg.lr, cfg.b1 = 8, 4, 2e-3, 0.5
    disc = build_discriminator(cfg)
    key_r, key_f = jax.random.split(jax.random.key(2))
    yy, xx = jnp.meshgrid(jnp.linspace(0, 1, 32), jnp.linspace(0, 1, 32), indexing="ij")
    shade = jax.random.uniform(key_r, (8, 1, 1, 3))
    real = jnp.clip(shade * (0.5 + 0.5 * (xx + yy)[None, ..., None] / 2), 0, 1)
    fake = jax.random.uniform(key_f, (8, 32, 32, 3))
    params = disc.init(jax.random.key(0), real)["params"]
    opt = optax.adamw(cfg.lr, b1=cfg.b1, b2=cfg.b2)
    state = opt.init(params)

    def loss(p):
        return discriminator_hinge_loss(
            disc.apply({"params": p}, real), disc.apply({"params": p}, fake)
        )

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    first = float(loss(params))
    for _ in range(30):
        params, state, value = step(params, state)
    assert 0.5 < first < 1.5
    assert float(loss(params)) < 0.2 * first
    assert float(generator_hinge_loss(disc.apply({"params": params}, fake))) > 0.5


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"images: expected \[N, H, W, 3\]"):
        PatchDiscriminator().init(jax.random.key(0), jnp.zeros((8, 8, 3)))
    cfg = default_discriminator_config()
    cfg.num_layers = 0
    with pytest.raises(ValueError, match="config.discriminator"):
        build_discriminator(cfg)
