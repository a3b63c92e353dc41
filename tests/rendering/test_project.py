"""project_surfels against independent geometry (explicit ray-plane intersections)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.rendering import (
    Cameras,
    Surfels,
    orbit_cameras,
    project_surfels,
    quaternion_to_rotation,
)
from ga_jax.rendering.scenes import random_surfels


def test_quaternion_to_rotation_is_orthonormal_and_wxyz():
    q = jax.random.normal(jax.random.key(0), (50, 4))
    r = quaternion_to_rotation(q)
    np.testing.assert_allclose(
        r @ jnp.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
    )
    np.testing.assert_allclose(jnp.linalg.det(r), 1.0, atol=1e-5)
    # 90 degrees about z, (w, x, y, z) = (cos 45, 0, 0, sin 45): x -> y.
    rz = quaternion_to_rotation(jnp.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]))
    np.testing.assert_allclose(rz @ jnp.array([1.0, 0, 0]), [0, 1, 0], atol=1e-6)


def test_camera_rows_roundtrip_and_projection():
    cams = orbit_cameras(3, 32, 48)
    k_norm = cams.intrinsics / jnp.array([48.0, 32.0, 1.0])[:, None]
    rows = jnp.concatenate([cams.cam2world.reshape(3, 16), k_norm.reshape(3, 9)], -1)
    again = Cameras.from_rows(rows, 32, 48)
    np.testing.assert_allclose(again.intrinsics, cams.intrinsics, atol=1e-5)
    # The origin projects to the image centre; the camera looks at it.
    pix, z = cams.project(jnp.zeros((3, 1, 3)))
    np.testing.assert_allclose(pix[:, 0], np.tile([24.0, 16.0], (3, 1)), atol=1e-4)
    np.testing.assert_allclose(z[:, 0], 1.7, atol=1e-5)
    np.testing.assert_allclose(
        cams.world2cam @ cams.cam2world, np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-5
    )


def test_ray_splat_intersection_matches_ray_plane_geometry():
    surfels = random_surfels(jax.random.key(1), 64)
    cams = orbit_cameras(2, 40, 40)
    splats = project_surfels(surfels, cams)
    rng = np.random.default_rng(0)
    rot = quaternion_to_rotation(surfels.quaternions)
    for view in range(2):
        c2w = np.asarray(cams.cam2world[view])
        k_inv = np.linalg.inv(np.asarray(cams.intrinsics[view]))
        for i in range(0, 64, 7):
            centre = np.asarray(splats.means2d[view, i])
            x, y = centre + rng.normal(0, 1.5, 2)
            # Independent: world ray through the pixel, intersected with the surfel's plane.
            direction = c2w[:3, :3] @ (k_inv @ np.array([x, y, 1.0]))
            origin = c2w[:3, 3]
            normal = np.asarray(rot[i, :, 2])
            p = np.asarray(surfels.means[i])
            t = np.dot(p - origin, normal) / np.dot(direction, normal)
            hit = origin + t * direction
            u_ref = np.dot(hit - p, rot[i, :, 0]) / surfels.scales[i, 0]
            v_ref = np.dot(hit - p, rot[i, :, 1]) / surfels.scales[i, 1]
            z_ref = (np.linalg.inv(c2w) @ np.append(hit, 1.0))[2]
            # The rasterizer's formula: q = (x T_w - T_u) x (y T_w - T_v).
            tu, tv, tw = np.asarray(splats.transforms[view, i], np.float64)
            q = np.cross(x * tw - tu, y * tw - tv)
            u, v = q[0] / q[2], q[1] / q[2]
            np.testing.assert_allclose([u, v], [u_ref, v_ref], rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(u * tw[0] + v * tw[1] + tw[2], z_ref, rtol=1e-5)


def test_centres_depths_normals_and_bounds():
    surfels = random_surfels(jax.random.key(2), 200)
    cams = orbit_cameras(2, 64, 64)
    splats = project_surfels(surfels, cams)
    pix, z = cams.project(jnp.broadcast_to(surfels.means, (2, 200, 3)))
    # Bounding-box centre vs projected centre: < 0.05 px at these sizes (DESIGN 4).
    np.testing.assert_allclose(splats.means2d, pix, atol=0.05)
    np.testing.assert_allclose(splats.depths, z, rtol=1e-5)
    # Normals are unit and face the camera.
    np.testing.assert_allclose(jnp.linalg.norm(splats.normals, axis=-1), 1.0, atol=1e-5)
    w2c = cams.world2cam
    centre_cam = jnp.einsum("vij,nj->vni", w2c[:, :3, :3], surfels.means) + w2c[:, None, :3, 3]
    assert bool(jnp.all(jnp.sum(splats.normals * -centre_cam, -1) > 0))


def _near_tilted_surfels(key, num, opacities):
    """Large surfels 0.5-0.9 m in front of orbit_cameras(1, ...)'s camera, tilted at random:
    strong perspective, so boxes of the projected ellipse for different cutoffs have
    visibly different centres."""
    cams = orbit_cameras(1, 64, 64)
    k_pos, k_rot, k_scale = jax.random.split(key, 3)
    c2w = cams.cam2world[0]
    z = jax.random.uniform(k_pos, (num, 1), minval=0.5, maxval=0.9)
    lateral = jax.random.uniform(jax.random.fold_in(k_pos, 1), (num, 2), minval=-0.2, maxval=0.2)
    cam_points = jnp.concatenate([lateral * z, z], axis=-1)
    means = cam_points @ c2w[:3, :3].T + c2w[:3, 3]
    scales = jax.random.uniform(k_scale, (num, 2), minval=0.01, maxval=0.06)
    surfels = Surfels(means, jax.random.normal(k_rot, (num, 4)), scales, opacities,
                      jnp.ones((num, 3)))
    return surfels, cams


def test_filter_centre_is_the_box_centre_of_the_3_sigma_ellipse():
    """means2d (the low-pass filter's centre) is the centre of the screen bounding box of
    the projected circle u^2 + v^2 = 9, found here by projecting 20,000 points of that
    circle, whatever the opacity (the 2DGS reference's compute_aabb with cutoff 3)."""
    num = 16
    opacities = jnp.linspace(0.05, 1.0, num)
    surfels, cams = _near_tilted_surfels(jax.random.key(7), num, opacities)
    splats = jax.tree.map(lambda x: x[0], project_surfels(surfels, cams))
    assert bool(jnp.all(splats.valid))
    theta = np.linspace(0, 2 * np.pi, 20_000, endpoint=False)
    rot = np.asarray(quaternion_to_rotation(surfels.quaternions), np.float64)
    w2c = np.asarray(cams.world2cam[0], np.float64)
    k = np.asarray(cams.intrinsics[0], np.float64)
    for i in range(num):
        s_u, s_v = np.asarray(surfels.scales[i], np.float64)
        circle = (np.asarray(surfels.means[i], np.float64)
                  + 3 * s_u * np.cos(theta)[:, None] * rot[i, :, 0]
                  + 3 * s_v * np.sin(theta)[:, None] * rot[i, :, 1])
        cam = circle @ w2c[:3, :3].T + w2c[:3, 3]
        pix = (cam @ k.T)[:, :2] / cam[:, 2:3]
        box_centre = (pix.min(0) + pix.max(0)) / 2
        np.testing.assert_allclose(splats.means2d[i], box_centre, atol=2e-3, err_msg=str(i))
    # Another opacity moves nothing.
    other = project_surfels(surfels.replace(opacities=opacities[::-1]), cams)
    np.testing.assert_array_equal(other.means2d[0], splats.means2d)


@pytest.mark.parametrize("near_camera", [False, True])
def test_bounding_box_contains_every_visible_pixel(near_camera):
    """Outside means2d +- extents every pixel's alpha is below 1/255 (so tiling is exact),
    also for large tilted surfels near the camera, whose 1/255 box has another centre than
    the 3-sigma box that means2d is the centre of."""
    if near_camera:
        opacities = jax.random.uniform(jax.random.key(4), (40,), minval=0.05, maxval=1.0)
        surfels, cams = _near_tilted_surfels(jax.random.key(3), 40, opacities)
    else:
        surfels = random_surfels(jax.random.key(3), 40, scale_pre_std=1.0)
        surfels = surfels.replace(scales=surfels.scales * 3, opacities=jnp.full((40,), 0.99))
        cams = orbit_cameras(1, 64, 64)
    s = jax.tree.map(lambda x: x[0], project_surfels(surfels, cams))
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    for i in range(40):
        tu, tv, tw = np.asarray(s.transforms[i], np.float64)
        k = xs[..., None] * tw - tu
        l = ys[..., None] * tw - tv
        q = np.cross(k, l)
        rho3d = (q[..., 0] / q[..., 2]) ** 2 + (q[..., 1] / q[..., 2]) ** 2
        rho2d = 2 * ((xs - s.means2d[i, 0]) ** 2 + (ys - s.means2d[i, 1]) ** 2)
        alpha = float(s.opacities[i]) * np.exp(-0.5 * np.minimum(rho3d, rho2d))
        outside = (np.abs(xs - s.means2d[i, 0]) > s.extents[i, 0]) | (
            np.abs(ys - s.means2d[i, 1]) > s.extents[i, 1]
        )
        assert np.all(alpha[outside] < 1 / 255 + 1e-6)
        assert np.any(alpha[~outside] >= 1 / 255)


def test_culling_behind_near_plane_and_transparent():
    surfels = Surfels(
        means=jnp.array([[0.0, 0.0, 0.0], [1.7, 0.0, 0.36], [0.1, 0.0, 0.0]]),
        quaternions=jnp.tile(jnp.array([1.0, 0, 0, 0]), (3, 1)),
        scales=jnp.full((3, 2), 0.01),
        opacities=jnp.array([0.5, 0.5, 0.001]),
        colors=jnp.ones((3, 3)),
    )
    cams = orbit_cameras(1, 32, 32, elevation_deg=12.0)
    valid = project_surfels(surfels, cams).valid[0]
    # Second surfel sits at the camera centre (depth 0 < near); third is below 1/255.
    np.testing.assert_array_equal(valid, [True, False, False])


@pytest.mark.parametrize("bad", ["shape", "nan"])
def test_render_check_inputs_names_argument(bad):
    from ga_jax.rendering import render_surfels

    s = random_surfels(jax.random.key(0), 10)
    cams = orbit_cameras(1, 16, 16)
    if bad == "shape":
        s = s.replace(scales=jnp.ones((10, 3)))
        match = "surfels.scales"
    else:
        cams = cams.replace(cam2world=cams.cam2world.at[0, 0, 0].set(jnp.nan))
        match = "cameras.cam2world"
    with pytest.raises(ValueError, match=match):
        render_surfels(s, cams, check_inputs=True)
