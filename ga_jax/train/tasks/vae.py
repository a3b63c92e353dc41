"""The 3D VAE as a task of the training loop (DESIGN.md sections 2-5).

    python -m launch.train --config=configs/vae/tiny.py --workdir=W

Loss: every surfel level rendered at its size with the supervision cameras
(train.render_sizes, coarse to fine) against the targets resized to it
(ga_jax.losses.vae.vae_loss: L1 rgb/alpha per level, LPIPS, KL, normal, distortion, opacity
prior), plus, with loss.use_adversarial, the PatchGAN generator term; the discriminator and its
optimiser state are the task's extra state, stepped once per train step after the VAE's
update. LPIPS' VGG weights are frozen parameters: an argument of the jitted step.
Metrics: every loss term, the health of the representation (surfel scales, opacities,
children's distance to their parents, posterior spread) and the training PSNR of the finest
render. Evaluation: PSNR/SSIM of the posterior mean's finest render on every supervision view
and on the novel ones (ga_jax.models.vae.reconstruct), with a PNG grid of the first batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ga_jax.data.transforms import VaeBatch
from ga_jax.losses.patchgan import (
    build_discriminator,
    discriminator_hinge_loss,
    generator_hinge_loss,
    make_discriminator_optimizer,
)
from ga_jax.losses.vae import resize_targets, vae_loss
from ga_jax.metrics.image import psnr
from ga_jax.models.vae.reconstruct import reconstruct
from ga_jax.models.vae.vae import LATENT_RNG, build_vae
from ga_jax.rendering.levels import render_levels
from ga_jax.train.task import Task

__all__ = ["VaeTask", "child_distance"]


def child_distance(parents: jax.Array, children: jax.Array) -> jax.Array:
    """Mean distance of each child [B, N*f, 3] from its parent [B, N, 3] (child j of parent n
    is row n * f + j, as the upsamplers lay them out)."""
    b, n = parents.shape[:2]
    grouped = children.reshape(b, n, children.shape[1] // n, 3)
    return jnp.mean(jnp.linalg.norm(grouped - parents[:, :, None], axis=-1))


def _as_images(x: jax.Array) -> jax.Array:
    """[..., R, R, 3] -> [N, R, R, 3] for the discriminator."""
    return x.reshape((-1,) + x.shape[-3:])


class VaeTask(Task):
    """The VAE of `config.model`, trained on `config.data`, evaluated on `config.eval_data`."""

    # The posterior sample's noise, and LPIPS' random scale.
    rng_streams = (LATENT_RNG, "lpips")
    log_metrics = ("psnr",)

    def __init__(self, config):
        self.config = config
        self.model = build_vae(config.model)
        self.uses_gan = bool(config.loss.get("use_adversarial", False))
        self.discriminator = build_discriminator(config.discriminator) if self.uses_gan else None
        self.sizes = tuple(config.train.render_sizes)
        self.render = dict(
            backend=config.train.render_backend,
            capacity_per_surfel=config.train.capacity_per_surfel,
        )

    # -- state ------------------------------------------------------------------------------

    def init_params(self, rng: jax.Array) -> Any:
        # Parameter shapes do not depend on the input's views or size: the smallest input.
        params_rng, latent_rng = jax.random.split(rng)
        enc = self.model.encoder
        size = enc.downsample_factor
        return self.model.init(
            {"params": params_rng, LATENT_RNG: latent_rng},
            jnp.zeros((1, 1, size, size, enc.in_channels), jnp.float32),
            jnp.zeros((1, self.model.decoder.num_points, 3), jnp.float32),
        )["params"]

    def init_extra(self, rng: jax.Array) -> Any:
        """The PatchGAN discriminator's parameters and optimiser state (None without the GAN
        term). It is small (~2.8M parameters at 64 channels): replicated."""
        if not self.uses_gan:
            return None
        size = self.sizes[-1]
        params = self.discriminator.init(jax.random.fold_in(rng, 1), jnp.zeros((1, size, size, 3)))
        params = params["params"]
        return params, make_discriminator_optimizer(self.config.discriminator).init(params)

    def frozen(self) -> Any:
        """LPIPS-VGG's weights when loss.use_lpips (a missing file raises, naming the command
        that converts it)."""
        if not self.config.loss.use_lpips:
            return None
        from ga_jax.losses.lpips import load_lpips_params  # noqa: PLC0415 - only with LPIPS

        return {"lpips": load_lpips_params(self.config.loss.lpips_weights)}

    def abstract_frozen(self) -> Any:
        if not self.config.loss.use_lpips:
            return None
        from ga_jax.losses.lpips import random_lpips_params  # noqa: PLC0415

        return {"lpips": jax.eval_shape(random_lpips_params, jax.random.key(0))}

    # -- step -------------------------------------------------------------------------------

    def loss(self, params, batch: VaeBatch, rngs, step, frozen, extra):
        config = self.config
        levels, posterior = self.model.apply(
            {"params": params},
            batch.encoder_input,
            batch.fps_xyz,
            train=True,
            rngs={LATENT_RNG: rngs[LATENT_RNG]},
        )
        renders = render_levels(
            levels, batch.target_cameras, batch.background, self.sizes, **self.render
        )
        targets = [resize_targets(batch.targets(), size) for size in self.sizes]
        lpips_fn = None
        if frozen is not None:
            from ga_jax.losses.lpips import lpips_distance  # noqa: PLC0415 - only with LPIPS

            lpips_fn = lambda x, y: lpips_distance(frozen["lpips"], x, y)
        total, terms = vae_loss(
            renders,
            targets,
            posterior.kl(),
            levels[0].opacities,
            levels[-1].opacities,
            step,
            config.loss,
            lpips_fn=lpips_fn,
            rng=rngs["lpips"],
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
        if self.uses_gan:
            fake_logits = self.discriminator.apply({"params": extra[0]}, _as_images(fine[0]))
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

    def update_extra(self, extra, fine, step):
        """One hinge step of the discriminator on (finest render, its target); a no-op before
        loss.adversarial_start_step or when its gradients are not finite."""
        if not self.uses_gan:
            return extra, {}
        disc_params, disc_opt_state = extra
        optimizer = make_discriminator_optimizer(self.config.discriminator)
        fake, real = (_as_images(jax.lax.stop_gradient(x)) for x in fine)
        weight = self.config.discriminator.loss_weight

        def loss(p):
            real_logits = self.discriminator.apply({"params": p}, real)
            fake_logits = self.discriminator.apply({"params": p}, fake)
            value = weight * discriminator_hinge_loss(real_logits, fake_logits)
            return value, (jnp.mean(real_logits), jnp.mean(fake_logits))

        (value, (real_mean, fake_mean)), grads = jax.value_and_grad(loss, has_aux=True)(disc_params)
        updates, opt_state = optimizer.update(grads, disc_opt_state, disc_params)
        params = optax.apply_updates(disc_params, updates)
        active = (step >= self.config.loss.adversarial_start_step) & jnp.isfinite(
            optax.tree.norm(grads)
        )
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
        metrics = {
            "gan/discriminator": value,
            "gan/real_logits": real_mean,
            "gan/fake_logits": fake_mean,
        }
        return keep((params, opt_state), extra), metrics

    # -- data and evaluation ----------------------------------------------------------------

    def train_data(self):
        from ga_jax.data.loader import make_vae_loader  # noqa: PLC0415 - keeps grain out

        return make_vae_loader(self.config.data)

    def eval_data(self) -> list[Any]:
        """The first train.eval_batches batches of config.eval_data."""
        from ga_jax.data.loader import make_vae_loader  # noqa: PLC0415

        count = self.config.train.eval_batches
        if self.config.train.eval_every_steps <= 0 or count <= 0:
            return []
        loader = make_vae_loader(self.config.eval_data)
        batches = [b for _, b in zip(range(count), loader, strict=False)]
        loader.close()
        return batches

    def abstract_batch(self, num_points: int | None = None) -> VaeBatch:
        """VaeBatch of ShapeDtypeStructs from config.data (its fps_points: num_points unused)."""
        return VaeBatch.abstract(self.config.data)

    def device_batch(self, host_batch) -> VaeBatch:
        return VaeBatch.from_sample(host_batch)

    def evaluate(self, params, batch: VaeBatch, frozen):
        out = reconstruct(self.model, params, batch, self.sizes[-1], **self.render)
        return out.metrics, out.images
