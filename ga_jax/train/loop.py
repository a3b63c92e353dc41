"""The training loop every model shares: `train_and_evaluate(task, config, workdir)`.

What it does with a Task (ga_jax/train/task.py) and a config (configs/vae/base.py documents
the fields: seed, init_from, optimizer, train, mesh):
- a mesh from `config.mesh` (Auto axes) with its logical axis rules active while tracing;
  the state's shapes from jax.eval_shape, its shardings from the logical axis names, and the
  state created already sharded by a jitted init, or restored onto that abstract target
  (ga_jax/train/state.py);
- resume order: the latest checkpoint in `workdir/checkpoints` (state + data iterator), else
  `config.init_from` (another run's checkpoints directory: its parameters, a fresh
  optimiser at step 0), else scratch;
- one jitted step `(state, batch, rng, frozen) -> (state, metrics)` with donated state:
  rng = fold_in(rng, step) split into the task's named streams; a step whose gradients are
  not finite leaves the parameters and optimiser state as they were (counted in the
  metrics); metrics hold every loss term and the grad / param / update norms; with
  train.ema_decay > 0 the state carries an exponential moving average of the parameters,
  which evaluations then use;
- the compiled step's memory is printed once;
- one predicate, `itstime`, decides every periodic action (log, evaluate, save): every N
  steps and at the last step, which the time limit (train.time_limit_minutes) can bring
  forward;
- the host does not wait for the device between steps: metrics stay on the device until a
  log step (or a save) reads the window since the last one. A non-finite loss then stops
  training with a message naming its step and the last good checkpoint, and before every save
  the window is read and the state checked finite, so a bad state never becomes the latest
  checkpoint;
- metrics to metrics.jsonl and TensorBoard, progress lines with step rate and ETA, periodic
  evaluation (the task's metrics averaged over its eval batches, compiled once per run) with
  the first batch's images saved by the task;
- train.grad_accum_steps = k > 1: each batch's gradient from k micro-batches in turn
  (make_train_step);
- several processes (launch/cluster.py): each loads its block of the global batch, results
  are gathered to every process, process 0 alone writes metrics and images, and every process
  takes part in orbax's checkpoint writes.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ga_jax.parallel.batch import to_global_batch, to_host
from ga_jax.parallel.mesh import batch_axes, batch_sharding, make_mesh, rules_context
from ga_jax.train.checkpoint import Checkpointer, restore_params
from ga_jax.train.metrics_writer import MetricWriter, Progress
from ga_jax.train.optimizers import make_optimizer
from ga_jax.train.state import TrainState, abstract_train_state, create_train_state, ema_update
from ga_jax.train.task import Task

__all__ = [
    "NonFiniteLossError",
    "itstime",
    "jit_train_step",
    "make_train_step",
    "train_and_evaluate",
]

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the message names the step and the last checkpoint."""


def itstime(done: int, every: int, final: bool) -> bool:
    """Whether a periodic action runs after `done` steps: every `every` steps (0 = never)
    and after the last step."""
    return final or (every > 0 and done % every == 0)


def make_train_step(
    task: Task,
    optimizer: optax.GradientTransformation,
    ema_decay: float = 0.0,
    accum_steps: int = 1,
):
    """The pure step (state, batch, rng, frozen) -> (state, metrics); jit it with donated
    state.

    accum_steps = k > 1: the batch's gradient is the mean of k micro-batches' gradients, taken
    one after the other under lax.scan (the activations of one micro-batch alive at a time).
    Micro-batch i holds rows i, i + k, i + 2k, ... of the batch, so each device keeps its share
    of every micro-batch; each gets its own random keys. Tasks that train extra state from the
    forward pass (the VAE's PatchGAN) take one step per batch and cannot accumulate.
    """
    if accum_steps < 1:
        raise ValueError(f"train.grad_accum_steps: expected an integer >= 1, got {accum_steps}")

    def rngs_of(key):
        return dict(
            zip(task.rng_streams, jax.random.split(key, len(task.rng_streams)), strict=True)
        )

    def loss_and_grads(state, batch, key, frozen):
        if accum_steps == 1:
            (_, (terms, aux)), grads = jax.value_and_grad(task.loss, has_aux=True)(
                state.params, batch, rngs_of(key), state.step, frozen, state.extra
            )
            return terms, aux, grads
        if state.extra is not None:
            raise ValueError(
                "train.grad_accum_steps: this task trains extra state from each forward pass "
                "(e.g. the PatchGAN discriminator); use grad_accum_steps = 1"
            )

        def split(path, x):
            if x.shape[0] % accum_steps:
                raise ValueError(
                    f"train.grad_accum_steps: batch field "
                    f"{jax.tree_util.keystr(path, simple=True, separator='.')} has "
                    f"{x.shape[0]} rows, not a multiple of {accum_steps}"
                )
            x = x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:])
            return jnp.moveaxis(x, 1, 0)

        micro = jax.tree_util.tree_map_with_path(split, batch)
        keys = jax.random.split(key, accum_steps)

        def one(total, inputs):
            micro_batch, micro_key = inputs
            (_, (terms, _)), grads = jax.value_and_grad(task.loss, has_aux=True)(
                state.params, micro_batch, rngs_of(micro_key), state.step, frozen, None
            )
            return jax.tree.map(jnp.add, total, grads), terms

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        total, terms = jax.lax.scan(one, zeros, (micro, keys))
        grads = jax.tree.map(lambda g: g / accum_steps, total)
        return jax.tree.map(lambda t: jnp.mean(t, axis=0), terms), None, grads

    def train_step(state: TrainState, batch: Any, rng: jax.Array, frozen: Any):
        key = jax.random.fold_in(rng, state.step)
        terms, aux, grads = loss_and_grads(state, batch, key, frozen)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # A step whose gradients are not finite (e.g. a NaN gradient through a masked branch
        # of the rasterizer) leaves parameters and optimizer state as they were; it is
        # counted in the metrics. A non-finite loss still stops training.
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        params = keep(params, state.params)
        opt_state = keep(opt_state, state.opt_state)
        metrics = dict(terms)
        metrics["nonfinite_grads"] = 1.0 - finite.astype(jnp.float32)
        metrics["grad_norm"] = grad_norm
        metrics["param_norm"] = optax.tree.norm(params)
        metrics["update_norm"] = optax.tree.norm(updates)
        ema = state.ema_params
        if ema is not None:
            ema = ema_update(ema, params, ema_decay)
        extra, extra_metrics = task.update_extra(state.extra, aux, state.step)
        metrics.update(extra_metrics)
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema, extra=extra
        )
        return new_state, metrics

    return train_step


def jit_train_step(task: Task, optimizer, train_config, mesh, rules, shardings):
    """The jitted step of a run: the state donated and kept on `shardings`, the batch split over
    the mesh's batch axes, frozen parameters replicated (what train_and_evaluate runs and
    launch.compile_check compiles)."""
    step = make_train_step(
        task,
        optimizer,
        float(train_config.get("ema_decay", 0.0)),
        int(train_config.get("grad_accum_steps", 1)),
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(shardings, batch_sharding(mesh, rules), None, replicated),
        out_shardings=(shardings, None),
        donate_argnums=(0,),
    )


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class _Window:
    """Metrics of the steps since the last log, kept on the device until a log or a save
    needs them: the host does not wait for the device between steps."""

    def __init__(self):
        self.device: list[tuple[int, dict[str, jax.Array]]] = []
        self.host: list[tuple[int, dict[str, np.ndarray]]] = []

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.device.append((step, metrics))

    def check(self, last_saved: int | None, ckpt_dir: Path) -> None:
        """Bring the new steps' metrics to the host; NonFiniteLossError at the first step whose
        loss is not finite; warn about skipped updates and capacity overflows."""
        if not self.device:
            return
        steps = [s for s, _ in self.device]
        host = to_host([m for _, m in self.device])
        self.device = []
        for step, metrics in zip(steps, host, strict=True):
            total = float(metrics["total"])
            if not math.isfinite(total):
                raise NonFiniteLossError(
                    f"non-finite loss {total} at step {step}; stopping. The last good "
                    f"checkpoint is step {last_saved} in {ckpt_dir} (not overwritten)."
                )
        skipped = [s for s, m in zip(steps, host, strict=True) if m["nonfinite_grads"] > 0]
        if skipped:
            log.warning("steps %s: non-finite gradients, updates skipped", skipped)
        overflow = [s for s, m in zip(steps, host, strict=True) if m.get("overflow", 0) > 0]
        if overflow:
            log.warning(
                "steps %s: surfel-tile capacity overflow (raise capacity_per_surfel)", overflow
            )
        self.host.extend(zip(steps, host, strict=True))

    def mean(self) -> dict[str, float]:
        """Means over the checked steps since the last call, which starts a new window."""
        host = [m for _, m in self.host]
        self.host = []
        return {k: float(np.mean([np.asarray(m[k], np.float64) for m in host])) for k in host[0]}


class _Evaluator:
    """The task's evaluation over its eval batches, with one compiled function per run."""

    def __init__(self, task: Task, mesh, axes, frozen):
        self.task = task
        self.batches = [task.device_batch(b) for b in task.eval_data()]
        self.mesh, self.axes, self.frozen = mesh, axes, frozen
        self.fn = jax.jit(task.evaluate)

    def __call__(self, params, step: int, workdir: Path) -> dict[str, float]:
        values: dict[str, list] = {}
        for i, batch in enumerate(self.batches):
            metrics, images = self.fn(
                params, to_global_batch(batch, self.mesh, self.axes), self.frozen
            )
            for k, v in to_host(metrics).items():
                values.setdefault(k, []).extend(np.asarray(v).reshape(-1).tolist())
            if i == 0 and images is not None:
                images = to_host(images)  # a collective: every process takes part
                if jax.process_index() == 0:
                    self.task.save_images(workdir / "eval" / f"step_{step:07d}.png", images)
        return {f"eval/{k}": float(np.mean(v)) for k, v in values.items()}


def train_and_evaluate(task: Task, config, workdir: str | Path) -> dict[str, float]:
    """Run (or resume) the task's training in workdir; returns the last logged metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tc = config.train
    ema_decay = float(tc.get("ema_decay", 0.0))
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"train.ema_decay: expected 0 (off) or a decay in (0, 1), got {ema_decay}")
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.get("num_devices", -1))
    rules = config.mesh.get("rules")
    axes = batch_axes(mesh, rules)
    with rules_context(mesh, rules):
        optimizer = make_optimizer(config.optimizer)
        init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
        abstract, shardings = abstract_train_state(
            task, optimizer, mesh, rules, init_rng, ema=ema_decay > 0
        )
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tc.keep_checkpoints)
        data_iter = task.train_data()
        # A grain iterator's position is checkpointed with the state; others restart.
        checkpointed_iter = data_iter if hasattr(data_iter, "get_state") else None
        state = _initial_state(
            task,
            optimizer,
            config,
            mesh,
            rules,
            init_rng,
            abstract,
            ckpt,
            checkpointed_iter,
            ema=ema_decay > 0,
        )
        replicated = NamedSharding(mesh, PartitionSpec())
        frozen = jax.device_put(task.frozen(), replicated)
        step_fn = jit_train_step(task, optimizer, tc, mesh, rules, shardings)
        finite_fn = jax.jit(_all_finite)
        evaluator = _Evaluator(task, mesh, axes, frozen) if tc.eval_every_steps > 0 else None
        writer = MetricWriter(workdir, active=jax.process_index() == 0)
        first = int(state.step)
        progress = Progress(tc.total_steps, first)
        last: dict[str, float] = {}
        window = _Window()
        last_saved = ckpt.latest_step()
        try:
            start_time = time.monotonic()
            time_limit = 60.0 * tc.get("time_limit_minutes", 0.0)
            for step in range(first, tc.total_steps):
                batch = to_global_batch(task.device_batch(next(data_iter)), mesh, axes)
                if step == first:  # compile once, print the step's memory, reuse the executable
                    step_fn = step_fn.lower(state, batch, step_rng, frozen).compile()
                    memory = step_fn.memory_analysis()
                    if memory is not None:
                        log.info(
                            "train step memory: args %.1f MB, temps %.1f MB",
                            memory.argument_size_in_bytes / 2**20,
                            memory.temp_size_in_bytes / 2**20,
                        )
                state, metrics = step_fn(state, batch, step_rng, frozen)
                window.add(step, metrics)
                done = step + 1
                # The time limit ends the run like its last step: log, evaluate, checkpoint.
                final = done == tc.total_steps or (
                    time_limit > 0 and time.monotonic() - start_time > time_limit
                )
                save = itstime(done, tc.checkpoint_every_steps, final)
                if itstime(done, tc.log_every_steps, final):
                    window.check(last_saved, ckpt.directory)
                    last = window.mean()
                    writer.write_scalars(done, last)
                    headline = "".join(f"  {k} {last[k]:.4g}" for k in task.log_metrics)
                    log.info("%s  loss %.4f%s", progress.update(done), last["total"], headline)
                elif save:  # a bad state must never become the latest checkpoint
                    window.check(last_saved, ckpt.directory)
                if evaluator is not None and itstime(done, tc.eval_every_steps, final):
                    params = state.params if state.ema_params is None else state.ema_params
                    eval_metrics = evaluator(params, done, workdir)
                    writer.write_scalars(done, eval_metrics)
                    last.update(eval_metrics)
                    log.info("eval at step %d: %s", done, eval_metrics)
                if save:
                    if not bool(finite_fn(state)):
                        raise NonFiniteLossError(
                            f"the state after step {step} is not finite; stopping. The last "
                            f"good checkpoint is step {last_saved} in {ckpt.directory} "
                            "(not overwritten)."
                        )
                    ckpt.save(done, state, data_iterator=checkpointed_iter, config=config)
                    last_saved = done
                if final:
                    if done < tc.total_steps:
                        log.info("time limit of %.0f min reached at step %d", time_limit / 60, done)
                    break
        finally:
            ckpt.close()
            writer.close()
            close = getattr(data_iter, "close", None)
            if close is not None:
                close()
        return last


def _initial_state(task, optimizer, config, mesh, rules, rng, abstract, ckpt, data_iter, *, ema):
    """The resume order: workdir checkpoint, else config.init_from's parameters, else scratch."""
    if ckpt.latest_step() is not None:
        state = ckpt.restore(None, abstract, data_iterator=data_iter)
        log.info("resumed from %s step %d", ckpt.directory, int(state.step))
        return state
    if config.get("init_from"):
        params, step = restore_params(config.init_from, abstract.params)
        state, _ = create_train_state(task, optimizer, mesh, rules, rng, ema=ema, params=params)
        log.info("initialised the parameters from %s step %d", config.init_from, step)
        return state
    state, _ = create_train_state(task, optimizer, mesh, rules, rng, ema=ema)
    return state
