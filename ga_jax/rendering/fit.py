"""Fit free surfels to posed images with the differentiable rasterizer (a 2DGS-style fit).

Used by `launch/fit_surfels.py` (the demo) and by the rasterizer's fitting test: it shows
that gradients through render_surfels move surfels to explain multi-view images.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ga_jax.metrics import image as image_metrics
from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.render import render_surfels
from ga_jax.rendering.surfels import Surfels
from kernels.config import TileConfig


def init_params(key: jax.Array, num: int, radius: float = 0.4, scale: float = 0.03) -> dict:
    """Unconstrained parameters of num surfels spread in a ball of `radius`."""
    k_dir, k_r, k_rot, k_col = jax.random.split(key, 4)
    direction = jax.random.normal(k_dir, (num, 3))
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    r = radius * jax.random.uniform(k_r, (num, 1)) ** (1 / 3)
    return {
        "means": direction * r,
        "quaternions": jax.random.normal(k_rot, (num, 4)),
        "log_scales": jnp.full((num, 2), np.log(scale), jnp.float32),
        "opacity_logits": jnp.zeros((num,), jnp.float32),
        "color_logits": 0.1 * jax.random.normal(k_col, (num, 3)),
    }


def params_to_surfels(params: dict) -> Surfels:
    return Surfels(
        means=params["means"],
        quaternions=params["quaternions"],
        scales=jnp.exp(params["log_scales"]),
        opacities=jax.nn.sigmoid(params["opacity_logits"]),
        colors=jax.nn.sigmoid(params["color_logits"]),
    )


def psnr(a: jax.Array, b: jax.Array) -> jax.Array:
    """PSNR in dB of images in [0, 1] over all their pixels (one value)."""
    return image_metrics.psnr(a, b, axes=None)


def fit_surfels(
    target_rgb: jax.Array,  # [V, H, W, 3] composited over `background`
    target_alpha: jax.Array,  # [V, H, W]
    cameras: Cameras,  # [V]
    *,
    num_surfels: int = 4096,
    steps: int = 300,
    learning_rate: float = 0.01,
    background: float = 1.0,
    seed: int = 0,
    config: TileConfig = TileConfig(),
    log_every: int = 50,
    log: Callable[[str], None] = print,
) -> tuple[dict, list[dict]]:
    """Optimise surfels with Adam on L1(rgb) + L1(alpha); returns (params, history)."""
    bg = jnp.full((3,), background, jnp.float32)
    params = init_params(jax.random.key(seed), num_surfels)
    # Means move in world units (object box 0.9 m): a smaller step than the logits.
    labels = {k: ("means" if k == "means" else "other") for k in params}
    optimizer = optax.multi_transform(
        {"means": optax.adam(learning_rate * 0.1), "other": optax.adam(learning_rate)}, labels
    )
    opt_state = optimizer.init(params)

    def loss_fn(p):
        out = render_surfels(params_to_surfels(p), cameras, bg, config=config)
        l_rgb = jnp.mean(jnp.abs(out.rgb - target_rgb))
        l_alpha = jnp.mean(jnp.abs(out.alpha - target_alpha))
        return l_rgb + l_alpha, (l_rgb, out.num_intersections)

    @jax.jit
    def step(p, state):
        (loss, (l_rgb, pairs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss, l_rgb, pairs

    history = []
    start = time.perf_counter()
    for i in range(1, steps + 1):
        params, opt_state, loss, l_rgb, pairs = step(params, opt_state)
        if i % log_every == 0 or i == steps:
            loss = float(loss)
            if not np.isfinite(loss):
                raise FloatingPointError(f"fit_surfels: loss became {loss} at step {i}")
            rate = i / (time.perf_counter() - start)
            history.append({"step": i, "loss": loss, "l1_rgb": float(l_rgb)})
            log(f"step {i}/{steps} loss {loss:.4f} l1_rgb {float(l_rgb):.4f} "
                f"pairs/view {int(jnp.max(pairs))} {rate:.1f} steps/s "
                f"ETA {(steps - i) / rate:.0f}s")
    return params, history


def downsample_views(images: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor pixel blocks of views [V, H, W] or [V, H, W, C]."""
    v, h, w = images.shape[:3]
    if h % factor or w % factor:
        raise ValueError(f"downsample_views: {h}x{w} is not divisible by {factor}")
    blocks = images.reshape(v, h // factor, factor, w // factor, factor, *images.shape[3:])
    return blocks.mean(axis=(2, 4))
