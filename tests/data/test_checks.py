"""ga_jax.data.checks against independent computations, then on the real data (acceptance 1).

Real-data numbers (`python -m launch.check_data`, all 48 views of each object; docs/results.md):
cloud -> surface median 0.50-0.71 cm for four objects; the rubber duck 10017 has 3.6 cm: its
FPS cloud is a different, slightly smaller surface than the rendered one (a similarity ICP
fit does not bring it under 2.3 cm), a fact of the data that this test pins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ga_jax.data.checks import (
    THRESHOLDS,
    axis_distance_to_origin,
    check_dataset,
    check_object,
    failed_checks,
    nearest_distances,
    normal_agreement,
    solid_surface_points,
)
from ga_jax.data.gbuffer import GBufferChunk, read_chunk
from ga_jax.data.ply import read_ply_points
from ga_jax.rendering.cameras import look_at

DUCK_CLOUD_TO_SURFACE = 0.04  # metres, see the module docstring


def brute_force_nearest(queries, points):
    d2 = np.sum((queries[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    return np.sqrt(d2.min(axis=1))


def test_nearest_distances_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, points = rng.normal(size=(300, 3)), rng.normal(size=(500, 3))
    np.testing.assert_allclose(
        nearest_distances(queries, points), brute_force_nearest(queries, points), rtol=1e-12
    )


def camera_row(eye, target, fx=1.3889) -> np.ndarray:
    """A c.npy row for an OpenCV camera at eye looking at target (world z up)."""
    cam2world = np.asarray(look_at(np.asarray(eye, np.float32), np.asarray(target, np.float32)))
    k = np.array([[fx, 0, 0.5], [0, fx, 0.5], [0, 0, 1.0]])
    return np.concatenate([cam2world.reshape(16), k.reshape(9)]).astype(np.float32)


def test_axis_distance():
    at_origin = camera_row([1.2, -0.5, 0.9], [0, 0, 0])
    aside = camera_row([1.2, -0.5, 0.9], [0, 0, 0.1])  # looks at a point 0.1 above the origin
    d = axis_distance_to_origin(np.stack([at_origin, aside]))
    assert d[0] < 1e-6
    # Distance from the origin to the line eye -> (0, 0, 0.1), computed independently.
    eye, target = np.array([1.2, -0.5, 0.9]), np.array([0, 0, 0.1])
    direction = (target - eye) / np.linalg.norm(target - eye)
    expected = np.linalg.norm(np.cross(-eye, direction))
    np.testing.assert_allclose(d[1], expected, rtol=1e-5)


def plane_chunk(normal_world) -> GBufferChunk:
    """A camera looking straight down at the plane z = 0 from height 1: exact z-depth 1."""
    size = 16
    row = camera_row([0, 0, 1.0], [0, 0, 0])
    return GBufferChunk(
        rgb=np.ones((1, size, size, 3), np.float32),
        alpha=np.ones((1, size, size), np.float32),
        depth=np.ones((1, size, size), np.float32),
        normal=np.broadcast_to(np.asarray(normal_world, np.float32), (1, size, size, 3)).copy(),
        cameras=row[None],
        caption="a plane",
        instance_id="test/plane",
        views=np.arange(1),
        path=Path("plane"),
    )


def test_normal_agreement_on_a_plane():
    np.testing.assert_allclose(normal_agreement(plane_chunk([0, 0, 1])), 1.0, atol=1e-5)
    np.testing.assert_allclose(normal_agreement(plane_chunk([1, 0, 0])), 0.0, atol=1e-5)
    cos = normal_agreement(plane_chunk([0, 0.6, 0.8]))
    np.testing.assert_allclose(cos, 0.8, atol=1e-5)
    assert cos.shape == (14 * 14,)  # interior pixels only


def test_check_object_detects_a_shifted_cloud():
    """A cloud on the plane gives ~0 distance; the same cloud lifted 2 cm gives 2 cm."""
    chunk = plane_chunk([0, 0, 1])
    # The cloud: every other unprojected pixel centre (a 0.045 m grid on the plane, so the
    # nearest surface point of a lifted cloud point is the one right below it).
    cloud = solid_surface_points(chunk)[::2]
    np.testing.assert_allclose(cloud[:, 2], 0.0, atol=1e-6)
    on = check_object([chunk], cloud)
    lifted = check_object([chunk], cloud + [0, 0, 0.02])
    assert on.cloud_to_surface < 1e-6 and failed_checks(on) == []
    np.testing.assert_allclose(lifted.cloud_to_surface, 0.02, atol=1e-6)
    assert "cloud_to_surface" in failed_checks(lifted)


OBJECTS = ("10017", "10031", "10050", "10075", "10120")


@pytest.mark.parametrize("obj", OBJECTS)
def test_real_objects(shared_data, obj):
    """Depth lands on the FPS cloud, normals match the depth surface, cameras aim at 0."""
    root = shared_data / "objaverse_gbuffer" / "Animals" / "0" / obj
    chunks = [read_chunk(root / str(c)) for c in (1, 2, 3)]
    cloud = read_ply_points(shared_data / "objaverse_fps" / "Animals" / "0" / obj / "fps-4096.ply")
    report = check_object(chunks, cloud)
    print(report)
    assert report.num_views == 48
    assert report.normal_cos >= THRESHOLDS["normal_cos"]
    assert report.axis_distance <= THRESHOLDS["axis_distance"]
    assert report.forward_to_origin
    bound = DUCK_CLOUD_TO_SURFACE if obj == "10017" else THRESHOLDS["cloud_to_surface"]
    assert report.cloud_to_surface <= bound


def test_check_dataset_table(shared_data, tmp_path):
    """The CLI's table: one row per object and only the duck's cloud distance fails."""
    lines = []
    failures = check_dataset(
        shared_data / "objaverse_gbuffer", shared_data / "objaverse_fps", print_fn=lines.append
    )
    rows = [line for line in lines if line.startswith("| Animals/")]
    assert len(rows) == 5 and failures == 1
    assert "FAIL: cloud_to_surface" in next(r for r in rows if "10017" in r)
