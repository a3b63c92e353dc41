"""PSNR and SSIM against independent computations (numpy / scipy.ndimage)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ga_jax.metrics.image import psnr, ssim


def ssim_reference(a, b):
    """SSIM with scipy's Gaussian filter (sigma 1.5, truncate 3.5 -> 11 taps, reflect mode),
    averaged over the pixels at least 5 px from the border, per channel, float64."""
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        f = lambda z: ndimage.gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(m[5:-5, 5:-5])
    return float(np.mean(values))


def test_ssim_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2, 32, 40, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1).astype(np.float32)
    got = np.asarray(ssim(jnp.asarray(a), jnp.asarray(b)))
    assert got.shape == (2,)
    for i in range(2):
        np.testing.assert_allclose(got[i], ssim_reference(a[i], b[i]), rtol=1e-4)
    np.testing.assert_allclose(ssim(jnp.asarray(a), jnp.asarray(a)), 1.0, rtol=1e-6)


def test_psnr_closed_form():
    a = jnp.zeros((1, 4, 4, 3))
    np.testing.assert_allclose(psnr(a, a + 0.1), 20.0, rtol=1e-5)  # mse 0.01 -> 20 dB


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 3)))
