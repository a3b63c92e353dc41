"""3DGS PLY export (ga_jax.export.splat3dgs) read back by a minimal reader written here (header
parsed line by line, body with numpy), with 3DGS's activations written out here (sigmoid, exp,
SH2RGB with C0 = 1 / (2 sqrt(pi)), build_rotation) and scipy's Rotation for the normal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ga_jax.export.splat3dgs import write_3dgs_ply
from ga_jax.rendering.surfels import Surfels
from tests.export.shapes import random_surfels

# graphdeco-inria/gaussian-splatting construct_list_of_attributes at SH degree 0.
EXPECTED = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
]


def read_3dgs(path) -> dict[str, np.ndarray]:
    """An independent reader: binary little-endian, one vertex element of float properties."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    kind, name, count = lines[2].split()
    assert (kind, name) == ("element", "vertex")
    props = [line.split() for line in lines[3:-1]]
    assert all(p[0] == "property" and p[1] == "float" for p in props), props
    names = [p[2] for p in props]
    body = np.frombuffer(data, "<f4", offset=end)
    assert body.size == int(count) * len(names), "body size"
    table = body.reshape(int(count), len(names))
    return {n: table[:, i] for i, n in enumerate(names)}


def test_layout_and_activations_give_back_the_surfels(tmp_path):
    surfels = random_surfels(200, seed=1)
    path = tmp_path / "splat.ply"
    write_3dgs_ply(path, surfels)
    cols = read_3dgs(path)
    assert list(cols) == EXPECTED  # no f_rest_*: SH degree 0
    f = lambda *names: np.stack([cols[n].astype(np.float64) for n in names], -1)
    np.testing.assert_array_equal(f("x", "y", "z"), surfels.means)
    np.testing.assert_array_equal(f("nx", "ny", "nz"), 0.0)
    c0 = 1 / (2 * np.sqrt(np.pi))
    np.testing.assert_allclose(
        0.5 + c0 * f("f_dc_0", "f_dc_1", "f_dc_2"), surfels.colors, atol=2e-7
    )
    opacity = 1 / (1 + np.exp(-cols["opacity"].astype(np.float64)))
    np.testing.assert_allclose(opacity, surfels.opacities, rtol=1e-6, atol=1e-30)
    scales = np.exp(f("scale_0", "scale_1", "scale_2"))
    np.testing.assert_allclose(scales[:, :2], surfels.scales, rtol=2e-6)
    # The documented rule for the thickness along the normal.
    thickness = np.maximum(0.1 * np.min(surfels.scales.astype(np.float64), -1), 1e-7)
    np.testing.assert_allclose(scales[:, 2], thickness, rtol=2e-6)
    q = surfels.quaternions.astype(np.float64)
    np.testing.assert_allclose(
        f("rot_0", "rot_1", "rot_2", "rot_3"),
        q / np.linalg.norm(q, axis=-1, keepdims=True),
        atol=2e-7,
    )


def test_the_thin_axis_of_the_3d_covariance_is_the_surfel_normal(tmp_path):
    """3DGS's covariance R diag(s)^2 R^T (build_rotation reads rot_0 as w) has its smallest
    axis along the surfel's normal t_w, the third column of the quaternion's rotation."""
    surfels = random_surfels(50, seed=2)
    write_3dgs_ply(tmp_path / "s.ply", surfels)
    cols = read_3dgs(tmp_path / "s.ply")
    r, x, y, z = (cols[f"rot_{i}"].astype(np.float64) for i in range(4))
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - r * z), 2 * (x * z + r * y)], -1),
            np.stack([2 * (x * y + r * z), 1 - 2 * (x * x + z * z), 2 * (y * z - r * x)], -1),
            np.stack([2 * (x * z - r * y), 2 * (y * z + r * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    s = np.exp(np.stack([cols[f"scale_{i}"].astype(np.float64) for i in range(3)], -1))
    cov = rot @ (s[:, :, None] ** 2 * np.swapaxes(rot, -1, -2))
    values, vectors = np.linalg.eigh(cov)
    q = surfels.quaternions.astype(np.float64)
    normal = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()[:, :, 2]
    np.testing.assert_allclose(np.abs(np.sum(vectors[:, :, 0] * normal, -1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(values[:, 0], s[:, 2] ** 2, rtol=1e-5)


def test_saturated_opacities_and_zero_scales_stay_finite(tmp_path):
    n = 3
    surfels = Surfels(
        means=np.zeros((n, 3), np.float32),
        quaternions=np.tile(np.float32([3, 0, 0, 0]), (n, 1)),
        scales=np.float32([[0, 0], [0, 1e-3], [1e-2, 1e-2]]),
        opacities=np.float32([0, 1, 0.5]),
        colors=np.float32([[0, 1, 0.5]] * n),
    )
    write_3dgs_ply(tmp_path / "s.ply", surfels)
    cols = read_3dgs(tmp_path / "s.ply")
    assert all(np.all(np.isfinite(v)) for v in cols.values())
    np.testing.assert_allclose(
        np.exp(cols["scale_2"].astype(np.float64)), [1e-7, 1e-7, 1e-3], rtol=1e-6
    )
    opacity = 1 / (1 + np.exp(-cols["opacity"].astype(np.float64)))
    assert opacity[0] < 1e-30 and 1 - opacity[1] < 1e-7


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("means", np.full((4, 3), np.nan, np.float32), "surfels.means: contains NaN"),
        ("scales", np.ones((4, 3), np.float32), r"surfels.scales: expected shape \(4, 2\)"),
        ("opacities", np.full(4, 1.5, np.float32), r"surfels.opacities: expected values in"),
        ("colors", np.ones((4, 4), np.float32), r"surfels.colors: expected shape \[N, 3\]"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, field, value, message):
    good = random_surfels(4)
    bad = Surfels(**{**{k: getattr(good, k) for k in good.__dataclass_fields__}, field: value})
    path = tmp_path / "bad.ply"
    with pytest.raises(ValueError, match=message) as info:
        write_3dgs_ply(path, bad)
    assert str(info.value).startswith(str(path))
    assert not path.exists()
