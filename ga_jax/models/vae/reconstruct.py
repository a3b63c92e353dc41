"""A VAE's reconstruction of a sample, as the evaluations measure it: the posterior mean of the
encoded views (or a posterior sample, or the mean plus Gaussian noise of a given per-channel
std: how robust decoding is to a flow model's errors) decoded to surfels and rendered with the
sample's supervision cameras."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ga_jax.data.transforms import VaeBatch
from ga_jax.losses.vae import resize_targets
from ga_jax.metrics.image import view_metrics
from ga_jax.models.vae.vae import VAE
from ga_jax.rendering.levels import render_levels

__all__ = ["LATENTS", "Reconstruction", "reconstruct"]

LATENTS = ("mean", "sample", "noisy")


class Reconstruction(NamedTuple):
    metrics: dict[str, jax.Array]  # view_metrics per sample [B], and "overflow" [B] bool
    images: jax.Array  # [B, 2K, 2, R, R, 3]: (prediction clipped to [0, 1], target) per view
    target_alpha: jax.Array  # [B, 2K, R, R] the targets' alpha at the render size


def reconstruct(
    model: VAE,
    params,
    batch: VaeBatch,
    size: int,
    *,
    backend: str,
    capacity_per_surfel: float,
    latent: str = "mean",
    noise_std: jax.Array | None = None,
    rng: jax.Array | None = None,
) -> Reconstruction:
    """The finest surfel level rendered at `size` px against the targets: view_metrics over
    all supervision views and over the novel ones (the other half's, which the encoder did not
    see), the images side by side, and the targets' alpha.

    latent: 'mean' decodes the posterior mean, 'sample' a posterior sample, 'noisy' the mean
    plus noise_std [C] * N(0, 1) (both need `rng`)."""
    if latent not in LATENTS:
        raise ValueError(f"latent: expected one of {LATENTS}, got {latent!r}")
    posterior = model.apply(
        {"params": params}, batch.encoder_input, batch.fps_xyz, method=VAE.encode
    )
    h = posterior.mean
    if latent == "sample":
        h = posterior.sample(rng)
    elif latent == "noisy":
        h = h + jnp.asarray(noise_std, h.dtype) * jax.random.normal(rng, h.shape, h.dtype)
    levels = model.apply({"params": params}, batch.fps_xyz, h, method=VAE.decode)
    (out,) = render_levels(
        levels[-1:],
        batch.target_cameras,
        batch.background,
        (size,),
        backend=backend,
        capacity_per_surfel=capacity_per_surfel,
    )
    targets = resize_targets(batch.targets(), size)
    metrics = view_metrics(out.rgb, targets["target_rgb"])
    metrics["overflow"] = jnp.any(out.overflow, axis=-1)
    images = jnp.stack([jnp.clip(out.rgb, 0, 1), targets["target_rgb"]], axis=2)
    return Reconstruction(metrics, images, targets["target_alpha"])
