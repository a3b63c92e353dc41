"""What the VAE step and the jobs hold in memory (issue 15, acceptance 4): LPIPS' frozen VGG
weights are an argument of the jitted step, not constants in it; a params-only restore
allocates the parameters and nothing else."""

from __future__ import annotations

import gc
import re

import jax
import numpy as np

from configs.vae import tiny
from ga_jax.data.transforms import VaeBatch
from ga_jax.evaluation.vae_jobs import restore_vae
from ga_jax.losses import lpips
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.loop import make_train_step
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import abstract_train_state, create_train_state
from ga_jax.train.tasks.vae import VaeTask

MB = 2**20
# A dense constant in StableHLO text; large ones are printed as one hex string.
HEX_CONSTANT = re.compile(r'dense<"0x([0-9A-Fa-f]+)">')


def largest_hlo_constant_mb(hlo_text: str) -> float:
    return max((len(m) // 2 for m in HEX_CONSTANT.findall(hlo_text)), default=0) / MB


def test_the_constant_scan_sees_a_closed_over_array():
    big = np.random.default_rng(0).random((512, 1024), np.float32)  # 2 MB, not a splat
    text = jax.jit(lambda x: x + big).lower(np.ones((512, 1024), np.float32)).as_text()
    assert 1.9 < largest_hlo_constant_mb(text) < 2.1


def tiny_batch(config, batch=2) -> VaeBatch:
    d = config.data
    k, r, s = 2 * d.num_supervise_per_half, d.render_size, d.encoder_size
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
    return VaeBatch(
        encoder_input=f32(batch, d.views_per_half, s, s, 15),
        fps_xyz=f32(batch, d.fps_points, 3),
        target_rgb=f32(batch, k, r, r, 3),
        target_alpha=f32(batch, k, r, r),
        target_normal=f32(batch, k, r, r, 3),
        target_cameras=f32(batch, k, 25),
        background=f32(batch, 3),
    )


def test_lpips_weights_are_an_argument_not_a_constant(tmp_path):
    path = tmp_path / "lpips_vgg.npz"
    lpips.save_lpips_params(path, lpips.random_lpips_params(jax.random.key(0)))  # full VGG16
    config = tiny.get_config()
    config.loss.use_lpips, config.loss.lpips_weights = True, str(path)
    config.mesh.num_devices = 1
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    frozen = task.frozen()
    frozen_mb = sum(x.nbytes for x in jax.tree.leaves(frozen)) / MB
    assert frozen_mb > 50  # the real network's size: as constants it would show
    mesh = make_mesh(config.mesh.shape, num_devices=1)
    with rules_context(mesh, None):
        state, _ = abstract_train_state(task, optimizer, mesh, None, jax.random.key(0))
        step = make_train_step(task, optimizer)
        batch = tiny_batch(config)
        jaxpr = jax.make_jaxpr(step)(state, batch, jax.random.key(1), frozen)
        largest = max((np.asarray(c).nbytes for c in jaxpr.consts), default=0) / MB
        assert largest < 1.0, f"a constant of {largest:.1f} MB in the step"
        hlo = jax.jit(step, donate_argnums=0).lower(state, batch, jax.random.key(1), frozen)
        largest = largest_hlo_constant_mb(hlo.as_text())
        assert largest < 1.0, f"a constant of {largest:.1f} MB in the lowered step"
        # Control: the same step with the weights closed over holds them as constants.
        closed = jax.make_jaxpr(lambda s, b, r: step(s, b, r, frozen))(
            state, batch, jax.random.key(1)
        )
        assert max(np.asarray(c).nbytes for c in closed.consts) / MB > 1.0


def live_bytes() -> int:
    gc.collect()
    return sum(x.nbytes for x in jax.live_arrays())


def test_params_only_restore_allocates_only_the_parameters(tmp_path):
    config = tiny.get_config()
    config.mesh.num_devices = 1
    task, optimizer = VaeTask(config), make_optimizer(config.optimizer)
    mesh = make_mesh(config.mesh.shape, num_devices=1)
    with rules_context(mesh, None):
        state, _ = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        param_bytes = sum(x.nbytes for x in jax.tree.leaves(state.params))
        full_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
        ckpt = Checkpointer(tmp_path / "checkpoints")
        ckpt.save(1, state)
        ckpt.close()
        del state
        before = live_bytes()
        _, params, step = restore_vae(config, tmp_path, mesh)
        allocated = live_bytes() - before
    assert step == 1 and full_bytes > 2.5 * param_bytes  # Adam's two moments per parameter
    assert abs(allocated - param_bytes) <= 0.1 * param_bytes, (allocated, param_bytes)
    assert sum(x.nbytes for x in jax.tree.leaves(params)) == param_bytes
