"""The conditioner registry, the null conditioner and the small trainable image encoder."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ga_jax.models.conditioning.build import build_conditioner


def cfg(**fields):
    return ml_collections.ConfigDict(fields)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"condition.name: expected one of \('none', 'minilm'"):
        build_conditioner(cfg(name="t5"))


def test_null_conditioner_shapes_and_errors():
    cond = build_conditioner(cfg(name="none", context_dim=8, pooled_dim=4))
    tokens, pooled = jax.jit(cond.apply)(None, cond.prepare(captions=np.array(["a", "b"])))
    assert tokens.shape == (2, 1, 8) and pooled.shape == (2, 4)
    assert not jnp.any(tokens) and not jnp.any(pooled)
    with pytest.raises(ValueError, match="needs captions or images"):
        cond.prepare()
    with pytest.raises(ValueError, match="frozen; its weights come from load"):
        cond.init(jax.random.key(0))


def test_image_encoder_shapes_and_every_parameter_learns():
    cond = build_conditioner(
        cfg(name="image_encoder", image_size=32, patch=8, width=16, depth=2, num_heads=2)
    )
    assert cond.trainable and (cond.context_dim, cond.pooled_dim) == (16, 16)
    params = cond.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 255, (3, 40, 50, 3), dtype=np.uint8)
    inputs = cond.prepare(images=images)  # centre-cropped and resized to 32
    assert inputs["images"].shape == (3, 32, 32, 3)
    assert 0.0 <= inputs["images"].min() and inputs["images"].max() <= 1.0
    tokens, pooled = cond.apply(params, inputs)
    assert tokens.shape == (3, 16, 16) and pooled.shape == (3, 16)
    np.testing.assert_allclose(pooled, tokens.mean(1), rtol=1e-6)

    def loss(p):
        t, q = cond.apply(p, inputs)
        return jnp.sum(t**2) + jnp.sum(jnp.sin(q))

    grads = jax.grad(loss)(params)
    for path, g in jax.tree_util.tree_leaves_with_path(jax.tree.map(jnp.abs, grads)):
        assert float(jnp.max(g.value if hasattr(g, "value") else g)) > 0, path
    with pytest.raises(ValueError, match="needs images"):
        cond.prepare(captions=np.array(["a cat"]))
    with pytest.raises(ValueError, match="trainable; its parameters come from init"):
        cond.load()
    with pytest.raises(ValueError, match=r"images: expected \[B, H, W, 3\]"):
        cond.prepare(images=np.zeros((2, 8, 8), np.uint8))
