"""Coloured point PLY (ga_jax.export.points) read back by a reader written here, and nearest-
surfel colours against a brute-force nearest neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from ga_jax.data.ply import write_ply_points
from ga_jax.export.points import point_colours, write_points_ply
from tests.export.shapes import random_surfels


def read_points(path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(type, name) of each vertex property and the rows, parsed here with numpy."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[1] == "format binary_little_endian 1.0" and lines[2].startswith("element vertex")
    props = [tuple(line.split()[1:]) for line in lines[3:-1]]
    codes = {"float": "<f4", "uchar": "u1"}
    rows = np.frombuffer(data, np.dtype([(n, codes[t]) for t, n in props]), offset=end)
    assert rows.size == int(lines[2].split()[2])
    return props, rows


def test_float_colours_are_stored_as_rounded_uchar(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(100, 3))
    rgb = rng.uniform(-0.2, 1.2, (100, 3))  # outside [0, 1] is clipped
    write_points_ply(tmp_path / "p.ply", xyz, rgb)
    props, rows = read_points(tmp_path / "p.ply")
    assert props == [
        ("float", "x"),
        ("float", "y"),
        ("float", "z"),
        ("uchar", "red"),
        ("uchar", "green"),
        ("uchar", "blue"),
    ]
    np.testing.assert_array_equal(np.stack([rows[a] for a in "xyz"], -1), xyz.astype(np.float32))
    back = np.stack([rows[c] for c in ("red", "green", "blue")], -1)
    np.testing.assert_array_equal(back, np.round(255 * np.clip(rgb, 0, 1)))


def test_uint8_colours_as_they_are_and_no_colours_is_the_plain_cloud(tmp_path):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(10, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (10, 3)).astype(np.uint8)
    write_points_ply(tmp_path / "c.ply", xyz, rgb)
    _, rows = read_points(tmp_path / "c.ply")
    np.testing.assert_array_equal(np.stack([rows["red"], rows["green"], rows["blue"]], -1), rgb)
    write_points_ply(tmp_path / "a.ply", xyz)
    write_ply_points(tmp_path / "b.ply", xyz)
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()


def test_point_colours_are_the_nearest_surfel_centres_colours():
    surfels = random_surfels(300, seed=2)
    xyz = np.random.default_rng(3).uniform(-0.5, 0.5, (500, 3))
    distance = np.linalg.norm(xyz[:, None] - surfels.means[None].astype(np.float64), axis=-1)
    expected = surfels.colors[np.argmin(distance, axis=1)]
    np.testing.assert_array_equal(point_colours(xyz, surfels), expected)
    assert point_colours(np.zeros((0, 3)), surfels).shape == (0, 3)


@pytest.mark.parametrize(
    "xyz, rgb, message",
    [
        (np.zeros((5, 2)), None, r"xyz: expected shape \[N, 3\]"),
        (np.full((5, 3), np.nan), None, "xyz: expected finite coordinates"),
        (np.zeros((5, 3)), np.zeros((4, 3)), r"rgb: expected shape \(5, 3\)"),
        (np.zeros((5, 3)), np.zeros((5, 3), np.int64), "rgb: expected uint8"),
        (np.zeros((5, 3)), np.full((5, 3), np.inf), "rgb: expected finite"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, xyz, rgb, message):
    path = tmp_path / "bad.ply"
    with pytest.raises(ValueError, match=message) as info:
        write_points_ply(path, xyz, rgb)
    assert str(info.value).startswith(str(path)) and not path.exists()
    with pytest.raises(ValueError, match="point_colours: xyz"):
        point_colours(np.zeros((5, 2)), random_surfels(4))
