"""Parameter groups: labels by regex, and one AdamW step per group against the formula."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ga_jax.train.optimizers import group_labels, learning_rate_schedule, make_optimizer

PARAMS = {
    "encoder": {"conv": {"kernel": jnp.ones((2, 2))}},
    "decoder": {"blocks": {"kernel": jnp.ones((3,))}, "base_head": {"bias": jnp.ones((2,))}},
}
GROUPS = [
    ("heads", r"^decoder/(base_head|upsampler)", 1e-3, 1e-2),
    ("encoder", r"^encoder/", 1e-2, 1e-3),
    ("decoder", r"^decoder/", 5e-3, 0.0),
]


def config(clip_norm=0.0):
    return ml_collections.ConfigDict(
        dict(clip_norm=clip_norm, b1=0.9, b2=0.999, eps=1e-8, groups=GROUPS, warmup_steps=0)
    )


def test_labels_first_match_wins():
    labels = group_labels(PARAMS, GROUPS)
    assert labels["decoder"]["base_head"]["bias"] == "heads"
    assert labels["decoder"]["blocks"]["kernel"] == "decoder"
    assert labels["encoder"]["conv"]["kernel"] == "encoder"
    with pytest.raises(ValueError, match="'encoder/conv/kernel' matches no group"):
        group_labels(PARAMS, GROUPS[:1] + GROUPS[2:])


def test_one_adamw_step_per_group():
    """First AdamW step: m/(sqrt(v)+eps) = sign(g) (bias-corrected), so
    update = -lr * (sign(g) + wd * p)."""
    opt = make_optimizer(config())
    grads = {
        "encoder": {"conv": {"kernel": jnp.full((2, 2), 0.5)}},
        "decoder": {
            "blocks": {"kernel": jnp.full((3,), -2.0)},
            "base_head": {"bias": jnp.full((2,), 3.0)},
        },
    }
    updates, _ = opt.update(grads, opt.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["encoder"]["conv"]["kernel"], -1e-2 * (1 + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(updates["decoder"]["blocks"]["kernel"], -5e-3 * (-1), rtol=1e-5)
    head = updates["decoder"]["base_head"]["bias"]
    np.testing.assert_allclose(head, -1e-3 * (1 + 1e-2), rtol=1e-5)


def test_clipping_scales_gradients():
    """Adam's first moment after one step is (1 - b1) * the clipped gradient g / |g|."""
    opt = make_optimizer(config(clip_norm=1.0))
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 1e6), PARAMS)  # |g| = 1e6 * 3
    _, state = opt.update(grads, opt.init(PARAMS), PARAMS)
    moments = [
        leaf
        for _, mu in optax.tree_utils.tree_get_all_with_path(state, "mu")
        for leaf in jax.tree.leaves(mu)
        if not isinstance(leaf, optax.MaskedNode)
    ]
    assert len(moments) == 3
    for mu in moments:
        np.testing.assert_allclose(mu, 0.1 / 3.0, rtol=1e-5)


def test_warmup_then_cosine_decay_matches_the_formula():
    """lr(t) = lr * t / W during the warm-up, then
    lr * (f + (1 - f) * (1 + cos(pi * (t - W) / (D - W))) / 2) until D, then lr * f."""
    cfg = config()
    cfg.update(dict(warmup_steps=10, decay_steps=110, final_lr_fraction=0.1))
    schedule = learning_rate_schedule(cfg, 2e-3)
    for t in (0, 5, 10, 35, 60, 109, 110, 500):
        if t < 10:
            expected = 2e-3 * t / 10
        elif t < 110:
            expected = 2e-3 * (0.1 + 0.9 * (1 + np.cos(np.pi * (t - 10) / 100)) / 2)
        else:
            expected = 2e-3 * 0.1
        np.testing.assert_allclose(float(schedule(t)), expected, rtol=1e-5, err_msg=f"step {t}")
    cfg.decay_steps = 10
    with pytest.raises(ValueError, match="decay_steps \\(10\\) must exceed"):
        learning_rate_schedule(cfg, 1e-3)
    cfg.decay_steps, cfg.final_lr_fraction = 100, 1.5
    with pytest.raises(ValueError, match="final_lr_fraction must be in"):
        learning_rate_schedule(cfg, 1e-3)


def test_no_schedule_is_a_constant():
    assert learning_rate_schedule(config(), 3e-4) == 3e-4
