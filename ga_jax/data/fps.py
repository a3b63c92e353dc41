"""Farthest point sampling (FPS) of point clouds, in numpy (runs inside grain workers).

FPS picks k of P points greedily: start at a given index, then repeatedly take the point whose
distance to the picked set is largest. The result covers the shape evenly, which is why the
VAE's 768 query points and the data's fps-4096.ply clouds are made this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["farthest_point_sample"]


def farthest_point_sample(
    points: np.ndarray, k: int, start: int | Sequence[int] = 0
) -> np.ndarray:
    """int64 [k] indices into points [P, 3] chosen by FPS from index `start`.

    `start` may also be a sequence of distinct indices: they are the first picks, in order,
    and FPS continues from the whole set (editing uses this to add points where a kept cloud
    is sparsest). Ties are broken towards the lowest index (np.argmax), so the result is a
    pure function of (points, k, start). Cost O(P k); float64 distances so that the choice
    does not depend on summation order.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected shape [P, 3], got {points.shape}")
    num = points.shape[0]
    starts = np.atleast_1d(np.asarray(start, dtype=np.int64))
    if not len(starts) <= k <= num or k < 1:
        raise ValueError(f"k: expected {max(len(starts), 1)} <= k <= P = {num}, got {k}")
    if starts.ndim != 1 or not len(starts) or np.any((starts < 0) | (starts >= num)):
        raise ValueError(f"start: expected index(es) in [0, {num}), got {start}")
    if len(np.unique(starts)) != len(starts):
        raise ValueError(f"start: expected distinct indices, got {start}")
    # Per-axis contiguous float64 arrays and in-place updates (no [P, 3] temporaries per
    # step): ~0.1 s for 4,096 of 12,288 points, ~10x faster than the vectorised one-liner.
    x, y, z = np.ascontiguousarray(points.T, dtype=np.float64)
    chosen = np.empty(k, dtype=np.int64)
    chosen[: len(starts)] = starts
    dist = np.full(num, np.inf)
    tmp, acc = np.empty(num), np.empty(num)
    for i in range(1, k):
        last = chosen[i - 1]
        np.subtract(x, x[last], out=tmp)
        np.multiply(tmp, tmp, out=acc)
        np.subtract(y, y[last], out=tmp)
        tmp *= tmp
        acc += tmp
        np.subtract(z, z[last], out=tmp)
        tmp *= tmp
        acc += tmp
        np.minimum(dist, acc, out=dist)
        if i >= len(starts):
            chosen[i] = int(np.argmax(dist))
    return chosen
