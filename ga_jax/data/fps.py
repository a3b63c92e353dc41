"""Farthest point sampling (FPS) of point clouds, in numpy (runs inside grain workers).

FPS picks k of P points greedily: start at a given index, then repeatedly take the point whose
distance to the picked set is largest. The result covers the shape evenly, which is why the
VAE's 768 query points and the data's fps-4096.ply clouds are made this way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["farthest_point_sample"]


def farthest_point_sample(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """int64 [k] indices into points [P, 3] chosen by FPS from index `start`.

    Ties are broken towards the lowest index (np.argmax), so the result is a pure function of
    (points, k, start). Cost O(P k); float64 distances so that the choice does not depend on
    summation order.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected shape [P, 3], got {points.shape}")
    num = points.shape[0]
    if not 0 < k <= num:
        raise ValueError(f"k: expected 1 <= k <= P = {num}, got {k}")
    if not 0 <= start < num:
        raise ValueError(f"start: expected an index in [0, {num}), got {start}")
    pts = points.astype(np.float64)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = start
    dist = np.sum((pts - pts[start]) ** 2, axis=1)
    for i in range(1, k):
        nxt = int(np.argmax(dist))
        chosen[i] = nxt
        np.minimum(dist, np.sum((pts - pts[nxt]) ** 2, axis=1), out=dist)
    return chosen
