"""The tiny VAE config on fake data, and reading a run's checkpoint, for the VAE task tests."""

from __future__ import annotations

import jax

from configs.vae import tiny
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import abstract_train_state
from ga_jax.train.tasks.vae import VaeTask


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


def final_state(workdir, config, step=None):
    """(step, state) of a checkpoint of workdir (the latest by default)."""
    ckpt = Checkpointer(workdir / "checkpoints")
    step = ckpt.latest_step() if step is None else step
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.num_devices)
    with rules_context(mesh, None):
        abstract, _ = abstract_train_state(task, optimizer, mesh, None, jax.random.key(9))
    return step, jax.device_get(ckpt.restore(step, abstract))
