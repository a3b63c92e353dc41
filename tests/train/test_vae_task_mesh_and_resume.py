"""The VAE task on 8 devices equals 1 device, and a resumed run equals an uninterrupted one
(issue 4, acceptance 2; the smoke and NaN tests are in test_vae_task.py)."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

from ga_jax.data.loader import make_vae_loader
from ga_jax.data.transforms import VaeBatch
from ga_jax.parallel.batch import to_global_batch
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.loop import make_train_step, train_and_evaluate
from ga_jax.train.metrics_writer import read_jsonl
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import create_train_state
from ga_jax.train.tasks.vae import VaeTask
from tests.train.same_update import assert_same_update, large_linear_updates
from tests.train.vae_task_setup import final_state, tiny_config


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


# Pallas interpreted on the CPU makes the step ~2 min: `make test-slow` (its sharding is in the
# suite through tests/rendering/test_render_sharded.py).
@pytest.mark.parametrize("backend", ["native", pytest.param("pallas", marks=pytest.mark.slow)])
def test_eight_devices_equal_one(fake_roots, backend):
    """Loss, gradient norm and every parameter update agree to relative 1e-5, on a data x fsdp
    x tensor mesh, with the renderers that are custom calls (each device composites its own
    objects: tests/rendering/test_render_sharded.py; the xla one runs in every other test).

    tests/train/same_update.py says how updates are compared.
    """
    c = tiny_config(fake_roots)
    c.data.batch_size = 8
    large_linear_updates(c)
    c.train.render_backend = backend
    loader = make_vae_loader(c.data)
    host = VaeBatch.from_sample(next(loader))
    p0, p1, m1 = one_step(c, make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, num_devices=1), host)
    q0, q1, m8 = one_step(c, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), host)
    for name in ("total", "grad_norm", "rgb_l1/1"):
        np.testing.assert_allclose(m1[name], m8[name], rtol=1e-5, err_msg=name)
    assert_same_update(p0, p1, q0, q1)


def with_gan(config, start_step):
    config.loss.use_adversarial = True
    config.loss.adversarial = 0.1
    config.loss.adversarial_start_step = start_step
    config.discriminator.base_channels, config.discriminator.norm_groups = 8, 4
    return config


def test_resume_matches_uninterrupted_run(fake_roots, tmp_path):
    """With the PatchGAN term on, so that the discriminator and its optimiser state are part of
    what a checkpoint must carry (the plain path is covered by the smoke and NaN tests).

    The interrupted run is the uninterrupted one killed right after its step-2 checkpoint: its
    checkpoint directory holds step 2 alone, and restarted, it resumes there. (Copying the
    directory instead of training a second run to step 2 saves a compilation of the step.)
    """
    full = with_gan(tiny_config(fake_roots, total_steps=4, checkpoint_every_steps=2), 1)
    train_and_evaluate(VaeTask(full), full, tmp_path / "full")
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "full" / "checkpoints", split / "checkpoints")
    shutil.rmtree(split / "checkpoints" / "4")
    assert Checkpointer(split / "checkpoints").all_steps() == [2]
    train_and_evaluate(VaeTask(full), full, split)
    step_a, state_a = final_state(tmp_path / "full", full)
    step_b, state_b = final_state(split, full)
    assert step_a == step_b == 4
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    # The discriminator trained (from step 1 on) and the generator saw its term.
    _, state_2 = final_state(tmp_path / "full", full, step=2)
    # extra = (discriminator params, its optimiser state)
    for a, b in zip(*map(jax.tree.leaves, (state_a.extra[0], state_2.extra[0])), strict=True):
        assert np.any(a != b)
    # The restarted run logs from step 2 on, and logs what the uninterrupted run logged.
    resumed = read_jsonl(split / "metrics.jsonl")
    uninterrupted = {r["step"]: r for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")}
    assert [r["step"] for r in resumed] == [4]
    for name in ("total", "gan/generator", "gan/discriminator", "gan/real_logits"):
        assert np.isfinite(resumed[-1][name]), name
        assert resumed[-1][name] == uninterrupted[4][name], name
