"""Mesh fusion (ga_jax.export.mesh): the TSDF of one synthetic view against its closed form,
and the mesh of a sphere of surfels against the sphere (radius, bounding box, volume, winding,
colours), written as OBJ/GLB and loaded back with trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from ga_jax.export.mesh import fuse_mesh, fuse_tsdf, voxel_centres, write_mesh
from ga_jax.rendering.cameras import DATA_FOCAL, orbit_cameras
from tests.export.shapes import SPHERE_CENTRE, SPHERE_RADIUS, fast_backend, sphere_surfels

RESOLUTION = 64
VOXEL = 1 / RESOLUTION
FUSION = dict(resolution=RESOLUTION, views=6, size=64)  # 18 views of 64 px


@pytest.fixture(scope="module")
def sphere_mesh():
    return fuse_mesh(sphere_surfels(), backend=fast_backend(), **FUSION)


def test_tsdf_of_one_view_of_a_plane_matches_its_closed_form():
    """One camera at (1.7, 0, 0) looking down -x (image right = world +y, down = -z). The
    right half of the image sees a plane at camera z = 1.6 (world x = 0.1); the left half
    sees nothing, which carves free space."""
    size, tau = 32, 3 * (1 / 32)
    cameras = orbit_cameras(1, size, size, elevation_deg=0.0)
    depth = np.full((1, size, size), 1.6)
    alpha = np.zeros((1, size, size))
    alpha[:, :, size // 2 :] = 1.0
    depth[:, 5] = 30.0  # pixel row 5: a depth whose point lies outside the box is left out
    tsdf, count = fuse_tsdf(depth, alpha, cameras, resolution=32, truncation_voxels=3)
    x, y, z = np.moveaxis(voxel_centres(32), -1, 0)
    cam_z = 1.7 - x
    col = DATA_FOCAL * size * y / cam_z + size / 2
    row = DATA_FOCAL * size * -z / cam_z + size / 2
    in_image = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    sdf = x - 0.1
    observed = in_image & ((y < 0) | ((sdf >= -tau) & (np.floor(row) != 5)))
    np.testing.assert_array_equal(count, observed.astype(np.int32))
    expected = np.where(observed & (y > 0), np.minimum(sdf / tau, 1.0), 1.0)
    np.testing.assert_allclose(tsdf, expected, atol=1e-6)


def test_sphere_mesh_matches_the_sphere(sphere_mesh):
    mesh = sphere_mesh
    verts = np.asarray(mesh.vertices)
    assert len(mesh.faces) > 1000 and np.all(np.isfinite(verts))
    radius = np.linalg.norm(verts - SPHERE_CENTRE, axis=-1)
    # Measured: radii 0.2951..0.3118 (-0.3 to +0.8 voxels), mean 0.3016.
    assert np.max(np.abs(radius - SPHERE_RADIUS)) < 1.5 * VOXEL
    surfels = sphere_surfels()
    lo, hi = surfels.means.min(0), surfels.means.max(0)
    np.testing.assert_allclose(mesh.bounds, [lo, hi], atol=0.05 * np.max(hi - lo))
    # One closed surface wound outward: trimesh's signed volume is positive.
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    np.testing.assert_allclose(mesh.volume, 4 / 3 * np.pi * SPHERE_RADIUS**3, rtol=0.05)
    # Colours of the nearest surfels: red = 0.5 + 0.5 n_x of the radial direction.
    red = mesh.visual.vertex_colors[:, 0] / 255
    n_x = (verts[:, 0] - SPHERE_CENTRE[0]) / radius
    assert np.max(np.abs(red - (0.5 + 0.5 * n_x))) < 0.06
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:, 3], 255)


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_obj_and_glb_load_back_with_trimesh(tmp_path, sphere_mesh, suffix):
    path = write_mesh(tmp_path / f"mesh{suffix}", sphere_mesh)
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(sphere_mesh.faces)
    np.testing.assert_allclose(loaded.vertices, sphere_mesh.vertices, atol=1e-5)
    colours = np.asarray(loaded.visual.vertex_colors)
    np.testing.assert_array_equal(colours[:, :3], sphere_mesh.visual.vertex_colors[:, :3])


def test_errors(tmp_path, sphere_mesh):
    with pytest.raises(ValueError, match="fuse_mesh: no surface found: no pixel"):
        fuse_mesh(sphere_surfels(opacity=0.0), backend=fast_backend(), **FUSION)
    with pytest.raises(ValueError, match=r"fuse_mesh: surfels.means: contains NaN"):
        s = sphere_surfels(10)
        fuse_mesh(s.replace(means=np.full_like(s.means, np.nan)), **FUSION)
    path = tmp_path / "mesh.stl"
    with pytest.raises(ValueError, match=r"mesh.stl: expected a mesh file suffix among .obj"):
        write_mesh(path, sphere_mesh)
    assert not path.exists()


def test_an_object_beyond_the_data_box_is_not_cut_off():
    """A sphere reaching z = -0.62 (a generated object can overshoot [-0.5, 0.5]^3): the fusion
    box grows to cover its drawn surfels, and the mesh's bounding box is the surfels'."""
    surfels = sphere_surfels(centre=np.array([0.0, 0.05, -0.32]))
    mesh = fuse_mesh(surfels, backend=fast_backend(), **FUSION)
    lo, hi = surfels.means.min(0), surfels.means.max(0)
    assert lo[2] < -0.6
    np.testing.assert_allclose(mesh.bounds, [lo, hi], atol=0.05 * np.max(hi - lo))
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.volume, 4 / 3 * np.pi * SPHERE_RADIUS**3, rtol=0.05)
