"""FPS against a brute-force definition, and the PLY writer against the reader."""

import itertools

import numpy as np
import pytest

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.ply import PlyError, read_ply_points, write_ply_points


def brute_force_fps(points, k, start):
    """Each step recomputes every point's distance to the whole chosen set from scratch."""
    chosen = list(np.atleast_1d(start))
    for _ in range(k - len(chosen)):
        d = [min(np.sum((p - points[c]) ** 2) for c in chosen) for p in points]
        chosen.append(int(np.argmax(d)))
    return np.array(chosen)


@pytest.mark.parametrize("seed,start", [(0, 0), (1, 7), (2, 39), (3, [5, 2, 30])])
def test_fps_matches_brute_force(seed, start):
    points = np.random.default_rng(seed).normal(size=(40, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        farthest_point_sample(points, 12, start), brute_force_fps(points, 12, start)
    )


def test_fps_covers_better_than_random():
    """The largest distance from any point to the sample (covering radius) of FPS is at most
    twice the optimum, so it beats random subsets of the same size on a square grid."""
    grid = np.array(list(itertools.product(range(20), range(20), [0])), dtype=np.float32)
    idx = farthest_point_sample(grid, 16, start=0)
    assert len(set(idx.tolist())) == 16

    def radius(sub):
        return np.max(np.min(np.linalg.norm(grid[:, None] - grid[sub][None], axis=-1), axis=1))

    rng = np.random.default_rng(0)
    random_radius = min(radius(rng.choice(400, 16, replace=False)) for _ in range(20))
    assert radius(idx) < random_radius
    # A 4x4 lattice of centres (cells of 5x5 points) covers the grid within 2*sqrt(2), so the
    # optimum is at most that and FPS (a 2-approximation) at most twice it.
    assert radius(idx) <= 2 * 2 * np.sqrt(2)


def test_fps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k: expected"):
        farthest_point_sample(np.zeros((5, 3)), 6)
    with pytest.raises(ValueError, match=r"points: expected shape \[P, 3\]"):
        farthest_point_sample(np.zeros((5, 2)), 2)
    with pytest.raises(ValueError, match="start: expected distinct"):
        farthest_point_sample(np.zeros((5, 3)), 3, start=[1, 1])
    with pytest.raises(ValueError, match="k: expected 3 <= k"):
        farthest_point_sample(np.zeros((5, 3)), 2, start=[0, 1, 2])


def test_ply_round_trip(tmp_path):
    points = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    write_ply_points(tmp_path / "a.ply", points)
    np.testing.assert_array_equal(read_ply_points(tmp_path / "a.ply"), points)
    with pytest.raises(ValueError, match="finite"):
        write_ply_points(tmp_path / "b.ply", points * np.nan)
    assert issubclass(PlyError, ValueError)
