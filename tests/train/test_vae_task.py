"""The VAE task through the training loop on the tiny config (issue 4, acceptance 2): smoke
run, NaN stop with the last checkpoint intact (8 devices = 1 and exact resume:
test_vae_task_mesh_and_resume.py, a file of its own so that parallel test workers share the
compile-heavy runs)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from ga_jax.data.latents import LatentDataset
from ga_jax.evaluation import vae_jobs
from ga_jax.evaluation.error_regions import REGIONS
from ga_jax.evaluation.vae_jobs import evaluate_reconstruction, extract_latents
from ga_jax.metrics.image import view_metrics
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.loop import NonFiniteLossError, train_and_evaluate
from ga_jax.train.metrics_writer import read_jsonl
from ga_jax.train.tasks.vae import VaeTask, child_distance
from tests.train.vae_task_setup import final_state, tiny_config


def test_smoke_train_then_evaluate_and_extract(fake_roots, tmp_path, monkeypatch):
    """Train 2 steps, then the jobs on the checkpoint: reconstruction metrics per object and
    the latent dataset (both halves of every chunk encoded; xyz on each object's sphere)."""
    c = tiny_config(fake_roots, total_steps=2, eval_every_steps=2, checkpoint_every_steps=2)
    last = train_and_evaluate(VaeTask(c), c, tmp_path)
    assert np.isfinite(last["total"]) and np.isfinite(last["eval/psnr"])
    records = read_jsonl(tmp_path / "metrics.jsonl")
    names = set().union(*records)
    for name in (
        "rgb_l1/0",
        "rgb_l1/1",
        "alpha_l1/1",
        "kl",
        "grad_norm",
        "param_norm",
        "update_norm",
        "eval/psnr",
        "eval/ssim",
        "eval/psnr_novel",
        "eval/ssim_novel",
        "surfels/scale_mm/1",
        "surfels/opacity/0",
        "posterior/std",
        "posterior/mean_spread",
        "surfels/child_distance_mm/1",
    ):
        assert name in names, name
    # Steps 0-1 barely move the surfel heads: base scales stay at the closed-form init,
    # softplus(-2.5) x 6.492 mm.
    np.testing.assert_allclose(records[0]["surfels/scale_mm/0"], 0.5122, rtol=0.05)
    assert (tmp_path / "eval" / "step_0000002.png").is_file()
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2]
    assert list((tmp_path / "tensorboard").glob("events.*"))

    result = evaluate_reconstruction(c, tmp_path)
    assert result["step"] == 2 and len(result["objects"]) == 4
    for key in ("psnr", "psnr_novel", "ssim_novel"):
        per_object = [r[key] for r in result["objects"].values()]
        np.testing.assert_allclose(result[f"mean_{key}"], np.mean(per_object), rtol=1e-6)
    assert "| **mean** |" in (tmp_path / "eval_recon.md").read_text()
    regions = result["novel_error_regions"]
    assert sum(regions[r]["share"] for r in REGIONS) == pytest.approx(1.0)
    assert "| interior_offset |" in (tmp_path / "eval_recon.md").read_text()
    # Decoding the mean plus zero noise is decoding the mean; posterior samples differ.
    zero = evaluate_reconstruction(
        c, tmp_path, latent="noisy", noise_std=np.zeros(10, np.float32), tag="_n0"
    )
    assert zero["mean_psnr"] == result["mean_psnr"]
    sampled = evaluate_reconstruction(c, tmp_path, latent="sample", tag="_sample")
    assert sampled["mean_psnr"] != result["mean_psnr"]
    assert (tmp_path / "eval_recon_sample.md").is_file()

    latents = LatentDataset(extract_latents(c, tmp_path, tmp_path / "latents", cond_size=16))
    assert len(latents) == 4 and latents.encodings == 2 and latents.metadata["vae_step"] == 2
    truth = fake_roots[2]
    for item in latents:
        sphere = truth[item["instance_id"] + "/1"]
        radius = np.linalg.norm(item["xyz"] - sphere["centre"], axis=-1)
        np.testing.assert_allclose(radius, sphere["radius"], atol=1e-5)
        assert item["sample"].shape == (2, 128, 10) and item["cond_images"].shape == (2, 16, 16, 3)
        assert not np.array_equal(item["sample"], item["mean"])
    # A flow training set leaves out (and counts) objects with held-out captions.
    monkeypatch.setattr(vae_jobs, "has_heldout_combo", lambda caption: caption.endswith(" 0"))
    left_out = sum(str(item["caption"]).endswith(" 0") for item in latents)
    kept = LatentDataset(
        extract_latents(c, tmp_path, tmp_path / "kept", exclude_heldout_combos=True)
    )
    assert left_out >= 1 and len(kept) == 4 - left_out
    assert kept.metadata["excluded_heldout_combos"] == left_out
    # Batches of 5 of the 8 records (2 per object): one full batch, records 0-4. Objects 0
    # and 1 are written whole; object 2 (1 of 2 encodings) and object 3 (none) are left out
    # and counted, and nobody's encodings are cut.
    monkeypatch.undo()
    with c.unlocked():
        c.data.batch_size = 5
    cut = LatentDataset(extract_latents(c, tmp_path, tmp_path / "cut"))
    assert len(cut) == 2 and cut.encodings == 2
    assert [item["instance_id"] for item in cut] == [item["instance_id"] for item in latents][:2]
    assert cut.metadata["left_out_incomplete"] == 2


def test_child_distance_by_hand():
    rng = np.random.default_rng(0)
    parents, children = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 6, 3))
    want = np.mean(
        [
            np.linalg.norm(children[b, 2 * n + j] - parents[b, n])
            for b in range(2)
            for n in range(3)
            for j in range(2)
        ]
    )
    np.testing.assert_allclose(child_distance(parents, children), want, rtol=1e-6)


def test_nan_stops_and_keeps_the_last_checkpoint(fake_roots, tmp_path):
    c = tiny_config(fake_roots, total_steps=6, checkpoint_every_steps=2, debug_nan_at_step=3)
    with pytest.raises(NonFiniteLossError, match=r"at step 3.*last good checkpoint is step 2"):
        train_and_evaluate(VaeTask(c), c, tmp_path)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.all_steps() == [2]
    step, state = final_state(tmp_path, c)
    assert step == 2 and all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state.params))
    config = json.loads((tmp_path / "checkpoints" / "2" / "config" / "metadata").read_text())
    assert config["train"]["debug_nan_at_step"] == 3


def test_view_metrics_split_encoded_and_novel_views():
    """Renders exact on the K encoded-half views and off by 0.1 on the K novel ones:
    PSNR novel = 10 log10(1 / 0.01) = 20 dB, all views 10 log10(1 / 0.005) = 23.01 dB."""
    target = jax.random.uniform(jax.random.key(0), (2, 4, 16, 16, 3), minval=0.2, maxval=0.8)
    rgb = target.at[:, 2:].add(0.1)
    m = view_metrics(rgb, target)
    np.testing.assert_allclose(m["psnr_novel"], [20.0, 20.0], rtol=1e-5)
    np.testing.assert_allclose(m["psnr"], [10 * np.log10(200.0)] * 2, rtol=1e-5)
    assert np.all(m["ssim"] > m["ssim_novel"]) and np.all(m["ssim_novel"] < 1.0)
