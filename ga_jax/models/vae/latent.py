"""The VAE posterior over h: a diagonal Gaussian per point (DESIGN.md section 2, step 6).

The latent is z = (xyz [B, P, 3], h [B, P, C]); xyz is deterministic (the FPS points), only
h is KL-regularised. Everything here runs in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["DiagonalGaussian", "soft_clamp_logvar"]


def soft_clamp_logvar(logvar: jax.Array, limit: float = 20.0) -> jax.Array:
    """limit * tanh(logvar / limit): a smooth clamp to (-limit, limit), identity near 0."""
    return limit * jnp.tanh(logvar / limit)


@struct.dataclass
class DiagonalGaussian:
    """N(mean, exp(logvar)) per point and channel. mean, logvar: [B, P, C] float32."""

    mean: jax.Array  # [B, P, C]
    logvar: jax.Array  # [B, P, C], already soft-clamped

    @classmethod
    def from_moments(
        cls, moments: jax.Array, limit: float = 20.0, offset: float = 0.0
    ) -> DiagonalGaussian:
        """moments [..., 2C] = [mean | raw logvar] (mean first) -> posterior with logvar =
        clamp(raw + offset). A negative offset starts training with a small posterior std."""
        moments = moments.astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return cls(mean=mean, logvar=soft_clamp_logvar(logvar + offset, limit))

    @property
    def std(self) -> jax.Array:
        return jnp.exp(0.5 * self.logvar)

    def sample(self, rng: jax.Array) -> jax.Array:
        """Reparameterised h = mean + exp(logvar / 2) * eps, eps ~ N(0, I)."""
        eps = jax.random.normal(rng, self.mean.shape, jnp.float32)
        return self.mean + self.std * eps

    def mode(self) -> jax.Array:
        return self.mean

    def kl(self) -> jax.Array:
        """KL(q || N(0, I)) summed over points and channels: [B].

        0.5 * sum(mean^2 + exp(logvar) - 1 - logvar), the closed form for diagonal
        Gaussians (summed, as in the LDM/SD-VAE KL the reference weights with 2.5e-6).
        """
        per_dim = 0.5 * (jnp.square(self.mean) + jnp.exp(self.logvar) - 1.0 - self.logvar)
        return jnp.sum(per_dim, axis=tuple(range(1, per_dim.ndim)))
