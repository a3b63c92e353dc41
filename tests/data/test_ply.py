"""Tests of ga_jax.data.ply: the PLY vertex reader on the layouts other tools write, its
errors, and the writer.

Files are made here by a small independent writer (`make_ply`: a header string plus numpy
structured rows in the stated byte order, or "%r"-formatted ASCII rows), so the expected
points are the arrays that went in. The real `fps-4096.ply` files are compared with the raw
float32 bytes after their header.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ga_jax.data.ply import (
    PlyError,
    read_ply_points,
    read_ply_vertices,
    write_ply_points,
    write_ply_vertices,
)

FPS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "objaverse_fps"

NUMPY = {
    "float": "f4",
    "double": "f8",
    "int": "i4",
    "short": "i2",
    "uchar": "u1",
    "char": "i1",
    "float32": "f4",
    "float64": "f8",
    "int32": "i4",
    "uint": "u4",
    "ushort": "u2",
}
TRIANGLES = np.array([[0, 1, 2], [2, 3, 0], [1, 2, 3]])


def make_ply(path, fmt, elements, newline="\n", comments=("comment made by a test",)):
    """Write a PLY. elements: [(name, count, [(type, name) or ("list", ctype, type, name)],
    rows)] with rows a list of per-row value lists (lists flattened with their length)."""
    header = ["ply", f"format {fmt} 1.0", *comments]
    for name, count, props, _ in elements:
        header.append(f"element {name} {count}")
        header += ["property " + " ".join(p) for p in props]
    header.append("end_header")
    body = b""
    for _, _, props, rows in elements:
        for row in rows:
            values = iter(row)
            for prop in props:
                if prop[0] == "list":
                    items = list(next(values))
                    pairs = [(prop[1], len(items))] + [(prop[2], v) for v in items]
                else:
                    pairs = [(prop[0], next(values))]
                for ptype, value in pairs:
                    if fmt == "ascii":
                        body += (repr(value) if "f" in NUMPY[ptype] else str(int(value))).encode()
                        body += b" "
                    else:
                        order = "<" if fmt == "binary_little_endian" else ">"
                        body += np.array(value, order + NUMPY[ptype]).tobytes()
            if fmt == "ascii":
                body = body.rstrip(b" ") + newline.encode()
    Path(path).write_bytes(newline.join(header).encode() + newline.encode() + body)


def cloud(n=6, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-0.45, 0.45, (n, 3)).astype(dtype)


# --------------------------------------------------------------------------------------------
# The data's files


def test_real_fps_files_read_their_float32_bytes_and_write_back_byte_identically(tmp_path):
    files = sorted(FPS.glob("Animals/0/*/fps-4096.ply"))
    if not files:
        pytest.skip(f"real FPS point clouds not found under {FPS} (expected ../shared/data)")
    for file in files:
        raw = file.read_bytes()
        body = raw[raw.index(b"end_header\n") + len(b"end_header\n") :]
        points = read_ply_points(file)
        assert points.dtype == np.float32 and points.shape == (4096, 3)
        np.testing.assert_array_equal(points, np.frombuffer(body, "<f4").reshape(4096, 3))
        write_ply_points(tmp_path / "copy.ply", points)
        assert (tmp_path / "copy.ply").read_bytes() == raw, file


# --------------------------------------------------------------------------------------------
# Layouts other tools write


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("ctype", ["float", "double", "float32"])
def test_formats_types_extra_properties_and_faces(tmp_path, fmt, ctype):
    """MeshLab-like: x y z, normals, uchar colours, quality; faces after the vertices."""
    points = cloud(dtype=np.float32 if "32" in ctype or ctype == "float" else np.float64)
    colours = np.arange(18).reshape(6, 3) * 10
    props = [
        (ctype, "x"),
        (ctype, "y"),
        (ctype, "z"),
        ("float", "nx"),
        ("float", "ny"),
        ("float", "nz"),
        ("uchar", "red"),
        ("uchar", "green"),
        ("uchar", "blue"),
        ("float", "quality"),
    ]
    rows = [[*p, 0.0, 0.0, 1.0, *c, 0.5] for p, c in zip(points.tolist(), colours, strict=True)]
    faces = [[list(t)] for t in TRIANGLES]
    make_ply(
        tmp_path / "a.ply",
        fmt,
        [
            ("vertex", 6, props, rows),
            ("face", 3, [("list", "uchar", "int", "vertex_indices")], faces),
        ],
    )
    got = read_ply_points(tmp_path / "a.ply")
    assert got.dtype == np.float32 and got.shape == (6, 3)
    np.testing.assert_array_equal(got, points.astype(np.float32))
    columns = read_ply_vertices(tmp_path / "a.ply")
    assert list(columns) == [name for _, name in props]
    assert columns["red"].dtype == np.uint8
    np.testing.assert_array_equal(columns["blue"], colours[:, 2])


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_elements_before_the_vertices_are_walked_over(tmp_path, fmt):
    """Lists of varying length (a quad among triangles) before the vertices, y before x,
    integer coordinates, Windows line ends."""
    points = np.array([[1, -2, 3], [4, 5, -6], [7, 8, 9]])
    faces = [[[0, 1, 2], 7], [[0, 1, 2, 1], 8]]
    make_ply(
        tmp_path / "a.ply",
        fmt,
        [
            ("face", 2, [("list", "uchar", "int", "vertex_indices"), ("int", "flags")], faces),
            ("material", 1, [("float", "shine")], [[0.25]]),
            (
                "vertex",
                3,
                [("short", "y"), ("int", "x"), ("char", "z")],
                [[y, x, z] for x, y, z in points],
            ),
        ],
        newline="\r\n",
    )
    np.testing.assert_array_equal(read_ply_points(tmp_path / "a.ply"), points.astype(np.float32))


@pytest.mark.parametrize("fmt", ["ascii", "binary_big_endian"])
def test_vertex_element_with_a_list_property(tmp_path, fmt):
    points = cloud(3, seed=1)
    rows = [[p[0], [1, 2][: i % 3], p[1], p[2]] for i, p in enumerate(points.tolist())]
    props = [("float", "x"), ("list", "uchar", "int", "ids"), ("float", "y"), ("float", "z")]
    make_ply(tmp_path / "a.ply", fmt, [("vertex", 3, props, rows)])
    np.testing.assert_array_equal(read_ply_points(tmp_path / "a.ply"), points)
    assert list(read_ply_vertices(tmp_path / "a.ply")) == ["x", "y", "z"]


def test_empty_cloud_and_damaged_faces_after_the_vertices(tmp_path):
    make_ply(
        tmp_path / "empty.ply",
        "binary_little_endian",
        [("vertex", 0, [("float", "x"), ("float", "y"), ("float", "z")], [])],
    )
    assert read_ply_points(tmp_path / "empty.ply").shape == (0, 3)
    points = cloud(4)
    make_ply(
        tmp_path / "a.ply",
        "binary_little_endian",
        [
            ("vertex", 4, [("float", "x"), ("float", "y"), ("float", "z")], points.tolist()),
            ("face", 2, [("list", "uchar", "int", "vertex_indices")], [[[0, 1, 2]], [[1, 2, 3]]]),
        ],
    )
    path = tmp_path / "a.ply"
    path.write_bytes(path.read_bytes()[:-5])  # the faces are not read: the cloud still loads
    np.testing.assert_array_equal(read_ply_points(path), points)


# --------------------------------------------------------------------------------------------
# Errors name the file and what was expected


def expect(path, *fragments):
    with pytest.raises(PlyError) as info:
        read_ply_points(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


XYZ = [("float", "x"), ("float", "y"), ("float", "z")]


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_truncated_files(tmp_path, fmt):
    path = tmp_path / "short.ply"
    make_ply(path, fmt, [("vertex", 5, XYZ, cloud(5).tolist())])
    path.write_bytes(path.read_bytes()[:-20])
    expect(path, "truncated")
    make_ply(
        path,
        fmt,
        [
            (
                "face",
                3,
                [("list", "uchar", "int", "vertex_indices")],
                [[list(t)] for t in TRIANGLES],
            ),
            ("vertex", 5, XYZ, cloud(5).tolist()),
        ],
    )
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"end_header") + 14])  # faces cut short, no vertices
    expect(path, "truncated")


def test_missing_coordinates_and_non_finite_values(tmp_path):
    path = tmp_path / "a.ply"
    make_ply(
        path,
        "binary_little_endian",
        [("vertex", 2, [("float", "x"), ("float", "y"), ("float", "nx")], [[0, 0, 0]] * 2)],
    )
    expect(path, "expected vertex properties x, y and z", "missing z")
    for bad in (np.nan, np.inf):
        make_ply(path, "binary_little_endian", [("vertex", 2, XYZ, [[0, 0, 0], [0, bad, 0]])])
        expect(path, "finite", "1 of 2 vertices")
    make_ply(path, "ascii", [("vertex", 2, XYZ, [[0.0, 0.0, 0.0], [0.0, float("nan"), 0.0]])])
    expect(path, "finite")
    make_ply(
        path,
        "binary_little_endian",
        [("vertex", 1, [("double", "x"), ("double", "y"), ("double", "z")], [[0, 1e300, 0]])],
    )
    expect(path, "finite float32")


@pytest.mark.parametrize(
    "header, fragments",
    [
        (
            "ply\nformat binary_little_endian 1.0\nelement face 1\n"
            "property list uchar int vertex_indices\nend_header\n",
            ("'vertex' element",),
        ),
        ("ply\nformat binary_middle_endian 1.0\nelement vertex 1\nend_header\n", ("format",)),
        ("ply\nelement vertex 1\nproperty float x\nend_header\n", ("'format ...' line",)),
        (
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n",
            ("unknown PLY type 'float128'",),
        ),
        ("ply\nformat ascii 1.0\nelement vertex -3\nend_header\n", ("count >= 0",)),
        ("ply\nformat ascii 1.0\nproperty float x\nend_header\n", ("unexpected PLY header",)),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", ("end_header",)),
        ("\x89PNG not a ply", ("expected a PLY file",)),
    ],
)
def test_bad_headers(tmp_path, header, fragments):
    path = tmp_path / "bad.ply"
    path.write_bytes(header.encode("latin-1"))
    expect(path, *fragments)


def test_unreadable_and_non_numeric(tmp_path):
    expect(tmp_path / "absent.ply", "cannot read")
    path = tmp_path / "words.ply"
    path.write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
        b"property float y\nproperty float z\nend_header\n0 one 2\n"
    )
    expect(path, "expected numbers")


# --------------------------------------------------------------------------------------------
# Writer


def test_write_vertices_round_trip_and_header(tmp_path):
    columns = {
        "x": cloud(5)[:, 0],
        "value": np.linspace(-1, 1, 5),
        "red": np.arange(5, dtype=np.uint8),
        "id": np.arange(5, dtype=np.int32) - 2,
    }
    write_ply_vertices(tmp_path / "a.ply", columns)
    data = (tmp_path / "a.ply").read_bytes()
    assert data.startswith(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\n"
        b"property double value\nproperty uchar red\nproperty int id\nend_header\n"
    )
    got = read_ply_vertices(tmp_path / "a.ply")
    assert list(got) == list(columns)
    for name, value in columns.items():
        assert got[name].dtype == value.dtype
        np.testing.assert_array_equal(got[name], value)


def test_writer_errors_name_the_file_and_column(tmp_path):
    path = tmp_path / "a.ply"
    cases = [
        ({"x": np.zeros(3), "y": np.zeros(4)}, "column 'y': expected shape [3]"),
        ({"x": np.zeros((3, 1))}, "column 'x': expected shape [N]"),
        ({"x": np.zeros(3, np.int64)}, "column 'x': expected a dtype"),
        ({"x": np.array([0.0, np.nan])}, "column 'x': expected finite"),
        ({"my x": np.zeros(3)}, "without spaces"),
        ({}, "at least one"),
    ]
    for columns, fragment in cases:
        with pytest.raises(ValueError, match=re.escape(fragment)) as info:
            write_ply_vertices(path, columns)
        assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=r"points: expected shape \[N, 3\]"):
        write_ply_points(path, np.zeros((4, 2)))
    assert not path.exists()
