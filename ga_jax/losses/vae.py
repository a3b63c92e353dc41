"""The VAE objective (DESIGN.md section 5), term by term, as pure functions.

Per rendered scale s (base 128, then each upsampler level's size):
    rgb_l1 + alpha_l1                                     weights 1.0, 1.0
LPIPS-VGG on one random scale (0.8; masked with the target alpha; a centre crop of
`lpips_crop` px when the image is wider than 256) when enabled. On the finest scale:
    kl          2.5e-6, annealed linearly from 1e-9 at step 5k to full at 30k
    normal      0.025 * mean(1 - <n_render, n_gt * alpha>)        from step 35k
    distortion  1000 * mean(distortion)                           from step 15k
and on the base and finest surfels the opacity prior
    0.01 * (mean_base + mean_finest) of -log Beta(o; 0.5, 0.25),  o clipped to [1/255, 0.99],
which pushes opacities towards 0 or 1. Every weight and start step is a config value
(`config.loss`, see `default_loss_config`). Terms are returned unweighted next to the total,
so logs show each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import betaln

__all__ = [
    "default_loss_config",
    "kl_weight",
    "l1",
    "normal_loss",
    "opacity_prior",
    "resize_targets",
    "vae_loss",
]


def default_loss_config() -> ml_collections.ConfigDict:
    """The released stage's weights and schedules (DESIGN.md section 5)."""
    return ml_collections.ConfigDict(
        dict(
            rgb=1.0,
            alpha=1.0,
            lpips=0.8,
            use_lpips=False,  # needs weights: lpips_weights must then name the converted file
            lpips_weights="",
            lpips_crop=288,
            kl=2.5e-6,
            kl_start_weight=1e-9,
            kl_anneal_start_step=5_000,
            kl_anneal_end_step=30_000,
            normal=0.025,
            normal_start_step=35_000,
            distortion=1000.0,
            distortion_start_step=15_000,
            opacity_prior=0.01,
            opacity_beta=(0.5, 0.25),
            # PatchGAN (ga_jax.losses.patchgan; the trainer adds it, config.discriminator)
            use_adversarial=False,
            adversarial=6.25e-4,
            adversarial_start_step=0,
        )
    )


def kl_weight(step: jax.Array, cfg) -> jax.Array:
    """cfg.kl_start_weight until kl_anneal_start_step, linear to cfg.kl at kl_anneal_end_step."""
    start, end = cfg.kl_anneal_start_step, cfg.kl_anneal_end_step
    frac = jnp.clip((step - start) / max(end - start, 1), 0.0, 1.0)
    return cfg.kl_start_weight + frac * (cfg.kl - cfg.kl_start_weight)


def l1(prediction: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(prediction - target))


def normal_loss(normal_render: jax.Array, normal_target: jax.Array, alpha: jax.Array) -> jax.Array:
    """mean(1 - <n_render, n_gt * alpha>): n_render [..., 3] accumulated world normals,
    n_gt [..., 3] decoded world normals, alpha [...] the target's coverage."""
    return jnp.mean(1.0 - jnp.sum(normal_render * normal_target * alpha[..., None], axis=-1))


def opacity_prior(opacities: jax.Array, beta: Sequence[float] = (0.5, 0.25)) -> jax.Array:
    """mean(-log Beta(o; a, b)) with o clipped to [1/255, 0.99] (the reference's range)."""
    a, b = beta
    o = jnp.clip(opacities, 1.0 / 255.0, 0.99)
    return jnp.mean(-(a - 1.0) * jnp.log(o) - (b - 1.0) * jnp.log1p(-o) + betaln(a, b))


def resize_targets(targets: dict, size: int) -> dict:
    """Area-downsample target images [..., R, R, (C)] to size x size (identity at R)."""

    def resize(x, channels_last):
        lead = x.shape[: x.ndim - (3 if channels_last else 2)]
        if x.shape[len(lead)] == size:
            return x
        shape = lead + (size, size) + ((x.shape[-1],) if channels_last else ())
        return jax.image.resize(x, shape, method="area" if x.shape[len(lead)] > size else "linear")

    out = dict(targets)
    for name in ("target_rgb", "target_normal"):
        out[name] = resize(targets[name], True)
    out["target_alpha"] = resize(targets["target_alpha"], False)
    return out


def _centre_crop(x: jax.Array, crop: int) -> jax.Array:
    size = x.shape[-2]
    if size <= 256 or crop >= size:
        return x
    start = (size - crop) // 2
    return x[..., start : start + crop, start : start + crop, :]


def vae_loss(
    renders: Sequence,  # RenderOutput per scale, coarse to fine, images [B, V, R_s, R_s, ...]
    targets: Sequence[dict],  # per scale: target_rgb [B,V,R,R,3], target_alpha, target_normal
    posterior_kl: jax.Array,  # [B] KL of h per sample
    base_opacities: jax.Array,  # [B, N0]
    fine_opacities: jax.Array,  # [B, N]
    step: jax.Array,
    cfg,
    *,
    lpips_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total loss and every term (unweighted, plus the weights that step used)."""
    if len(renders) != len(targets) or not renders:
        raise ValueError(
            f"renders/targets: expected one target per rendered scale, got {len(renders)} "
            f"renders and {len(targets)} targets"
        )
    terms: dict[str, jax.Array] = {}
    total = jnp.zeros((), jnp.float32)
    for s, (out, tgt) in enumerate(zip(renders, targets, strict=True)):
        terms[f"rgb_l1/{s}"] = l1(out.rgb, tgt["target_rgb"])
        terms[f"alpha_l1/{s}"] = l1(out.alpha, tgt["target_alpha"])
        total += cfg.rgb * terms[f"rgb_l1/{s}"] + cfg.alpha * terms[f"alpha_l1/{s}"]

    if cfg.use_lpips:
        if lpips_fn is None or rng is None:
            raise ValueError("loss.use_lpips is set: vae_loss needs lpips_fn and rng")

        def lpips_at(s):
            def branch():
                mask = targets[s]["target_alpha"][..., None]
                pred = _centre_crop(renders[s].rgb * mask, cfg.lpips_crop)
                true = _centre_crop(targets[s]["target_rgb"] * mask, cfg.lpips_crop)
                return jnp.mean(lpips_fn(pred, true))

            return branch

        scale = jax.random.randint(rng, (), 0, len(renders))
        terms["lpips"] = jax.lax.switch(scale, [lpips_at(s) for s in range(len(renders))])
        total += cfg.lpips * terms["lpips"]

    fine, fine_tgt = renders[-1], targets[-1]
    terms["kl"] = jnp.mean(posterior_kl)
    terms["kl_weight"] = kl_weight(step, cfg)
    total += terms["kl_weight"] * terms["kl"]

    terms["normal"] = normal_loss(
        fine.normal_world, fine_tgt["target_normal"], fine_tgt["target_alpha"]
    )
    terms["distortion"] = jnp.mean(fine.distortion)
    total += jnp.where(step >= cfg.normal_start_step, cfg.normal, 0.0) * terms["normal"]
    total += jnp.where(step >= cfg.distortion_start_step, cfg.distortion, 0.0) * terms["distortion"]

    beta = cfg.opacity_beta
    prior = opacity_prior(base_opacities, beta) + opacity_prior(fine_opacities, beta)
    terms["opacity_prior"] = prior
    total += cfg.opacity_prior * terms["opacity_prior"]
    terms["total"] = total
    return total, terms
