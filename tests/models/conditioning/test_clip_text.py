"""The CLIP text conditioner on a tiny random CLIP saved in the real file formats: OpenCLIP
ids, the all-ones mask, the tokens before the final LayerNorm and the pooled EOT index,
each checked against a computation written here."""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from transformers import CLIPTextConfig, CLIPTokenizer, FlaxCLIPTextModelWithProjection
from transformers.models.clip.tokenization_clip import bytes_to_unicode

from ga_jax.models.conditioning.build import build_conditioner
from ga_jax.models.conditioning.clip_text import CONTEXT_LENGTH, openclip_ids


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny CLIP text model + a byte-level BPE tokenizer (vocab.json, merges.txt) whose
    vocabulary is every byte alone and as a word end, then SOT and EOT (EOT the largest id,
    as in the real vocabulary)."""
    root = tmp_path_factory.mktemp("clip")
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    sot, eot = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = sot, eot
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    tokenizer.save_pretrained(root)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=CONTEXT_LENGTH, projection_dim=16,
        bos_token_id=sot, eos_token_id=eot, pad_token_id=0,
    )  # fmt: skip
    FlaxCLIPTextModelWithProjection(config, seed=0).save_pretrained(root)
    return root


def conditioner(path):
    return build_conditioner(ml_collections.ConfigDict(dict(name="clip_text", weights=str(path))))


def test_openclip_ids_by_hand():
    ids, cut = openclip_ids([[5, 6], list(range(100))], sot=7, eot=9, length=6)
    np.testing.assert_array_equal(ids, [[7, 5, 6, 9, 0, 0], [7, 0, 1, 2, 3, 9]])
    assert cut == [False, True]


def test_ids_tokens_and_pooled(clip_dir):
    cond = conditioner(clip_dir)
    assert (cond.context_dim, cond.pooled_dim) == (32, 16)
    captions = np.array(["a cat", "word " * 80])
    inputs = cond.prepare(captions=captions)
    ids = inputs["ids"]
    tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
    sot, eot = tokenizer.bos_token_id, tokenizer.eos_token_id
    bpe = tokenizer("a cat", add_special_tokens=False)["input_ids"]
    want = np.zeros(CONTEXT_LENGTH, np.int32)
    want[: len(bpe) + 2] = [sot, *bpe, eot]
    np.testing.assert_array_equal(ids[0], want)  # SOT, BPE, EOT, zero padding
    assert ids[1, -1] == eot and (ids[1] == eot).sum() == 1  # truncated: EOT forced last
    assert ids.shape == (2, CONTEXT_LENGTH) and ids.dtype == np.int32

    params = cond.load()
    tokens, pooled = cond.apply(params, inputs)
    assert tokens.shape == (2, CONTEXT_LENGTH, 32) and pooled.shape == (2, 16)
    model = FlaxCLIPTextModelWithProjection.from_pretrained(clip_dir)
    ones = model(ids, attention_mask=jnp.ones_like(ids), params=params)
    # The final LayerNorm of our tokens is the model's last_hidden_state: they are its input.
    ln = params["text_model"]["final_layer_norm"]
    x = np.asarray(tokens, np.float64)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    normed = normed * np.asarray(ln["scale"]) + np.asarray(ln["bias"])
    np.testing.assert_allclose(normed, ones.last_hidden_state, atol=1e-5)
    # Pooled: the projection of that LayerNorm at the EOT position (index of EOT in the ids).
    eot_index = np.argmax(ids == eot, axis=1)
    assert eot_index[0] == len(bpe) + 1 and eot_index[1] == CONTEXT_LENGTH - 1
    proj = np.asarray(params["text_projection"]["kernel"])
    np.testing.assert_allclose(pooled, normed[np.arange(2), eot_index] @ proj, atol=1e-5)
    # The mask is all ones: a padding mask changes the padded positions (so it matters).
    masked = model(ids, attention_mask=(ids != 0).astype(np.int32), params=params,
                   output_hidden_states=True)  # fmt: skip
    assert float(np.max(np.abs(masked.hidden_states[-1][0] - tokens[0]))) > 1e-3
    np.testing.assert_allclose(masked.hidden_states[-1][0, : len(bpe) + 2],
                               tokens[0, : len(bpe) + 2], atol=1e-5)  # fmt: skip


def test_missing_directory_or_tokenizer_is_named(tmp_path, clip_dir):
    with pytest.raises(FileNotFoundError, match="nothing_here: not a model directory"):
        conditioner(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="condition.weights: clip_text needs"):
        build_conditioner(ml_collections.ConfigDict(dict(name="clip_text")))
    no_tokenizer = tmp_path / "weights_only"
    no_tokenizer.mkdir()
    for name in ("config.json", "flax_model.msgpack"):
        (no_tokenizer / name).write_bytes((clip_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no CLIP tokenizer"):
        conditioner(no_tokenizer)
    with pytest.raises(ValueError, match="an empty prompt"):
        conditioner(clip_dir).prepare(captions=np.array(["  "]))
    with pytest.raises(ValueError, match="needs captions"):
        conditioner(clip_dir).prepare(images=np.zeros((1, 8, 8, 3), np.uint8))
