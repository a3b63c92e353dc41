"""Fixed (parameter-free) embeddings of coordinates."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["nerf_positional_encoding"]


def nerf_positional_encoding(x: jax.Array, num_freqs: int = 10) -> jax.Array:
    """NeRF encoding [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(K-1) x), cos(2^(K-1) x)].

    x: [..., C] (xyz in world units, no pi factor). Returns [..., C * (1 + 2K)] float32,
    ordered as above with each term C wide (63 dims for C=3, K=10).
    """
    x = x.astype(jnp.float32)
    parts = [x]
    for k in range(num_freqs):
        parts += [jnp.sin(x * 2.0**k), jnp.cos(x * 2.0**k)]
    return jnp.concatenate(parts, axis=-1)
