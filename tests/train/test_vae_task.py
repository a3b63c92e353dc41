"""The VAE task through the training loop on the tiny config (issue 4, acceptance 2): smoke
run, 8 devices = 1 device, exact resume, NaN stop with the last checkpoint intact."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from configs.vae import tiny
from ga_jax.data.latents import LatentDataset
from ga_jax.data.loader import make_vae_loader
from ga_jax.data.transforms import VaeBatch
from ga_jax.evaluation import vae_jobs
from ga_jax.evaluation.error_regions import REGIONS
from ga_jax.evaluation.vae_jobs import evaluate_reconstruction, extract_latents
from ga_jax.metrics.image import view_metrics
from ga_jax.parallel.batch import to_global_batch
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.loop import NonFiniteLossError, make_train_step, train_and_evaluate
from ga_jax.train.metrics_writer import read_jsonl
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import abstract_train_state, create_train_state
from ga_jax.train.tasks.vae import VaeTask, child_distance
from tests.data.fake_vae_data import make_fake_dataset


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_vae")
    gbuffer, fps, truth = make_fake_dataset(
        root, classes={"Spheres": 4}, chunks_per_object=1, views=4, size=32, points=256
    )
    return gbuffer, fps, truth


def tiny_config(fake_roots, **train):
    c = tiny.get_config()
    for data in (c.data, c.eval_data):
        data.gbuffer_root, data.fps_root = str(fake_roots[0]), str(fake_roots[1])
        data.jitter_prob = 0.0  # extracted xyz must lie on the spheres
    c.train.eval_every_steps = 0
    # One device keeps these runs fast; test_eight_devices_equal_one covers the mesh.
    c.mesh.num_devices = 1
    for data in (c.data, c.eval_data):
        data.batch_size = 2
    for key, value in train.items():
        setattr(c.train, key, value)
    return c


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


def one_step(config, mesh, host_batch):
    """(parameters before, after, metrics) of one train step on `mesh`."""
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    with rules_context(mesh, None):
        state, shardings = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        before = jax.device_get(state.params)
        batch = to_global_batch(host_batch, mesh, ("data", "fsdp"))
        step = jax.jit(make_train_step(task, optimizer))
        state, metrics = step(state, batch, jax.random.key(1), None)
    return before, jax.device_get(state.params), jax.device_get(metrics)


def test_eight_devices_equal_one(fake_roots):
    """Loss, gradient norm and every parameter update agree to relative 1e-5.

    Adam's first update is lr * g / (|g| + eps): with a small eps it is a sign function of g,
    and gradients of ~1e-12 that round differently in the two runs would flip whole updates.
    A large eps makes the update proportional to g, so the comparison sees the gradient.
    """
    c = tiny_config(fake_roots)
    c.data.batch_size = 8
    c.optimizer.eps = 1.0
    loader = make_vae_loader(c.data)
    host = VaeBatch.from_sample(next(loader))
    p0, p1, m1 = one_step(c, make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, num_devices=1), host)
    q0, q1, m8 = one_step(c, make_mesh({"data": 4, "fsdp": 2, "tensor": 1}), host)
    for name in ("total", "grad_norm", "rgb_l1/1"):
        np.testing.assert_allclose(m1[name], m8[name], rtol=1e-5, err_msg=name)
    for a0, a1, b0, b1 in zip(*map(jax.tree.leaves, (p0, p1, q0, q1)), strict=True):
        np.testing.assert_array_equal(a0, b0)  # the same initial parameters
        update_1, update_8 = a1 - a0, b1 - b0
        scale = max(float(np.max(np.abs(update_1))), 1e-12)
        assert float(np.max(np.abs(update_1 - update_8))) / scale <= 1e-5


def final_state(workdir, config, step=None):
    """(step, state) of a checkpoint of workdir (the latest by default)."""
    ckpt = Checkpointer(workdir / "checkpoints")
    step = ckpt.latest_step() if step is None else step
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.num_devices)
    with rules_context(mesh, None):
        abstract, _ = abstract_train_state(task, optimizer, mesh, None, jax.random.key(9))
    return step, jax.device_get(ckpt.restore(step, abstract))


def with_gan(config, start_step):
    config.loss.use_adversarial = True
    config.loss.adversarial = 0.1
    config.loss.adversarial_start_step = start_step
    config.discriminator.base_channels, config.discriminator.norm_groups = 8, 4
    return config


def test_resume_matches_uninterrupted_run(fake_roots, tmp_path):
    """With the PatchGAN term on, so that the discriminator and its optimiser state are part of
    what a checkpoint must carry (the plain path is covered by the smoke and NaN tests)."""
    full = with_gan(tiny_config(fake_roots, total_steps=4, checkpoint_every_steps=2), 1)
    train_and_evaluate(VaeTask(full), full, tmp_path / "full")
    killed = with_gan(tiny_config(fake_roots, total_steps=2, checkpoint_every_steps=2), 1)
    # The "killed" run stops after its checkpoint; restarted, it resumes at step 2.
    train_and_evaluate(VaeTask(killed), killed, tmp_path / "split")
    train_and_evaluate(VaeTask(full), full, tmp_path / "split")
    step_a, state_a = final_state(tmp_path / "full", full)
    step_b, state_b = final_state(tmp_path / "split", full)
    assert step_a == step_b == 4
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    # The discriminator trained (from step 1 on) and the generator saw its term.
    _, state_2 = final_state(tmp_path / "full", full, step=2)
    # extra = (discriminator params, its optimiser state)
    for a, b in zip(*map(jax.tree.leaves, (state_a.extra[0], state_2.extra[0])), strict=True):
        assert np.any(a != b)
    records = read_jsonl(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    for name in ("gan/generator", "gan/discriminator", "gan/real_logits", "gan/fake_logits"):
        assert np.isfinite(records[-1][name]), name


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
