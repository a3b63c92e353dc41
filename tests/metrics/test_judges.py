"""The generation judges (ga_jax/metrics/judges.py) against direct computations."""

import numpy as np
import pytest

from ga_jax.data.synthetic import make_object, render_views, sample_surface
from ga_jax.metrics.judges import (
    ColourJudge,
    ShapeJudge,
    foreground_colour,
    judge_cameras,
    rotation_min_chamfer,
    rotations_about_z,
    split_height,
)


def _brute_chamfer(a, b):
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return 0.5 * (d.min(1).mean() + d.min(0).mean())


def test_shape_judge_matches_a_brute_force_rotation_search():
    rng = np.random.default_rng(0)
    clouds = {
        "a": [rng.normal(size=(40, 3)) * [0.3, 0.1, 0.1] for _ in range(3)],
        "b": [rng.normal(size=(40, 3)) * [0.1, 0.1, 0.3] for _ in range(3)],
    }
    judge = ShapeJudge.from_clouds(clouds, points=16, per_class=2, rotations=6)
    assert judge.bank.shape == (4, 16, 3) and judge.labels.tolist() == [0, 0, 1, 1]
    queries = np.stack([judge.points_of(clouds["a"][2]), judge.points_of(clouds["b"][2])])
    got = judge.distances(queries)
    rot = rotations_about_z(6)
    want = np.array(
        [[min(_brute_chamfer(q @ r.T, b) for r in rot) for b in judge.bank] for q in queries]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    names, _ = judge.judge(queries)
    assert names == [judge.classes[judge.labels[i]] for i in want.argmin(1)]


def test_shape_judge_finds_a_rotated_bank_cloud_at_zero_distance():
    rng = np.random.default_rng(1)
    clouds = {k: [rng.normal(size=(32, 3)) for _ in range(2)] for k in ("x", "y", "z")}
    judge = ShapeJudge.from_clouds(clouds, points=32, per_class=2, rotations=24)
    turned = judge.bank[3] @ rotations_about_z(24)[5]  # rotated by -75 deg: 24 - 5 undoes it
    names, distance = judge.judge(turned[None])
    # Near zero, not 0: the judge's expanded distance form cancels for coincident points.
    assert names == ["y"] and distance[0] < 1e-3


def test_rotation_min_chamfer_matches_brute_force():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 12, 3)), rng.normal(size=(2, 9, 3))
    rot = rotations_about_z(8)
    want = [min(_brute_chamfer(a[q] @ r.T, b[q]) for r in rot) for q in range(2)]
    np.testing.assert_allclose(rotation_min_chamfer(a, b, 8), want, rtol=1e-5)


def test_shape_judge_errors_name_the_problem():
    clouds = {"a": [np.zeros((10, 3))]}
    with pytest.raises(ValueError, match="class 'a' has 1 clouds"):
        ShapeJudge.from_clouds(clouds, points=4, per_class=2)
    judge = ShapeJudge.from_clouds({"a": [np.random.rand(8, 3)]}, points=8, per_class=1)
    with pytest.raises(ValueError, match=r"queries \[Q, 8, 3\]"):
        judge.distances(np.zeros((1, 5, 3)))


def test_foreground_colour_recovers_a_composited_colour():
    rng = np.random.default_rng(2)
    colour = np.array([0.8, 0.2, 0.4])
    alpha = rng.uniform(size=(2, 5, 6)) * (rng.uniform(size=(2, 5, 6)) > 0.5)
    rgb = colour * alpha[..., None] + (1 - alpha[..., None])
    np.testing.assert_allclose(foreground_colour(rgb, alpha), colour, atol=1e-12)
    with pytest.raises(ValueError, match="cover no pixel"):
        foreground_colour(rgb, np.zeros_like(alpha))


def test_colour_judge_is_the_nearest_reference():
    judge = ColourJudge.from_measurements(
        {"red": [np.array([0.9, 0.1, 0.1]), np.array([0.7, 0.1, 0.1])], "grey": [np.full(3, 0.5)]}
    )
    np.testing.assert_allclose(judge.references[judge.names.index("red")], [0.8, 0.1, 0.1])
    assert judge.judge(np.array([0.7, 0.2, 0.2])) == "red"
    assert judge.judge(np.array([0.45, 0.45, 0.5])) == "grey"


def test_split_height_separates_the_parts_of_ground_truth_compositions():
    """On 20 synthetic compositions, 256 FPS points of the visible surface (like a latent):
    at least 97% of the points land on their part's side (a point is on the top part when it
    lies above the bottom part's flat top)."""
    import dataclasses

    from ga_jax.data.fps import farthest_point_sample

    objects = [o for o in (make_object(0, i) for i in range(120)) if o.class_name == "composition"]
    assert len(objects) >= 20
    for k, obj in enumerate(objects[:20]):
        surface = sample_surface(obj, 2048, np.random.default_rng(k))
        points = surface[farthest_point_sample(surface, 256)]
        bottom = sample_surface(
            dataclasses.replace(obj, parts=obj.parts[:1]), 4000, np.random.default_rng(k)
        )
        on_top = points[:, 2] > bottom[:, 2].max() + 1e-4
        t = split_height(points)
        assert ((points[:, 2] > t) == on_top).mean() >= 0.97, obj.caption


def test_judges_on_ground_truth_synthetic_objects():
    """Real single-part objects: a fresh surface sample of a bank object is judged its own
    class (the rotations about z undo a heading change), and each object's render colour is
    nearest its own colour word's reference."""
    single = [o for o in (make_object(0, i) for i in range(40)) if o.class_name != "composition"]
    cams = judge_cameras(24)
    by_class, colours = {}, {}
    for o in single:
        by_class.setdefault(o.class_name, []).append(
            sample_surface(o, 256, np.random.default_rng(o.index))
        )
        views = render_views(o, cams, 24, supersample=1)
        colours.setdefault(o.parts[0].colour, []).append(
            foreground_colour(views["rgb"], views["alpha"])
        )
    judge = ShapeJudge.from_clouds(by_class, points=64, per_class=1)
    turn = rotations_about_z(24)[7]
    for name in by_class:
        query = judge.points_of(
            sample_surface(
                next(o for o in single if o.class_name == name), 256, np.random.default_rng(99)
            )
            @ turn.T
        )
        assert judge.judge(query[None])[0] == [name]
    colour_judge = ColourJudge.from_measurements(colours)
    for word, measured in colours.items():
        assert all(colour_judge.judge(m) == word for m in measured)
