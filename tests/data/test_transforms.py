"""Tests of ga_jax.data.transforms: the VAE sample, checked against independent computations.

Data: analytic spheres written in the G-buffer format (tests/data/fake_vae_data.py), stored
at 64 px and resized to 32 px (box average) or 24 px (PIL bilinear). Expected values come from
read_chunk on all views, a box average written here, a hand-built inverse intrinsic matrix
for the rays, and the sphere itself for the geometry.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.gbuffer import read_chunk, unproject_depth
from ga_jax.data.ply import read_ply_points
from ga_jax.data.source import VaeRecordSource
from ga_jax.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SampleOptions,
    VaeSampleTransform,
    pluecker_rays,
    resize_maps,
)
from tests.data.fake_vae_data import make_fake_dataset

STORED = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae_transforms")
    gbuffer, fps, truth = make_fake_dataset(root, size=STORED)
    return VaeRecordSource(gbuffer, fps), truth


def box(maps: np.ndarray, size: int) -> np.ndarray:
    """Independent area average: explicit loop over output pixels."""
    f = maps.shape[1] // size
    out = np.zeros((maps.shape[0], size, size) + maps.shape[3:], np.float64)
    for i in range(size):
        for j in range(size):
            out[:, i, j] = maps[:, i * f:(i + 1) * f, j * f:(j + 1) * f].mean(axis=(1, 2))
    return out


def draws(seed: int, views_per_half: int = 8, k: int = 4):
    """Replay the transform's documented draw order: permutation, then background."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(views_per_half)[:k]
    background = rng.uniform(0.0, 1.0, 3)
    return rng, perm, background


def sample(source, index, seed=0, **options):
    options = {"encoder_size": 32, "render_size": 32, "fps_points": 64, **options}
    transform = VaeSampleTransform(SampleOptions(**options))
    return transform.random_map(source[index], np.random.default_rng(seed))


@pytest.mark.parametrize("index", [0, 3])
def test_supervision_views_and_targets(data, index):
    source, _ = data
    record = source[index]
    out = sample(source, index, seed=11)
    _, perm, background = draws(11)
    own, other = record.half * 8, (1 - record.half) * 8
    expected_views = np.concatenate([own + perm, other + perm])
    np.testing.assert_array_equal(out["target_views"], expected_views)
    np.testing.assert_array_equal(out["encoder_views"], own + np.arange(8))
    np.testing.assert_allclose(out["background"], background, rtol=1e-6)

    full = read_chunk(record.chunk_path)  # all 16 views, read independently
    rgb, alpha = full.rgb[expected_views], full.alpha[expected_views]
    composite = rgb * alpha[..., None] + background * (1 - alpha[..., None])
    np.testing.assert_allclose(out["target_rgb"], box(composite, 32), atol=1e-5)
    np.testing.assert_allclose(out["target_alpha"], box(alpha, 32), atol=1e-6)
    np.testing.assert_allclose(out["target_depth"], box(full.depth[expected_views], 32), atol=1e-5)
    fg_normal = np.where(alpha[..., None] >= 0.5, full.normal[expected_views], 0.0)
    small_fg = box(alpha, 32) >= 0.5
    np.testing.assert_allclose(
        out["target_normal"], box(fg_normal, 32) * small_fg[..., None], atol=1e-5
    )
    np.testing.assert_array_equal(out["target_cameras"], full.cameras[expected_views])
    np.testing.assert_array_equal(out["encoder_cameras"], full.cameras[own:own + 8])
    assert out["record_index"] == index and out["half"] == record.half
    # The background really shows: a fully transparent target pixel is the background colour.
    clear = out["target_alpha"] < 1e-3
    assert clear.any()
    np.testing.assert_allclose(out["target_rgb"][clear], np.broadcast_to(
        background, out["target_rgb"][clear].shape), atol=2e-3)


def test_shapes_and_dtypes(data):
    source, _ = data
    out = sample(source, 1, encoder_size=16, render_size=32, fps_points=48,
                 views_per_half=4, num_supervise_per_half=2)
    shapes = {
        "encoder_input": (4, 16, 16, 15), "encoder_cameras": (4, 25), "encoder_views": (4,),
        "target_rgb": (4, 32, 32, 3), "target_alpha": (4, 32, 32), "target_depth": (4, 32, 32),
        "target_normal": (4, 32, 32, 3), "target_cameras": (4, 25), "target_views": (4,),
        "background": (3,), "fps_xyz": (48, 3), "record_index": (), "half": (),
    }
    assert {k: v.shape for k, v in out.items()} == shapes
    for key, value in out.items():
        expected = np.int32 if key in ("encoder_views", "target_views", "record_index",
                                       "half") else np.float32
        assert value.dtype == expected, key
    # views_per_half 4: half B is views 4..7 (only the first 2 * views_per_half are used).
    np.testing.assert_array_equal(out["encoder_views"], [4, 5, 6, 7])


def test_encoder_rgb_and_normal_channels(data):
    source, _ = data
    record = source[2]
    out = sample(source, 2)["encoder_input"]
    full = read_chunk(record.chunk_path, views=range(8))
    # ImageNet normalisation inverts back to the (box-averaged) stored image.
    rgb = out[..., 0:3] * IMAGENET_STD + IMAGENET_MEAN
    np.testing.assert_allclose(rgb, box(full.rgb, 32), atol=1e-5)
    small_alpha = box(full.alpha, 32)
    fg_normal = np.where(full.alpha[..., None] >= 0.5, full.normal, 0.0)
    np.testing.assert_allclose(
        out[..., 3:6], box(fg_normal, 32) * (small_alpha >= 0.5)[..., None], atol=1e-5
    )
    assert np.all(out[..., 3:6][small_alpha < 0.5] == 0)


def hand_ray(row: np.ndarray, size: int, i: int, j: int):
    """Camera centre and unit world direction through pixel (i, j), via an explicit K^-1."""
    cam2world = row[:16].reshape(4, 4).astype(np.float64)
    k = row[16:].reshape(3, 3).astype(np.float64)
    k_px = np.array([[k[0, 0] * size, k[0, 1] * size, k[0, 2] * size],
                     [k[1, 0] * size, k[1, 1] * size, k[1, 2] * size],
                     [0.0, 0.0, 1.0]])
    d = cam2world[:3, :3] @ np.linalg.inv(k_px) @ np.array([j + 0.5, i + 0.5, 1.0])
    return cam2world[:3, 3], d / np.linalg.norm(d)


@pytest.mark.parametrize("size", [32, 24])
def test_pluecker_rays_match_hand_computation(data, size):
    source, _ = data
    out = sample(source, 0, encoder_size=size)["encoder_input"]
    rows = read_chunk(source[0].chunk_path, views=range(8)).cameras
    for v, i, j in [(0, 0, 0), (3, 5, size - 1), (7, size // 2, size // 3), (5, size - 1, 2)]:
        o, d = hand_ray(rows[v], size, i, j)
        np.testing.assert_allclose(out[v, i, j, 9:12], d, atol=1e-6)
        np.testing.assert_allclose(out[v, i, j, 6:9], np.cross(o, d), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[..., 9:12], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(pluecker_rays(rows, size), out[..., 6:12], atol=0)


def test_xyz_map_agrees_with_unproject_depth_and_the_sphere(data):
    source, truth = data
    record = source[1]
    out = sample(source, 1, xyz_clip=10.0)["encoder_input"]
    full = read_chunk(record.chunk_path, views=range(8, 16))
    depth, alpha = box(full.depth, 32), box(full.alpha, 32)
    fg = (alpha >= 0.5) & (depth > 0)
    expected = np.where(fg[..., None], unproject_depth(depth, full.cameras), 0.0)
    np.testing.assert_allclose(out[..., 12:15], expected, atol=1e-5)
    # Independent of unproject_depth: at the stored resolution (no averaging) every
    # foreground pixel lands on the sphere.
    native = sample(source, 1, encoder_size=STORED, xyz_clip=10.0)["encoder_input"]
    hit = full.alpha >= 0.5
    sphere = truth[record.chunk]
    radial = np.linalg.norm(native[..., 12:15][hit] - sphere["centre"], axis=-1)
    np.testing.assert_allclose(radial, sphere["radius"], atol=1e-5)
    # Each point lies on its pixel's ray.
    rays = out[..., 6:12]
    centres = full.cameras[:, :16].reshape(-1, 4, 4)[:, :3, 3]
    offset = out[..., 12:15] - centres[:, None, None]
    along = np.cross(offset, rays[..., 3:])[fg]
    assert np.abs(along).max() < 1e-4
    # With the default clip the map stays in the object box.
    clipped = sample(source, 1)["encoder_input"][..., 12:15]
    assert np.abs(clipped).max() <= 0.45
    np.testing.assert_allclose(clipped, np.clip(expected, -0.45, 0.45), atol=1e-5)


def test_legacy_ray_depth_moves_points_by_cos_theta(data):
    source, truth = data
    record = source[0]
    correct = sample(source, 0, xyz_clip=10.0)["encoder_input"]
    legacy = sample(source, 0, xyz_clip=10.0, legacy_ray_depth=True)["encoder_input"]
    np.testing.assert_array_equal(correct[..., :12], legacy[..., :12])
    rows = read_chunk(record.chunk_path, views=range(8)).cameras
    cam2world = rows[:, :16].reshape(-1, 4, 4)
    origins = cam2world[:, None, None, :3, 3]
    forward = cam2world[:, None, None, :3, 2]  # optical axis (camera +z) in the world
    fg = np.any(correct[..., 12:15] != 0, axis=-1)
    d = correct[..., 9:12]
    cos = np.sum(d * forward, axis=-1)
    dist_correct = np.linalg.norm(correct[..., 12:15] - origins, axis=-1)
    dist_legacy = np.linalg.norm(legacy[..., 12:15] - origins, axis=-1)
    # The z-depth point is 1/cos(theta) further along the ray than the legacy point.
    np.testing.assert_allclose(dist_correct[fg], dist_legacy[fg] / cos[fg], rtol=1e-5)
    assert cos[fg].min() < 0.99  # the test sees off-axis pixels
    # Negative control: at the stored resolution legacy points miss the sphere.
    native = sample(source, 0, encoder_size=STORED, xyz_clip=10.0, legacy_ray_depth=True)
    hit = read_chunk(record.chunk_path, views=range(8)).alpha >= 0.5
    sphere = truth[record.chunk]
    miss = np.abs(np.linalg.norm(native["encoder_input"][..., 12:15][hit] - sphere["centre"],
                                 axis=-1) - sphere["radius"])
    assert miss.max() > 0.01


def test_fps_points_and_jitter(data):
    source, _ = data
    record = source[4]
    instance = read_chunk(record.chunk_path, views=[0]).instance_id
    points = read_ply_points(f"{record.fps_root}/{instance}/fps-4096.ply")
    plain = sample(source, 4, seed=5, jitter_prob=0.0)["fps_xyz"]
    rng, _, _ = draws(5)
    start = int(rng.integers(points.shape[0]))
    np.testing.assert_array_equal(plain, points[farthest_point_sample(points, 64, start)])
    jittered = sample(source, 4, seed=5, jitter_prob=1.0, jitter_max=0.01)["fps_xyz"]
    noise = jittered - plain
    assert 0 < np.abs(noise).max() < 0.05 and noise.std() < 0.012  # sigma <= 0.01
    # Different seeds start FPS elsewhere.
    other = sample(source, 4, seed=6, jitter_prob=0.0)["fps_xyz"]
    assert not np.array_equal(other, plain)


def test_resize_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(resize_maps(maps, 4), box(maps, 4), atol=1e-6)
    np.testing.assert_array_equal(resize_maps(maps, 12), maps)
    # Non-integer factor (PIL bilinear): a linear ramp stays (nearly) linear and centred on
    # the output pixel centres away from the borders; measured error 0.027 px (PIL's
    # discrete triangle weights), so 0.05 px.
    ramp = np.broadcast_to(np.arange(64, dtype=np.float32) + 0.5, (1, 64, 64)).copy()
    small = resize_maps(ramp, 24)
    centres = (np.arange(24) + 0.5) * 64 / 24
    np.testing.assert_allclose(small[0, 10, 3:-3], centres[3:-3], atol=0.05)
    assert resize_maps(np.zeros((1, 64, 64, 2), np.float32), 24).shape == (1, 24, 24, 2)
    with pytest.raises(ValueError, match="square"):
        resize_maps(np.zeros((1, 4, 6)), 2)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("on_error", "ignore", "on_error"),
        ("num_supervise_per_half", 9, "num_supervise_per_half"),
        ("views_per_half", 0, "views_per_half"),
        ("encoder_size", 0, "encoder_size"),
        ("jitter_prob", 1.5, "jitter_prob"),
        ("jitter_max", -0.1, "jitter_max"),
        ("fps_points", 2.5, "fps_points"),
        ("cache_chunks", -1, "cache_chunks"),
    ],
)
def test_bad_options_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        SampleOptions(**{field: value})


def test_chunk_cache_gives_the_same_samples_and_stays_bounded(data, monkeypatch):
    """cache_chunks=N: samples identical to uncached reads; each chunk decoded once while it
    stays among the N most recent; older chunks are evicted."""
    import ga_jax.data.transforms as transforms

    source, _ = data
    reads = []
    original = transforms.read_record
    monkeypatch.setattr(
        transforms, "read_record", lambda r, *a, **k: reads.append(r.chunk) or original(r, *a, **k)
    )
    options = dict(encoder_size=32, render_size=32, fps_points=64)
    cached = VaeSampleTransform(SampleOptions(cache_chunks=2, **options))
    # Records 0 and 1 are the two halves of chunk 0; 2, 3 of chunk 1; 4 of chunk 2.
    order = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (3, 6))
    got = [cached.random_map(source[i], np.random.default_rng(seed)) for i, seed in order]
    chunk = [source[i].chunk for i in (0, 2, 4)]
    # Records 1 and the second 0 hit the cache; that second 0 makes chunk 0 the most recent,
    # so chunk 2 evicts chunk 1 (least recently used), which record 3 must then read again.
    assert reads == [chunk[0], chunk[1], chunk[2], chunk[1]]
    assert list(cached._cache) == [source[i].chunk_path for i in (4, 2)]
    # Pickled for a worker process: same options, an empty cache of its own.
    clone = pickle.loads(pickle.dumps(cached))
    assert clone.options == cached.options and not clone._cache
    for out, (index, seed) in zip(got, order, strict=True):
        want = sample(source, index, seed=seed, **options)
        for key in want:
            np.testing.assert_array_equal(out[key], want[key], err_msg=key)
