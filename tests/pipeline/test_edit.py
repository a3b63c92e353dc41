"""Editing operations on a cloud with noise rows: rows travel with their points, new points
get rows from their ids, count changes are resampled as the module documents."""

import numpy as np
import pytest

from ga_jax.data.ply import read_ply_points, write_ply_points
from ga_jax.pipeline import edit
from ga_jax.pipeline.edit import Box, EditableCloud, Sphere

N, C = 64, 4


def rows(ids):
    """Deterministic rows from ids alone (stands in for initial_noise)."""
    ids = np.asarray(ids, np.float32)[:, None]
    return np.sin(ids * np.arange(1, 4)), np.cos(ids * np.arange(1, C + 1))


def cloud(seed=0, n=N):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-0.4, 0.4, (n, 3)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    return EditableCloud(xyz, *(np.asarray(r, np.float32) for r in rows(ids)), ids)


def assert_rows_follow_ids(result, original):
    """Every point whose id the original had keeps that point's rows exactly; the others
    carry rows(id)."""
    by_id = {int(i): k for k, i in enumerate(original.ids)}
    new_xyz, new_features = rows(result.ids)
    for k, i in enumerate(result.ids):
        if int(i) in by_id:
            j = by_id[int(i)]
            np.testing.assert_array_equal(result.noise_xyz[k], original.noise_xyz[j])
            np.testing.assert_array_equal(result.noise_features[k], original.noise_features[j])
        else:
            np.testing.assert_array_equal(result.noise_xyz[k], new_xyz[k].astype(np.float32))
            np.testing.assert_array_equal(
                result.noise_features[k], new_features[k].astype(np.float32)
            )


def test_regions_by_brute_force():
    pts = np.array([[0, 0, 0], [0.1, 0, 0], [0.3, 0, 0], [0.1, 0.25, 0]], np.float32)
    np.testing.assert_array_equal(
        Box((0.1, 0, 0), (0.1, 0.2, 0.1)).contains(pts), [True, True, False, False]
    )
    np.testing.assert_array_equal(Sphere((0, 0, 0), 0.2).contains(pts), [True, True, False, False])


def test_move_ops_touch_only_the_region_and_keep_rows():
    c = cloud()
    region = Box((0.2, 0.0, 0.0), (0.2, 0.4, 0.4))
    inside = region.contains(c.xyz)
    assert 0 < inside.sum() < N
    moved = edit.translate(c, (0.0, 0.05, 0.0), region)
    np.testing.assert_array_equal(moved.xyz[~inside], c.xyz[~inside])
    np.testing.assert_allclose(moved.xyz[inside], c.xyz[inside] + [0, 0.05, 0], atol=1e-7)
    scaled = edit.scale(c, 2.0, region)
    np.testing.assert_allclose(
        scaled.xyz[inside], (c.xyz[inside] - [0.2, 0, 0]) * 2 + [0.2, 0, 0], atol=1e-6
    )
    turned = edit.rotate(c, (0, 0, 1), 90.0, region, about=(0, 0, 0))
    x, y, z = c.xyz[inside].T  # 90 degrees about z: (x, y) -> (-y, x)
    np.testing.assert_allclose(turned.xyz[inside], np.stack([-y, x, z], -1), atol=1e-6)
    np.testing.assert_array_equal(turned.xyz[~inside], c.xyz[~inside])
    for result in (moved, scaled, turned):
        np.testing.assert_array_equal(result.ids, c.ids)
        np.testing.assert_array_equal(result.noise_features, c.noise_features)
        np.testing.assert_array_equal(result.noise_xyz, c.noise_xyz)


def test_rotation_matrix_is_a_rotation():
    r = edit.rotation_matrix((1, 2, 3), 37.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_allclose(r @ np.array([1, 2, 3]), [1, 2, 3], atol=1e-12)  # the axis
    with pytest.raises(ValueError, match="axis: expected a nonzero"):
        edit.rotation_matrix((0, 0, 0), 10)


def test_delete_resamples_back_keeping_every_survivor():
    c = cloud()
    region = Sphere((0.0, 0.0, 0.0), 0.25)
    inside = region.contains(c.xyz)
    result = edit.delete(c, region, N, rows)
    assert len(result) == N
    survivors = set(c.ids[~inside].tolist())
    assert survivors <= set(result.ids.tolist())  # every survivor kept (densify only adds)
    assert not set(c.ids[inside].tolist()) & set(result.ids.tolist())
    new = np.setdiff1d(result.ids, c.ids)
    assert len(new) == inside.sum() and new.min() == N  # fresh ids above the old ones
    assert_rows_follow_ids(result, c)
    # Survivors did not move.
    kept = np.isin(result.ids, c.ids)
    by_id = dict(zip(c.ids.tolist(), c.xyz, strict=True))
    for i, p in zip(result.ids[kept].tolist(), result.xyz[kept], strict=True):
        np.testing.assert_array_equal(p, by_id[i])


def test_merge_fps_down_and_rows_stay():
    a, b = cloud(0), cloud(1)
    result = edit.merge(a, b, N, rows, offset=(0.5, 0, 0))
    assert len(result) == N
    from_b = result.xyz[:, 0] > 0.4 + 1e-6  # a lies in x <= 0.4, moved b in x >= 0.1
    assert 0 < from_b.sum() < N
    # Rows: points from a keep a's rows; points from b keep b's (matched by position).
    for cloud_, shift in ((a, 0.0), (b, 0.5)):
        lookup = {tuple(np.round(p + [shift, 0, 0], 6)): k for k, p in enumerate(cloud_.xyz)}
        for k, p in enumerate(result.xyz):
            j = lookup.get(tuple(np.round(p, 6)))
            if j is not None:
                np.testing.assert_array_equal(result.noise_features[k], cloud_.noise_features[j])
    assert len(np.unique(result.ids)) == N


def test_fps_down_is_the_documented_fps():
    from ga_jax.data.fps import farthest_point_sample

    big = cloud(2, n=3 * N)
    result = edit.resample(big, N, rows)
    np.testing.assert_array_equal(result.ids, np.sort(farthest_point_sample(big.xyz, N, start=0)))


def test_edited_ply_round_trip_and_matching(tmp_path):
    c = cloud()
    path = tmp_path / "edited.ply"
    # Same count: the row order is the identity, moved points keep their rows.
    moved = edit.translate(c, (0, 0, 0.01), Box((0, 0, 0), (0.1, 0.4, 0.4)))
    write_ply_points(path, moved.xyz)
    back = edit.from_edited_points(c, read_ply_points(path), N, rows)
    np.testing.assert_array_equal(back.xyz, moved.xyz)
    np.testing.assert_array_equal(back.noise_features, c.noise_features)
    # Fewer points, shuffled (another tool deleted some and reordered): matched by position.
    order = np.random.default_rng(3).permutation(N)[: N - 10]
    write_ply_points(path, c.xyz[order])
    back = edit.from_edited_points(c, read_ply_points(path), N, rows)
    assert len(back) == N and set(c.ids[order].tolist()) <= set(back.ids.tolist())
    assert_rows_follow_ids(back, c)
    # More points: the extra ones are new, then FPS back down.
    extra = np.random.default_rng(4).uniform(-0.4, 0.4, (20, 3)).astype(np.float32)
    back = edit.from_edited_points(c, np.concatenate([c.xyz, extra]), N, rows)
    assert len(back) == N
    assert_rows_follow_ids(back, c)
    assert back.ids.max() < N + 20


def test_bad_edits_are_named():
    c = cloud()
    with pytest.raises(ValueError, match="left no points"):
        edit.delete(c, Sphere((0, 0, 0), 10.0), N, rows)
    with pytest.raises(ValueError, match=r"edited points: expected shape \[M, 3\]"):
        edit.from_edited_points(c, np.zeros((5, 2)), N, rows)
    with pytest.raises(ValueError, match="finite"):
        edit.from_edited_points(c, np.full((N, 3), np.nan), N, rows)
    with pytest.raises(ValueError, match="EditableCloud.noise_xyz"):
        EditableCloud(c.xyz, c.noise_xyz[:3], c.noise_features, c.ids)


def test_densify_grows_very_sparse_clouds_in_rounds():
    """3 points give 3 midpoint candidates: densify repeats on the grown cloud until 64."""
    c = cloud(n=3)
    result = edit.resample(c, N, rows)
    assert len(result) == N and len(np.unique(result.xyz, axis=0)) == N
    np.testing.assert_array_equal(result.xyz[:3], c.xyz)
    assert_rows_follow_ids(result, c)
    with pytest.raises(ValueError, match="at least two points"):
        edit.densify(c.xyz[:1], N)


def test_positions_before_edit_follow_ids_and_new_points_stay_where_put():
    c = cloud()
    up = Box((0, 0, 0.2), (1, 1, 0.2))
    moved = edit.translate(c, (0.0, 0.0, 0.3), up)
    assert (moved.xyz != c.xyz).any()
    np.testing.assert_array_equal(edit.positions_before_edit(c, moved), c.xyz)
    shuffled = moved.take(np.random.default_rng(2).permutation(N))
    np.testing.assert_array_equal(edit.positions_before_edit(c, shuffled), c.xyz[shuffled.ids])
    # Deleting a region and resampling adds new points: they stay where the edit put them.
    deleted = edit.delete(edit.translate(c, (0.1, 0, 0)), Sphere((0, 0, 0), 0.25), N, rows)
    got = edit.positions_before_edit(c, deleted)
    old = np.isin(deleted.ids, c.ids)
    assert 0 < old.sum() < N
    np.testing.assert_array_equal(got[old], c.xyz[deleted.ids[old]])
    np.testing.assert_array_equal(got[~old], deleted.xyz[~old])
