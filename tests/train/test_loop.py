"""The training loop is model-agnostic: a toy regression task trains through it, resumes
exactly, keeps EMA parameters, reads frozen parameters as arguments and restores its
parameters alone (issue 15, acceptance 3)."""

from __future__ import annotations

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ga_jax.parallel.batch import to_global_batch
from ga_jax.parallel.mesh import make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer, restore_params
from ga_jax.train.loop import itstime, make_train_step, train_and_evaluate
from ga_jax.train.metrics_writer import read_jsonl
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import abstract_train_state, create_train_state, ema_update
from ga_jax.train.task import Task

IN, HIDDEN, OUT = 6, 16, 3


class ToyRegression(Task):
    """y = tanh(x A) B + noise with a frozen 'teacher' (A, B); a one-hidden-layer MLP learns it.
    Parameters carry logical axis names, batches come from grain (checkpointable)."""

    rng_streams = ("noise",)
    log_metrics = ("mse",)

    def __init__(self, config):
        self.config = config
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(64, IN)).astype(np.float32)
        teacher = {
            "a": rng.normal(size=(IN, HIDDEN)).astype(np.float32) / np.sqrt(IN),
            "b": rng.normal(size=(HIDDEN, OUT)).astype(np.float32) / np.sqrt(HIDDEN),
        }
        self.teacher = teacher

    def init_params(self, rng):
        k1, k2 = jax.random.split(rng)
        init = nn.initializers.lecun_normal()
        return {
            "w1": nn.with_logical_partitioning(init, ("embed", "mlp"))(k1, (IN, HIDDEN)),
            "w2": nn.with_logical_partitioning(init, ("mlp", "embed"))(k2, (HIDDEN, OUT)),
        }

    def frozen(self):
        return {"teacher": self.teacher}

    @staticmethod
    def predict(params, x):
        return jnp.tanh(x @ params["w1"]) @ params["w2"]

    def loss(self, params, batch, rngs, step, frozen, extra):
        target = self.predict({"w1": frozen["teacher"]["a"], "w2": frozen["teacher"]["b"]}, batch)
        target = target + 0.01 * jax.random.normal(rngs["noise"], target.shape)
        mse = jnp.mean((self.predict(params, batch) - target) ** 2)
        return mse, ({"total": mse, "mse": mse}, None)

    def train_data(self):
        ds = grain.MapDataset.source(list(self.x)).shuffle(seed=1).repeat().batch(8)
        return iter(ds.to_iter_dataset())

    def eval_data(self):
        return [self.x[:16]]

    def evaluate(self, params, batch, frozen):
        teacher = {"w1": frozen["teacher"]["a"], "w2": frozen["teacher"]["b"]}
        err = jnp.mean((self.predict(params, batch) - self.predict(teacher, batch)) ** 2, -1)
        return {"mse": err}, None


def toy_config(**train):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""
    c.optimizer = ml_collections.ConfigDict(
        dict(clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8, groups=(("all", ".*", 3e-2, 0.0),))
    )
    c.train = ml_collections.ConfigDict(
        dict(
            total_steps=8,
            log_every_steps=2,
            eval_every_steps=4,
            checkpoint_every_steps=4,
            keep_checkpoints=5,
            time_limit_minutes=0.0,
            ema_decay=0.5,
        )
    )
    c.train.update(train)
    c.mesh = ml_collections.ConfigDict(
        dict(shape={"data": -1, "fsdp": 2, "tensor": 1}, num_devices=-1, rules=None)
    )
    return c


def restore_state(workdir, config, step=None):
    task = ToyRegression(config)
    mesh = make_mesh(config.mesh.shape)
    with rules_context(mesh, None):
        abstract, _ = abstract_train_state(
            task, make_optimizer(config.optimizer), mesh, None, jax.random.key(9), ema=True
        )
    return jax.device_get(Checkpointer(workdir / "checkpoints").restore(step, abstract))


def test_toy_task_trains_and_resumes_exactly_on_8_devices(tmp_path):
    full = toy_config()
    last = train_and_evaluate(ToyRegression(full), full, tmp_path / "full")
    killed = toy_config(total_steps=4)
    train_and_evaluate(ToyRegression(killed), killed, tmp_path / "split")
    train_and_evaluate(ToyRegression(full), full, tmp_path / "split")
    a, b = restore_state(tmp_path / "full", full), restore_state(tmp_path / "split", full)
    assert int(a.step) == int(b.step) == 8
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # It learned, the evaluation ran on the EMA parameters, every step was logged once.
    records = [r for r in read_jsonl(tmp_path / "full" / "metrics.jsonl") if "mse" in r]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert records[-1]["mse"] < 0.5 * records[0]["mse"], [r["mse"] for r in records]
    assert np.isfinite(last["eval/mse"]) and {"grad_norm", "param_norm"} <= set(last)
    # EMA: decay 0.5 pulls halfway towards the parameters each step, so it trails them.
    assert not np.allclose(a.ema_params["w1"], a.params["w1"])


def test_params_only_restore_reads_the_parameters_alone(tmp_path):
    config = toy_config(total_steps=4)
    task = ToyRegression(config)
    train_and_evaluate(task, config, tmp_path)
    state = restore_state(tmp_path, config)
    abstract = jax.eval_shape(lambda: nn.unbox(task.init_params(jax.random.key(0))))
    for field in ("params", "ema_params"):
        params, step = restore_params(tmp_path / "checkpoints", abstract, field=field)
        assert step == 4
        for x, y in zip(
            jax.tree.leaves(params), jax.tree.leaves(getattr(state, field)), strict=True
        ):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_params(tmp_path / "nowhere", abstract)


def test_init_from_starts_a_new_run_from_another_runs_parameters(tmp_path):
    first = toy_config(total_steps=4)
    train_and_evaluate(ToyRegression(first), first, tmp_path / "first")
    second = toy_config(total_steps=2)
    second.init_from = str(tmp_path / "first" / "checkpoints")
    train_and_evaluate(ToyRegression(second), second, tmp_path / "second")
    trained = restore_state(tmp_path / "first", first)
    again = restore_state(tmp_path / "second", second, step=2)
    assert int(again.step) == 2  # a new run: its own step count and optimiser
    # Its first step started from the first run's parameters: close to them, not to a fresh init.
    fresh = jax.device_get(nn.unbox(ToyRegression(first).init_params(jax.random.key(0))))
    near = np.abs(again.params["w1"] - trained.params["w1"]).max()
    assert near < 0.5 * np.abs(fresh["w1"] - trained.params["w1"]).max()


def test_ema_update_and_itstime_by_hand():
    ema = ema_update({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 6.0])}, 0.75)
    np.testing.assert_allclose(ema["w"], [1.5, 3.0])
    assert [d for d in range(1, 11) if itstime(d, 4, final=d == 10)] == [4, 8, 10]
    assert not itstime(3, 0, final=False) and itstime(3, 0, final=True)


class NoiselessToy(ToyRegression):
    """The toy without its noise: the loss is a plain mean over the batch."""

    def loss(self, params, batch, rngs, step, frozen, extra):
        target = self.predict({"w1": frozen["teacher"]["a"], "w2": frozen["teacher"]["b"]}, batch)
        mse = jnp.mean((self.predict(params, batch) - target) ** 2)
        return mse, ({"total": mse, "mse": mse}, None)


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_gradient_accumulation_equals_the_whole_batch(accum_steps):
    """k micro-batches in turn give the whole batch's mean gradient: the same update and loss
    as one step on the batch, on 8 devices (each holding its share of every micro-batch)."""
    config = toy_config()
    task, optimizer = NoiselessToy(config), make_optimizer(config.optimizer)
    mesh = make_mesh(config.mesh.shape)
    with rules_context(mesh, None):
        state, shardings = create_train_state(task, optimizer, mesh, None, jax.random.key(0))
        batch = to_global_batch(task.x[:32], mesh, ("data", "fsdp"))
        frozen = task.frozen()
        results = []
        for k in (1, accum_steps):
            step = jax.jit(make_train_step(task, optimizer, accum_steps=k))
            new, metrics = step(state, batch, jax.random.key(1), frozen)
            results.append((jax.device_get(new.params), jax.device_get(metrics)))
    (p1, m1), (pk, mk) = results
    np.testing.assert_allclose(mk["total"], m1["total"], rtol=1e-6)
    np.testing.assert_allclose(mk["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(pk), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        make_train_step(task, optimizer, accum_steps=0)
