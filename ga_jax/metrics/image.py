"""Image reconstruction metrics: PSNR and SSIM (Wang et al. 2004), jit-able, in float32, and
their split over a VAE sample's encoded and novel views.

SSIM uses the standard settings: an 11-tap Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, data range 1, population (not sample) statistics, computed per channel on the
'valid' region (no padding: the border 5 px are not centres of any window) and averaged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["VIEW_METRICS", "psnr", "ssim", "view_metrics"]


def psnr(a: jax.Array, b: jax.Array, axes=(-3, -2, -1)) -> jax.Array:
    """PSNR in dB of images [..., H, W, C] in [0, 1], one value per leading index."""
    mse = jnp.mean((a.astype(jnp.float32) - b.astype(jnp.float32)) ** 2, axis=axes)
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-12))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> jax.Array:
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    w = jnp.exp(-0.5 * (x / sigma) ** 2)
    return w / jnp.sum(w)


def _filter(x: jax.Array, window: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of x [N, H, W] with a 1-D window."""
    k = window.shape[0]
    rows = jax.lax.conv_general_dilated(x[:, None], window.reshape(1, 1, k, 1), (1, 1), "VALID")
    return jax.lax.conv_general_dilated(rows, window.reshape(1, 1, 1, k), (1, 1), "VALID")[:, 0]


def ssim(a: jax.Array, b: jax.Array, *, size: int = 11, sigma: float = 1.5) -> jax.Array:
    """Mean SSIM of images [..., H, W, C] in [0, 1] (H, W >= size), one value per leading index."""
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(
            f"ssim: expected two images [..., H, W, C] of one shape, got {a.shape}, {b.shape}"
        )
    if min(a.shape[-3:-1]) < size:
        raise ValueError(f"ssim: images must be at least {size}x{size}, got {a.shape[-3:-1]}")
    lead = a.shape[:-3]
    h, w, c = a.shape[-3:]

    def to_maps(x):  # [..., H, W, C] -> [N * C, H, W]
        x = x.astype(jnp.float32).reshape((-1, h, w, c))
        return jnp.moveaxis(x, -1, 1).reshape(-1, h, w)

    x, y = to_maps(a), to_maps(b)
    window = _gaussian_window(size, sigma)
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(ssim_map.reshape(lead + (-1,)), axis=-1)


# The per-sample metrics of view_metrics, in the order evaluations report them.
VIEW_METRICS = ("psnr", "ssim", "psnr_novel", "ssim_novel")


def view_metrics(rgb: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """VIEW_METRICS per sample of renders vs targets [B, 2K, R, R, 3], whose views are K of the
    encoded half then K of the other half (ga_jax.data.transforms): psnr/ssim over all 2K
    views, *_novel over the last K (PSNR of the mean squared error over the views, SSIM
    averaged over views)."""
    per_view_ssim = ssim(rgb, target)  # [B, 2K]
    novel = slice(target.shape[1] // 2, None)
    return {
        "psnr": psnr(rgb, target, axes=(-4, -3, -2, -1)),
        "ssim": jnp.mean(per_view_ssim, axis=-1),
        "psnr_novel": psnr(rgb[:, novel], target[:, novel], axes=(-4, -3, -2, -1)),
        "ssim_novel": jnp.mean(per_view_ssim[:, novel], axis=-1),
    }
