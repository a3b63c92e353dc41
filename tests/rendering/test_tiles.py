"""intersect_tiles against a brute-force Python binning."""

import jax
import numpy as np
import pytest

from ga_jax.rendering import intersect_tiles
from ga_jax.rendering.tiles import tile_rects
from kernels.config import TileConfig
from tests.kernels.scenes import random_view


@pytest.mark.parametrize("tile,size", [(16, (40, 56)), (8, (37, 29))])
def test_sorted_pairs_match_brute_force(tile, size):
    cfg = TileConfig(tile_size=tile)
    splats = random_view(0, 300, *size, config=cfg)
    splats = splats._replace(valid=splats.valid.at[::17].set(False))
    isect = intersect_tiles(splats, *size, cfg)
    rows, cols = cfg.grid(*size)
    lo = np.asarray(splats.means2d - splats.extents)
    hi = np.asarray(splats.means2d + splats.extents)
    depth, valid = np.asarray(splats.depths), np.asarray(splats.valid)
    expected = []
    for ty in range(rows):
        for tx in range(cols):
            # Tile pixel centres span [t*ts + 0.5, (t+1)*ts - 0.5]; overlap of floor-binned boxes.
            hits = [
                i
                for i in range(len(depth))
                if valid[i]
                and np.floor(lo[i, 0] / tile) <= tx <= np.floor(hi[i, 0] / tile)
                and np.floor(lo[i, 1] / tile) <= ty <= np.floor(hi[i, 1] / tile)
            ]
            hits.sort(key=lambda i: (depth[i], i))
            expected += [(ty * cols + tx, i) for i in hits]
    count = int(isect.count)
    assert count == len(expected)
    got = list(
        zip(
            np.asarray(isect.tile_ids[:count]).tolist(),
            np.asarray(isect.surfel_ids[:count]).tolist(),
        )
    )
    assert got == expected
    assert np.all(np.asarray(isect.surfel_ids[count:]) == -1)
    ranges = np.asarray(isect.tile_ranges)
    for t in range(rows * cols):
        ids = [p for p, (tt, _) in enumerate(expected) if tt == t]
        assert (ranges[t, 0], ranges[t, 1]) == (
            (ids[0], ids[-1] + 1) if ids else (ranges[t, 0],) * 2
        )


def test_overflow_is_counted_not_corrupting():
    cfg = TileConfig(tile_size=8)
    splats = random_view(1, 200, 32, 32, config=cfg)
    full = intersect_tiles(splats, 32, 32, cfg)
    small = intersect_tiles(splats, 32, 32, cfg, capacity=int(full.count) // 2)
    assert int(small.count) == int(full.count)  # the true need is reported
    ranges = np.asarray(small.tile_ranges)
    assert ranges[:, 1].max() <= int(full.count) // 2


def test_offscreen_and_invalid_splats_have_no_tiles():
    cfg = TileConfig()
    splats = random_view(2, 50, 32, 32, config=cfg)
    far = splats.means2d.at[0].set(jax.numpy.array([1e9, -1e9]))
    splats = splats._replace(means2d=far)
    rect = np.asarray(tile_rects(splats, 32, 32, cfg))
    assert rect[0, 2] - rect[0, 0] == 0 or rect[0, 3] - rect[0, 1] == 0
