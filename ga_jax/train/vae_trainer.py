"""Training of the 3D VAE: sharded state, one jitted step, checkpoints, metrics, evaluation.

    python -m launch.train --config=configs/vae/tiny.py --workdir=W

The loop (DESIGN.md sections 5 and 8, CONVENTIONS.md 3-9):
- a mesh from `config.mesh` (Auto axes), logical axis rules from config; the state is built
  abstractly (jax.eval_shape), its shardings derived from the logical names, then created
  already sharded by a jitted init;
- resume: the latest checkpoint in `workdir/checkpoints` (state + data iterator), else
  `config.init_from` (state only), else scratch;
- one jitted step `(state, batch, rng) -> (state, metrics)` with donated state; the rng is
  fold_in(rng, step); metrics hold every loss term and the grad / param / update norms;
- every step's loss is checked on the host: a NaN/inf stops training with a message naming the
  step and the last good checkpoint, which is never overwritten by a bad state;
- metrics to metrics.jsonl and TensorBoard, progress lines with step rate and ETA, periodic
  evaluation (PSNR/SSIM of the supervision views of held-out objects, rendered from the
  posterior mean) with a PNG grid per evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from ga_jax.evaluation.image_metrics import psnr, ssim
from ga_jax.losses.patchgan import (
    build_discriminator,
    discriminator_hinge_loss,
    generator_hinge_loss,
    make_discriminator_optimizer,
)
from ga_jax.losses.vae import resize_targets, vae_loss
from ga_jax.models.vae.vae import LATENT_RNG, VAE, build_vae
from ga_jax.parallel.mesh import DEFAULT_RULES, batch_sharding, logical_shardings, make_mesh
from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.render import render_surfels
from ga_jax.rendering.surfels import Surfels
from ga_jax.train.checkpoint import Checkpointer
from ga_jax.train.metrics_writer import MetricWriter, Progress
from ga_jax.train.optimizers import make_optimizer

__all__ = [
    "EVAL_METRICS",
    "MODEL_FIELDS",
    "NonFiniteLossError",
    "TrainState",
    "create_train_state",
    "evaluate_batch",
    "make_train_step",
    "render_levels",
    "save_grid",
    "train_and_evaluate",
    "view_metrics",
]

log = logging.getLogger(__name__)

# Batch fields the model and the loss read (the pipeline's other fields stay on the host).
MODEL_FIELDS = (
    "encoder_input",
    "fps_xyz",
    "target_rgb",
    "target_alpha",
    "target_normal",
    "target_cameras",
    "background",
)


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    # The PatchGAN discriminator and its optimiser state (None unless loss.use_adversarial).
    disc_params: Any = None
    disc_opt_state: Any = None


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the message names the step and the last checkpoint."""


def render_levels(
    levels: list[Surfels],
    target_cameras: jax.Array,  # [B, V, 25]
    background: jax.Array,  # [B, 3]
    sizes: tuple[int, ...],
    *,
    backend: str,
    capacity_per_surfel: float,
) -> list[Any]:
    """Render each surfel level [B, N_l] with the target cameras at its size (coarse to fine)."""
    if len(sizes) != len(levels):
        raise ValueError(
            f"train.render_sizes: expected one size per surfel level ({len(levels)} levels), "
            f"got {sizes}"
        )
    num_views = target_cameras.shape[1]
    bg = jnp.broadcast_to(background[:, None, :], background.shape[:1] + (num_views, 3))
    outputs = []
    for surfels, size in zip(levels, sizes, strict=True):
        cameras = Cameras.from_rows(target_cameras, size, size)
        count = surfels.means.shape[-2]
        tiles = math.ceil(size / 8) ** 2
        capacity = int(capacity_per_surfel * count + 2 * tiles)
        outputs.append(render_surfels(surfels, cameras, bg, backend=backend, capacity=capacity))
    return outputs


def child_distance(parents: jax.Array, children: jax.Array) -> jax.Array:
    """Mean distance of each child [B, N*f, 3] from its parent [B, N, 3] (child j of parent n
    is row n * f + j, as the upsamplers lay them out)."""
    b, n = parents.shape[:2]
    grouped = children.reshape(b, n, children.shape[1] // n, 3)
    return jnp.mean(jnp.linalg.norm(grouped - parents[:, :, None], axis=-1))


def _targets(batch: dict) -> dict:
    return {k: batch[k] for k in ("target_rgb", "target_alpha", "target_normal")}


def _uses_gan(config) -> bool:
    return bool(config.loss.get("use_adversarial", False))


def _as_images(x: jax.Array) -> jax.Array:
    """[..., R, R, 3] -> [N, R, R, 3] for the discriminator."""
    return x.reshape((-1,) + x.shape[-3:])


def make_loss_fn(model: VAE, config, lpips_fn: Callable | None = None) -> Callable:
    """loss(params, batch, rng, step, disc_params=None) -> (total, (terms, (fine render rgb,
    fine target rgb))) for the train step. With loss.use_adversarial the generator's hinge
    term scores the finest render with the (fixed) discriminator disc_params."""
    sizes = tuple(config.train.render_sizes)
    disc = build_discriminator(config.discriminator) if _uses_gan(config) else None

    def loss_fn(params, batch, rng, step, disc_params=None):
        rng_latent, rng_lpips = jax.random.split(rng)
        levels, posterior = model.apply(
            {"params": params},
            batch["encoder_input"],
            batch["fps_xyz"],
            train=True,
            rngs={LATENT_RNG: rng_latent},
        )
        renders = render_levels(
            levels,
            batch["target_cameras"],
            batch["background"],
            sizes,
            backend=config.train.render_backend,
            capacity_per_surfel=config.train.capacity_per_surfel,
        )
        targets = [resize_targets(_targets(batch), size) for size in sizes]
        total, terms = vae_loss(
            renders,
            targets,
            posterior.kl(),
            levels[0].opacities,
            levels[-1].opacities,
            step,
            config.loss,
            lpips_fn=lpips_fn,
            rng=rng_lpips,
        )
        fine = (renders[-1].rgb, targets[-1]["target_rgb"])
        # Health of the representation (docs/results.md: surfels that shrink to dots and a
        # posterior that drifts back to the prior were what stalled the short CPU runs).
        for level, surfels in enumerate(levels):
            terms[f"surfels/scale_mm/{level}"] = 1000.0 * jnp.mean(surfels.scales)
            terms[f"surfels/opacity/{level}"] = jnp.mean(surfels.opacities)
            if level:  # children that stay on their parent draw the object as dots
                terms[f"surfels/child_distance_mm/{level}"] = 1000.0 * child_distance(
                    levels[level - 1].means, surfels.means
                )
        terms["posterior/std"] = jnp.mean(posterior.std)
        terms["posterior/mean_spread"] = jnp.mean(jnp.std(posterior.mean, axis=0))
        if disc is not None:
            fake_logits = disc.apply({"params": disc_params}, _as_images(fine[0]))
            terms["gan/generator"] = generator_hinge_loss(fake_logits)
            weight = jnp.where(
                step >= config.loss.adversarial_start_step, config.loss.adversarial, 0.0
            )
            total = total + weight * terms["gan/generator"]
            terms["total"] = total
        terms["overflow"] = jnp.any(jnp.stack([jnp.any(r.overflow) for r in renders]))
        terms["psnr"] = jnp.mean(psnr(*fine))
        debug_nan = config.train.get("debug_nan_at_step", -1)
        if debug_nan >= 0:  # test hook: the loss of one step becomes NaN
            total = jnp.where(step == debug_nan, jnp.nan, total)
            terms["total"] = total
        return total, (terms, fine)

    return loss_fn


def _discriminator_update(config, state: TrainState, fine) -> tuple[Any, Any, dict]:
    """One hinge step of the discriminator on (finest render, its target); a no-op before
    loss.adversarial_start_step or when its gradients are not finite."""
    disc = build_discriminator(config.discriminator)
    optimizer = make_discriminator_optimizer(config.discriminator)
    fake, real = (_as_images(jax.lax.stop_gradient(x)) for x in fine)
    weight = config.discriminator.loss_weight

    def loss(disc_params):
        real_logits = disc.apply({"params": disc_params}, real)
        fake_logits = disc.apply({"params": disc_params}, fake)
        value = weight * discriminator_hinge_loss(real_logits, fake_logits)
        return value, (jnp.mean(real_logits), jnp.mean(fake_logits))

    (value, (real_mean, fake_mean)), grads = jax.value_and_grad(loss, has_aux=True)(
        state.disc_params
    )
    updates, opt_state = optimizer.update(grads, state.disc_opt_state, state.disc_params)
    params = optax.apply_updates(state.disc_params, updates)
    active = (state.step >= config.loss.adversarial_start_step) & jnp.isfinite(
        optax.tree.norm(grads)
    )
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
    metrics = {
        "gan/discriminator": value,
        "gan/real_logits": real_mean,
        "gan/fake_logits": fake_mean,
    }
    return keep(params, state.disc_params), keep(opt_state, state.disc_opt_state), metrics


def make_train_step(model: VAE, optimizer: optax.GradientTransformation, config, lpips_fn=None):
    """The pure step (state, batch, rng) -> (state, metrics); jit it with donated state."""
    loss_fn = make_loss_fn(model, config, lpips_fn)

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        (_, (terms, fine)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, rng, state.step, state.disc_params
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # A step whose gradients are not finite (e.g. a NaN gradient through a masked branch
        # of the rasterizer) leaves parameters and optimizer state as they were; it is
        # counted in the metrics. A non-finite loss still stops training (host check).
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
        if _uses_gan(config):
            disc_params, disc_opt_state, disc_metrics = _discriminator_update(config, state, fine)
            state = state.replace(disc_params=disc_params, disc_opt_state=disc_opt_state)
            metrics.update(disc_metrics)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def _example_inputs(config) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    d = config.data
    size = d.encoder_size
    return (
        jax.ShapeDtypeStruct((1, d.views_per_half, size, size, 15), jnp.float32),
        jax.ShapeDtypeStruct((1, d.fps_points, 3), jnp.float32),
    )


def create_train_state(model: VAE, optimizer, config, mesh, rng: jax.Array):
    """(state, shardings): the state created already sharded (never whole on one device).

    Parameter shardings come from the logical axis names; the optimizer state's
    parameter-shaped parts (Adam moments) shard like their parameters
    (optax.tree_utils.tree_map_params), its other leaves (counts) are replicated.
    """
    encoder_input, fps_xyz = _example_inputs(config)

    def init_params(rng):
        params_rng, latent_rng = jax.random.split(rng)
        variables = model.init(
            {"params": params_rng, LATENT_RNG: latent_rng},
            jnp.zeros(encoder_input.shape, encoder_input.dtype),
            jnp.zeros(fps_xyz.shape, fps_xyz.dtype),
        )
        return variables["params"]

    def init(rng):
        params = nn.unbox(init_params(rng))
        state = TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params)
        )
        if _uses_gan(config):
            size = config.train.render_sizes[-1]
            disc = build_discriminator(config.discriminator)
            disc_rng = jax.random.fold_in(rng, 1)
            disc_params = disc.init(disc_rng, jnp.zeros((1, size, size, 3)))["params"]
            disc_opt_state = make_discriminator_optimizer(config.discriminator).init(disc_params)
            state = state.replace(disc_params=disc_params, disc_opt_state=disc_opt_state)
        return state

    rules = config.mesh.get("rules")
    param_shardings = logical_shardings(jax.eval_shape(init_params, rng), mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract = jax.eval_shape(init, rng)
    opt_shardings = optax.tree_utils.tree_map_params(
        optimizer,
        # Adam moments of other groups are optax.MaskedNode placeholders: keep them.
        lambda leaf, sharding: leaf if isinstance(leaf, optax.MaskedNode) else sharding,
        abstract.opt_state,
        param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )
    # The discriminator is small (~2.8M parameters at 64 channels): replicated.
    disc_shardings = jax.tree.map(
        lambda _: replicated, (abstract.disc_params, abstract.disc_opt_state)
    )
    shardings = TrainState(
        step=replicated,
        params=param_shardings,
        opt_state=opt_shardings,
        disc_params=disc_shardings[0],
        disc_opt_state=disc_shardings[1],
    )
    state = jax.jit(init, out_shardings=shardings)(rng)
    return state, shardings


def _rules_context(mesh, rules):
    """Mesh + logical axis rules active while tracing, for the models' activation constraints."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(mesh))
    stack.enter_context(nn.logical_axis_rules(rules if rules is not None else DEFAULT_RULES))
    return stack


def view_metrics(rgb: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """EVAL_METRICS per sample of renders vs targets [B, 2K, R, R, 3], whose views are K of the
    encoded half then K of the other half: psnr/ssim over all 2K views, *_novel over the last K
    (PSNR of the mean squared error over the views, SSIM averaged over views)."""
    per_view_ssim = ssim(rgb, target)  # [B, 2K]
    novel = slice(target.shape[1] // 2, None)
    return {
        "psnr": psnr(rgb, target, axes=(-4, -3, -2, -1)),
        "ssim": jnp.mean(per_view_ssim, axis=-1),
        "psnr_novel": psnr(rgb[:, novel], target[:, novel], axes=(-4, -3, -2, -1)),
        "ssim_novel": jnp.mean(per_view_ssim[:, novel], axis=-1),
    }


def evaluate_batch(model: VAE, params, batch: dict, config) -> tuple[dict, np.ndarray]:
    """Metrics of the finest render of the posterior mean vs the targets, per sample, and
    images [B, V, 2, R, R, 3] (prediction, target).

    The supervision views are K views of the encoded half followed by K of the other half
    (ga_jax.data.transforms): psnr/ssim cover all 2K, psnr_novel/ssim_novel only the last K,
    which the encoder did not see (novel views)."""
    levels, _ = model.apply(
        {"params": params}, batch["encoder_input"], batch["fps_xyz"], train=False
    )
    size = config.train.render_sizes[-1]
    (out,) = render_levels(
        levels[-1:],
        batch["target_cameras"],
        batch["background"],
        (size,),
        backend=config.train.render_backend,
        capacity_per_surfel=config.train.capacity_per_surfel,
    )
    target = resize_targets(_targets(batch), size)["target_rgb"]
    metrics = view_metrics(out.rgb, target)
    metrics["overflow"] = jnp.any(out.overflow, axis=-1)
    images = jnp.stack([jnp.clip(out.rgb, 0, 1), target], axis=2)
    return metrics, images


def save_grid(path: Path, images: np.ndarray) -> None:
    """images [B, V, 2, R, R, 3] -> one PNG: rows = (sample, pred/target), columns = views."""
    b, v, two, r = images.shape[:4]
    grid = np.asarray(images).transpose(0, 2, 3, 1, 4, 5).reshape(b * two * r, v * r, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(path)


def _host_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def _device_batch(batch: dict, mesh, axes) -> dict:
    from ga_jax.data.loader import to_global_batch  # noqa: PLC0415 - keeps grain out of imports

    return to_global_batch({k: batch[k] for k in MODEL_FIELDS}, mesh, axes)


def _batch_axes(mesh, rules) -> tuple[str, ...]:
    spec = batch_sharding(mesh, rules).spec[0]
    return (spec,) if isinstance(spec, str) else tuple(spec or ())


# Per-sample metrics of evaluate_batch that evaluations average and report.
EVAL_METRICS = ("psnr", "ssim", "psnr_novel", "ssim_novel")


@dataclasses.dataclass
class _Evaluator:
    model: VAE
    config: Any
    mesh: Any
    axes: tuple[str, ...]
    batches: list[dict]

    def __call__(self, params, step: int, workdir: Path) -> dict[str, float]:
        fn = jax.jit(functools.partial(evaluate_batch, self.model, config=self.config))
        values: dict[str, list] = {k: [] for k in EVAL_METRICS + ("overflow",)}
        for i, batch in enumerate(self.batches):
            metrics, images = fn(params, _device_batch(batch, self.mesh, self.axes))
            for k in values:
                values[k].extend(np.asarray(metrics[k]).tolist())
            if i == 0:
                save_grid(workdir / "eval" / f"step_{step:07d}.png", np.asarray(images))
        return {f"eval/{k}": float(np.mean(v)) for k, v in values.items()}


def train_and_evaluate(config, workdir: str | Path) -> dict[str, float]:
    """Run (or resume) training in workdir; returns the last logged metrics."""
    from ga_jax.data.loader import make_vae_loader  # noqa: PLC0415 - keeps grain out of imports

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tc = config.train
    mesh = make_mesh(config.mesh.shape, num_devices=config.mesh.get("num_devices", -1))
    rules = config.mesh.get("rules")
    data_sharding = batch_sharding(mesh, rules)
    axes = _batch_axes(mesh, rules)
    with _rules_context(mesh, rules):  # activation sharding constraints when tracing
        model = build_vae(config.model)
        optimizer = make_optimizer(config.optimizer)
        lpips_fn = None
        if config.loss.use_lpips:  # a missing weights file raises, naming the convert command
            from ga_jax.losses.lpips import load_lpips_params, lpips_distance  # noqa: PLC0415

            params = load_lpips_params(config.loss.lpips_weights)
            lpips_fn = functools.partial(lpips_distance, params)

        rng = jax.random.key(config.seed)
        init_rng, step_rng = jax.random.split(rng)
        state, state_shardings = create_train_state(model, optimizer, config, mesh, init_rng)
        data_iter = make_vae_loader(config.data)
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tc.keep_checkpoints)
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings
        )
        if ckpt.latest_step() is not None:
            state = ckpt.restore(None, abstract, data_iterator=data_iter)
            log.info("resumed from %s step %d", ckpt.directory, int(state.step))
        elif config.get("init_from"):
            state = Checkpointer(Path(config.init_from)).restore(None, abstract)
            log.info("initialised from %s step %d", config.init_from, int(state.step))

        step_fn = jax.jit(
            make_train_step(model, optimizer, config, lpips_fn),
            in_shardings=(state_shardings, data_sharding, None),
            out_shardings=(state_shardings, None),
            donate_argnums=(0,),
        )
        eval_batches = []
        if tc.eval_every_steps > 0:
            eval_iter = make_vae_loader(config.eval_data)
            eval_batches = [b for _, b in zip(range(tc.eval_batches), eval_iter, strict=False)]
            eval_iter.close()
        evaluator = _Evaluator(model, config, mesh, axes, eval_batches)
        writer = MetricWriter(workdir)
        progress = Progress(tc.total_steps)
        first = int(state.step)
        last: dict[str, float] = {}
        window: list[dict] = []
        last_saved = ckpt.latest_step()
        try:
            start_time = time.monotonic()
            time_limit = 60.0 * tc.get("time_limit_minutes", 0.0)
            for step in range(first, tc.total_steps):
                batch = _device_batch(next(data_iter), mesh, axes)
                if step == first:  # compile once, print the step's memory, reuse the executable
                    step_fn = step_fn.lower(state, batch, step_rng).compile()
                    memory = step_fn.memory_analysis()
                    if memory is not None:
                        log.info(
                            "train step memory: args %.1f MB, temps %.1f MB",
                            memory.argument_size_in_bytes / 2**20,
                            memory.temp_size_in_bytes / 2**20,
                        )
                state, metrics = step_fn(state, batch, step_rng)
                host = _host_metrics(metrics)
                if not math.isfinite(host["total"]):
                    raise NonFiniteLossError(
                        f"non-finite loss {host['total']} at step {step}; stopping. The last good "
                        f"checkpoint is step {last_saved} in {ckpt.directory} (not overwritten)."
                    )
                if host["nonfinite_grads"] > 0:
                    log.warning("step %d: non-finite gradients, update skipped", step)
                if host["overflow"] > 0:
                    log.warning(
                        "step %d: surfel-tile capacity overflow (raise capacity_per_surfel)", step
                    )
                window.append(host)
                done = step + 1
                # The time limit ends the run like its last step: log, evaluate, checkpoint.
                final = done == tc.total_steps or (
                    time_limit > 0 and time.monotonic() - start_time > time_limit
                )
                if done % tc.log_every_steps == 0 or final:
                    last = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    window = []
                    writer.write_scalars(done, last)
                    log.info(
                        "%s  loss %.4f  psnr %.2f",
                        progress.update(done),
                        last["total"],
                        last["psnr"],
                    )
                if evaluator.batches and (done % tc.eval_every_steps == 0 or final):
                    eval_metrics = evaluator(state.params, done, workdir)
                    writer.write_scalars(done, eval_metrics)
                    last.update(eval_metrics)
                    log.info("eval at step %d: %s", done, eval_metrics)
                if done % tc.checkpoint_every_steps == 0 or final:
                    ckpt.save(done, state, data_iterator=data_iter, config=config)
                    last_saved = done
                if final:
                    if done < tc.total_steps:
                        log.info("time limit of %.0f min reached at step %d", time_limit / 60, done)
                    break
        finally:
            ckpt.close()
            writer.close()
            data_iter.close()
        return last
