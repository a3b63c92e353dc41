"""What the VAE's surfel representation can reach without the network: free surfels per object.

Every object of a VAE config's training data gets its own `num_surfels` surfels, placed at the
first points of its FPS cloud (the cloud is stored in FPS order, so a prefix is an even
subsample) and initialised like the model's base head (`config.model.surfels`: scale
multiplier and bias, identity rotation, opacity 0.5, grey). Their pre-activations and
positions are fitted with Adam on the training batches (the finest render size, the VAE's L1
rgb + L1 alpha + opacity prior weights), then the config's eval data is rendered and scored
with the trainer's view metrics. The PSNR this reaches bounds what a VAE decoding to the same
number of surfels at that resolution can be asked for (docs/results.md).

    python -m launch.surfel_ceiling --config=configs/vae/real.py
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ga_jax.data.loader import make_source, make_vae_loader
from ga_jax.data.source import read_record
from ga_jax.losses.vae import l1, opacity_prior, resize_targets
from ga_jax.metrics.image import view_metrics
from ga_jax.models.vae.surfel_head import surfel_activations, surfel_bias_init
from ga_jax.rendering.levels import render_levels

__all__ = ["fit_free_surfels"]

_FIELDS = ("target_rgb", "target_alpha", "target_normal", "target_cameras", "background")


def _object_index(sources, num_surfels: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per source, record -> object index, and the objects' first num_surfels FPS points.
    Records 2c and 2c + 1 are the two halves of chunk c, so each chunk is read once."""
    ids: dict[str, int] = {}
    clouds: list[np.ndarray] = []
    maps = []
    for source in sources:
        of_record = np.zeros(len(source), np.int32)
        for first in range(0, len(source), 2):
            chunk, points = read_record(source[first], views=[0], min_points=num_surfels)
            if chunk.instance_id not in ids:
                ids[chunk.instance_id] = len(clouds)
                clouds.append(points[:num_surfels].astype(np.float32))
            of_record[first : first + 2] = ids[chunk.instance_id]
        maps.append(of_record)
    return maps, clouds


def fit_free_surfels(
    config: Any,
    *,
    num_surfels: int = 4096,
    steps: int = 200,
    lr: float = 0.01,
    log_every: int = 50,
) -> dict[str, float]:
    """Fit, evaluate, return {'psnr', 'ssim', 'psnr_novel', 'ssim_novel', 'train_psnr'}."""
    train_source, eval_source = make_source(config.data), make_source(config.eval_data)
    (train_obj, eval_obj), clouds = _object_index((train_source, eval_source), num_surfels)
    missing = sorted(set(eval_obj.tolist()) - set(train_obj.tolist()))
    if missing:
        raise ValueError(
            f"config.eval_data: {len(missing)} evaluated object(s) never appear in "
            "config.data; free surfels can only be scored on objects they were fitted to"
        )
    s = config.model.surfels
    bias = surfel_bias_init(s.scale_bias_init, s.rotation_bias_init)(None, (10 + s.color_dim,))
    params = {
        "xyz": jnp.asarray(np.stack(clouds)),
        "pre": jnp.broadcast_to(bias, (len(clouds), num_surfels, bias.shape[0])),
    }
    size = config.train.render_sizes[-1]
    render_args = dict(
        backend=config.train.render_backend,
        capacity_per_surfel=config.train.capacity_per_surfel,
    )
    cfg = config.loss

    def render(p, batch, objects):
        """(the objects' surfels, their render, the targets at the render size)."""
        fitted = surfel_activations(
            p["xyz"][objects], p["pre"][objects], scale_multiplier=s.scale_multiplier
        )
        (out,) = render_levels(
            [fitted], batch["target_cameras"], batch["background"], (size,), **render_args
        )
        return fitted, out, resize_targets(batch, size)

    def loss_fn(p, batch, objects):
        fitted, out, target = render(p, batch, objects)
        loss = cfg.rgb * l1(out.rgb, target["target_rgb"]) + cfg.alpha * l1(
            out.alpha, target["target_alpha"]
        )
        loss += cfg.opacity_prior * opacity_prior(fitted.opacities, tuple(cfg.opacity_beta))
        return loss, view_metrics(out.rgb, target["target_rgb"])["psnr"]

    optimizer = optax.adam(lr)

    @jax.jit
    def train_step(p, opt_state, batch, objects):
        (loss, psnr), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch, objects)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss, jnp.mean(psnr)

    @jax.jit
    def eval_step(p, batch, objects):
        _, out, target = render(p, batch, objects)
        return view_metrics(out.rgb, target["target_rgb"])

    opt_state = optimizer.init(params)
    loader = make_vae_loader(config.data)
    start, recent = time.time(), []
    for step in range(1, steps + 1):
        batch = next(loader)
        objects = train_obj[batch["record_index"]]
        params, opt_state, loss, psnr = train_step(
            params, opt_state, {k: batch[k] for k in _FIELDS}, objects
        )
        recent.append(float(psnr))
        if step % log_every == 0 or step == steps:
            rate = step / (time.time() - start)
            logging.info(
                "free surfels: step %d/%d  loss %.4f  train psnr %.2f  %.2f steps/s  ETA %.0f s",
                step,
                steps,
                float(loss),
                np.mean(recent[-log_every:]),
                rate,
                (steps - step) / rate,
            )
    values: dict[str, list[float]] = {}
    batches = -(-len(eval_source) // config.eval_data.batch_size)
    seen: set[int] = set()
    eval_loader = make_vae_loader(config.eval_data)
    for _ in range(batches):
        batch = next(eval_loader)
        metrics = eval_step(params, {k: batch[k] for k in _FIELDS}, eval_obj[batch["record_index"]])
        for i, record in enumerate(batch["record_index"].tolist()):
            if record in seen:  # the last batch may wrap around
                continue
            seen.add(record)
            for name, value in metrics.items():
                values.setdefault(name, []).append(float(value[i]))
    result = {name: float(np.mean(v)) for name, v in values.items()}
    result["train_psnr"] = float(np.mean(recent[-log_every:]))
    result["records"] = len(seen)
    return result
