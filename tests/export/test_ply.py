"""Surfel PLY export (ga_jax.export.ply) against independent computations: the literal 2DGS
header, scipy's Rotation (x, y, z, w order) for the normal column, closed-form values of the
SH and logit maps, and surfels made by our own surfel head's activations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ga_jax.data.ply import PlyError, read_ply_vertices, write_ply_vertices
from ga_jax.export.ply import (
    SH_C0,
    SURFEL_PLY_PROPERTIES,
    logit_to_opacity,
    opacity_to_logit,
    read_surfel_ply,
    rgb_to_sh_dc,
    sh_dc_to_rgb,
    surfel_ply_fields,
    write_surfel_ply,
)
from ga_jax.models.vae.surfel_head import surfel_activations
from ga_jax.rendering.surfels import Surfels

HEADER = (
    b"ply\nformat binary_little_endian 1.0\nelement vertex 50\n"
    b"property float x\nproperty float y\nproperty float z\n"
    b"property float nx\nproperty float ny\nproperty float nz\n"
    b"property float f_dc_0\nproperty float f_dc_1\nproperty float f_dc_2\n"
    b"property float opacity\nproperty float scale_0\nproperty float scale_1\n"
    b"property float rot_0\nproperty float rot_1\nproperty float rot_2\nproperty float rot_3\n"
    b"end_header\n"
)


def head_surfels(n=50, seed=0) -> Surfels:
    """Surfels as the decoder makes them: surfel_activations of random pre-activations."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    xyz = jax.random.uniform(k1, (n, 3), minval=-0.45, maxval=0.45)
    pre = 2.0 * jax.random.normal(k2, (n, 13))
    return surfel_activations(xyz, pre)


def test_round_trip_is_exact_and_the_header_is_the_2dgs_layout(tmp_path):
    surfels = head_surfels()
    path = tmp_path / "s.ply"
    write_surfel_ply(path, surfels)
    data = path.read_bytes()
    assert data.startswith(HEADER) and len(data) == len(HEADER) + 50 * 16 * 4
    stored = read_ply_vertices(path)
    expected = surfel_ply_fields(surfels)
    assert tuple(stored) == tuple(expected) == SURFEL_PLY_PROPERTIES
    for name in SURFEL_PLY_PROPERTIES:
        assert stored[name].dtype == np.float32
        np.testing.assert_array_equal(stored[name], expected[name], err_msg=name)


def test_read_back_surfels_match_within_float32_rounding(tmp_path):
    surfels = head_surfels(seed=1)
    write_surfel_ply(tmp_path / "s.ply", surfels)
    back = read_surfel_ply(tmp_path / "s.ply")
    np.testing.assert_array_equal(back.means, surfels.means)
    q = np.asarray(surfels.quaternions, np.float64)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    # Measured over 40,000 head surfels: quaternions 4e-8 absolute, scales 5.2e-7 relative
    # (float32 log), opacities 1.3e-7 relative (float32 logit), colours 1.9e-8 absolute.
    np.testing.assert_allclose(back.quaternions, q, rtol=0, atol=2e-7)
    np.testing.assert_allclose(back.scales, surfels.scales, rtol=2e-6)
    np.testing.assert_allclose(back.opacities, surfels.opacities, rtol=1e-6)
    np.testing.assert_allclose(back.colors, surfels.colors, rtol=0, atol=1e-7)


def test_normals_and_quaternion_order_against_scipy():
    surfels = head_surfels(seed=2)
    fields = surfel_ply_fields(surfels)
    wxyz = np.stack([fields[f"rot_{i}"] for i in range(4)], -1).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(wxyz, axis=-1), 1.0, atol=1e-6)
    q = np.asarray(surfels.quaternions, np.float64)
    np.testing.assert_allclose(wxyz, q / np.linalg.norm(q, axis=-1, keepdims=True), atol=1e-7)
    # scipy takes (x, y, z, w): the third column of the rotation is the surfel normal t_w.
    expected = Rotation.from_quat(wxyz[:, [1, 2, 3, 0]]).as_matrix()[:, :, 2]
    normal = np.stack([fields["nx"], fields["ny"], fields["nz"]], -1)
    np.testing.assert_allclose(normal, expected, atol=1e-6)


def test_colour_and_opacity_maps_are_inverse():
    rgb = np.random.default_rng(3).uniform(size=(100, 3))
    np.testing.assert_allclose(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb, atol=1e-15)
    np.testing.assert_allclose(
        rgb_to_sh_dc([0.5, 1.0, 0.0]), [0.0, np.sqrt(np.pi), -np.sqrt(np.pi)]
    )
    assert SH_C0 == pytest.approx(1 / (2 * np.sqrt(np.pi)), rel=1e-15)
    o = np.random.default_rng(4).uniform(1e-6, 1 - 1e-6, 1000)
    np.testing.assert_allclose(logit_to_opacity(opacity_to_logit(o)), o, rtol=1e-12)
    np.testing.assert_allclose(opacity_to_logit([0.5, 0.75]), [0.0, np.log(3.0)], atol=1e-15)
    # The ends are clamped to finite logits that read back as the nearest float32 values.
    ends = opacity_to_logit([0.0, 1.0])
    assert np.all(np.isfinite(ends))
    back = logit_to_opacity(ends.astype(np.float32)).astype(np.float32)
    assert back[1] == np.nextafter(np.float32(1), 0)  # 1 - 2^-24
    np.testing.assert_allclose(back[0], np.finfo(np.float32).tiny, rtol=1e-5)  # 2^-126
    # And our activations' inverse: sigmoid of the stored logit in float32 (jax) is o.
    o32 = jnp.asarray(o, jnp.float32)
    stored = jnp.asarray(opacity_to_logit(np.asarray(o32)), jnp.float32)
    np.testing.assert_allclose(jax.nn.sigmoid(stored), o32, rtol=1e-6)


def test_extremes_stay_finite(tmp_path):
    n = 4
    surfels = Surfels(
        means=np.zeros((n, 3), np.float32),
        quaternions=np.tile(np.float32([2, 0, 0, 0]), (n, 1)),  # not normalised
        scales=np.float32([[0, 1e-3]] * n),
        opacities=np.float32([0, 1, 0.5, 1e-30]),
        colors=np.float32([[0, 1, 0.5]] * n),
    )
    write_surfel_ply(tmp_path / "s.ply", surfels)
    fields = read_ply_vertices(tmp_path / "s.ply")
    assert all(np.all(np.isfinite(v)) for v in fields.values())
    np.testing.assert_array_equal(fields["rot_0"], 1.0)
    back = read_surfel_ply(tmp_path / "s.ply")
    assert np.all(back.scales[:, 0] < 2e-38) and np.all(back.opacities[[0, 3]] < 2e-30)
    assert back.opacities[1] == np.nextafter(np.float32(1), 0)


def test_reads_a_2dgs_file_with_sh_rest_and_zero_normals(tmp_path):
    """2DGS's save_ply: zero normals, 45 f_rest_* (degree 3), an unnormalised quaternion."""
    rng = np.random.default_rng(5)
    n = 8
    cols = {name: rng.normal(size=n).astype(np.float32) for name in ("x", "y", "z")}
    cols |= {name: np.zeros(n, np.float32) for name in ("nx", "ny", "nz")}
    cols |= {f"f_dc_{i}": rng.normal(size=n).astype(np.float32) for i in range(3)}
    cols |= {f"f_rest_{i}": rng.normal(size=n).astype(np.float32) for i in range(45)}
    cols |= {"opacity": rng.normal(size=n).astype(np.float32)}
    cols |= {f"scale_{i}": rng.normal(-5, 1, size=n).astype(np.float32) for i in range(2)}
    cols |= {f"rot_{i}": rng.normal(size=n).astype(np.float32) for i in range(4)}
    write_ply_vertices(tmp_path / "g.ply", cols)
    back = read_surfel_ply(tmp_path / "g.ply")
    q = np.stack([cols[f"rot_{i}"] for i in range(4)], -1).astype(np.float64)
    np.testing.assert_allclose(
        back.quaternions, q / np.linalg.norm(q, axis=-1, keepdims=True), atol=1e-7
    )
    np.testing.assert_allclose(
        back.opacities, 1 / (1 + np.exp(-cols["opacity"].astype(float))), rtol=1e-6
    )
    np.testing.assert_allclose(back.scales[:, 1], np.exp(cols["scale_1"].astype(float)), rtol=1e-6)
    np.testing.assert_allclose(back.colors[:, 2], 0.5 + SH_C0 * cols["f_dc_2"], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Errors


def good(n=5) -> dict:
    return dict(
        means=np.zeros((n, 3), np.float32),
        quaternions=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        scales=np.full((n, 2), 0.01, np.float32),
        opacities=np.full((n,), 0.5, np.float32),
        colors=np.full((n, 3), 0.5, np.float32),
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("means", np.zeros((2, 5, 3)), r"surfels.means: expected shape \[N, 3\]"),
        ("scales", np.zeros((5, 3)), r"surfels.scales: expected shape \(5, 2\)"),
        ("colors", np.zeros((5, 4)), r"surfels.colors: expected shape \[N, 3\]"),
        ("opacities", np.zeros((5, 1)), r"surfels.opacities: expected shape \(5,\)"),
        ("scales", np.full((5, 2), np.nan), "surfels.scales: contains NaN or inf"),
        ("means", np.full((5, 3), np.inf), "surfels.means: contains NaN or inf"),
        (
            "opacities",
            np.float32([0.5, 0.5, 1.5, 0.5, -0.1]),
            r"opacities: expected values in \[0, 1\], found 2",
        ),
        ("scales", np.float32([[0.1, -0.1]] * 5), "scales: expected values >= 0"),
        ("quaternions", np.zeros((5, 4)), "quaternions: expected values with a non-zero norm"),
    ],
)
def test_writer_errors_name_the_file_and_field(tmp_path, field, value, message):
    path = tmp_path / "bad.ply"
    with pytest.raises(ValueError, match=message) as info:
        write_surfel_ply(path, Surfels(**{**good(), field: value}))
    assert str(info.value).startswith(str(path))
    assert not path.exists()


def test_reader_errors_name_the_file(tmp_path):
    path = tmp_path / "points.ply"
    write_ply_vertices(path, {a: np.zeros(3, np.float32) for a in "xyz"})
    with pytest.raises(PlyError, match="missing f_dc_0, f_dc_1") as info:
        read_surfel_ply(path)
    assert str(info.value).startswith(str(path))
    fields = surfel_ply_fields(Surfels(**good()))
    fields["scale_1"] = fields["scale_1"].copy()
    write_ply_vertices(path, fields)
    fields_bytes = path.read_bytes()
    nan = np.float32(np.nan).tobytes()
    # Overwrite the first surfel's scale_1 (property 11) with NaN in the file itself.
    at = len(fields_bytes) - 5 * 64 + 11 * 4
    path.write_bytes(fields_bytes[:at] + nan + fields_bytes[at + 4 :])
    with pytest.raises(PlyError, match="NaN/inf in scale_1"):
        read_surfel_ply(path)
    fields["rot_0"] = np.zeros(5, np.float32)
    write_ply_vertices(path, fields)
    with pytest.raises(PlyError, match="non-zero quaternions"):
        read_surfel_ply(path)
