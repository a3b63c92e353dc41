"""Comparing one train step's parameter updates between two meshes (the 8-devices-equal-one
tests of the VAE and the flow stages)."""

from __future__ import annotations

import jax
import numpy as np


def large_linear_updates(config) -> None:
    """Adam's first update is lr * g / (|g| + eps): with a small eps it is a sign function of g,
    and gradients of ~1e-12 that round differently in the two runs would flip whole updates.
    A large eps makes the update proportional to g, so the comparison sees the gradient, and a
    large learning rate (without weight decay) makes it large against the float32 spacing of
    the parameters it is added to."""
    config.optimizer.eps = 1.0
    config.optimizer.groups = tuple(
        (name, regex, 1e3, 0.0) for name, regex, _, _ in config.optimizer.groups
    )


def assert_same_update(p0, p1, q0, q1, rtol: float = 1e-5) -> None:
    """The same initial parameters (p0 == q0) and the same update (p1 - p0 vs q1 - q0) to
    `rtol` relative to the whole update, in L2 norm and element by element. Relative to the
    whole update: gradients a millionth of the largest, left over from cancelling terms (the
    VAE encoder's at initialisation), move by a few percent of themselves when a
    tensor-parallel split reorders the sums."""
    updates_1, updates_2 = [], []
    for a0, a1, b0, b1 in zip(*map(jax.tree.leaves, (p0, p1, q0, q1)), strict=True):
        np.testing.assert_array_equal(a0, b0)
        updates_1.append(np.ravel(a1 - a0).astype(np.float64))
        updates_2.append(np.ravel(b1 - b0).astype(np.float64))
    u1, u2 = np.concatenate(updates_1), np.concatenate(updates_2)
    assert np.max(np.abs(u1)) > 1e-2  # far above the parameters' float32 spacing
    assert np.linalg.norm(u1 - u2) <= rtol * np.linalg.norm(u1)
    assert np.max(np.abs(u1 - u2)) <= rtol * np.max(np.abs(u1))
