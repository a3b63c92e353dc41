"""Render gradients against the exact ones: the dense backend in float64.

The hit depth of a pair, u T_w.x + v T_w.y + T_w.z, does not depend on the surfel's scales
(the ray meets the same plane whatever the disk's size), but its derivative reaches the
scales as a sum of terms of size |z| / s that cancel exactly. In float32 the sum keeps
rounding noise of ~1e-7 |z| / s per pair: for sub-pixel surfels whose pixels the filter
draws (|u|, |v| of 10-100) and a loss on depth, median depth or distortion, that noise is
~1% of the scales' gradient in every float32 implementation, the dense oracle included.
So a float32 backend's scales gradient is compared with the float64 dense gradient and must
be no further from it than a few times the float32 dense oracle is; every other field with
the float32 dense oracle's (they agree to ~2e-7 there).
"""

import jax
import jax.numpy as jnp
import numpy as np

SURFEL_FIELDS = ("means", "quaternions", "scales", "opacities", "colors")


def to_float64(tree):
    """Every floating leaf as float64 (call under jax.enable_x64)."""
    return jax.tree.map(
        lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        tree,
    )


def exact_gradient(loss, surfels, cameras):
    """grad of loss(surfels, cameras, backend='dense') in float64: a Surfels of float64
    numpy arrays."""
    with jax.enable_x64(True):
        s64, c64 = to_float64(surfels), to_float64(cameras)
        return jax.tree.map(np.asarray, jax.grad(lambda s: loss(s, c64, "dense"))(s64))


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def assert_gradients_match(grads, dense32, exact, rtol=1e-3, noise_factor=3.0):
    """A float32 backend's gradients (Surfels) against the float32 dense oracle's: each field
    within rtol, except the scales, which carry float32 noise (above): those are compared
    with the exact gradient and may be no further from it than noise_factor x the float32
    dense oracle is (or within rtol)."""
    for name in SURFEL_FIELDS:
        ref = getattr(dense32, name)
        assert np.linalg.norm(np.asarray(ref)) > 0, f"{name}: the oracle's gradient is zero"
        err = relative_error(getattr(grads, name), ref)
        if name != "scales":
            assert err <= rtol, f"d/d{name}: relative error {err:.2e} vs the dense oracle"
            continue
        truth = getattr(exact, name)
        err = relative_error(getattr(grads, name), truth)
        floor = relative_error(ref, truth)
        assert err <= max(rtol, noise_factor * floor), (
            f"d/dscales: relative error {err:.2e} vs float64 (float32 dense: {floor:.2e})"
        )
