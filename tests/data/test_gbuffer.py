"""Tests of ga_jax.data.gbuffer: the G-buffer chunk reader and writer and unproject_depth
(the PLY reader: test_ply.py).

The real-data tests read ../shared/data (next to the repository) and skip when it is absent.
Expected values come from independent computations: explicit matrix inverses for the
unprojection, the FPS point cloud (a separate file) for the depth geometry, depth-map
gradients for the normals, and hand-decoded colours for the synthetic chunk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ga_jax.data.checks import nearest_distances
from ga_jax.data.gbuffer import (
    CHUNK_FILES,
    GBufferError,
    read_chunk,
    unproject_depth,
    write_chunk,
)
from ga_jax.data.ply import read_ply_points

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GBUFFER = DATA / "objaverse_gbuffer"
FPS = DATA / "objaverse_fps"


def chunk_dir(obj: str, chunk: int = 1) -> Path:
    path = GBUFFER / "Animals" / "0" / obj / str(chunk)
    if not path.is_dir():
        pytest.skip(f"real G-buffer data not found at {path} (expected ../shared/data)")
    return path


def fps_path(obj: str) -> Path:
    path = FPS / "Animals" / "0" / obj / "fps-4096.ply"
    if not path.is_file():
        pytest.skip(f"real FPS point cloud not found at {path} (expected ../shared/data)")
    return path


@pytest.fixture(scope="module")
def deer():
    """Chunk 1 of object 10120 (a low-poly deer), all 16 views."""
    return read_chunk(chunk_dir("10120"))


# --------------------------------------------------------------------------------------------
# Real data


def test_read_chunk_shapes_and_values(deer):
    v, h, w = 16, 512, 512
    assert deer.rgb.shape == (v, h, w, 3) and deer.rgb.dtype == np.float32
    assert deer.alpha.shape == (v, h, w) and deer.alpha.dtype == np.float32
    assert deer.depth.shape == (v, h, w) and deer.depth.dtype == np.float32
    assert deer.normal.shape == (v, h, w, 3) and deer.normal.dtype == np.float32
    assert deer.cameras.shape == (v, 25) and deer.cameras.dtype == np.float32
    assert deer.num_views == v and deer.height == h and deer.width == w
    np.testing.assert_array_equal(deer.views, np.arange(v))
    assert deer.instance_id == "Animals/0/10120"
    assert isinstance(deer.caption, str) and deer.caption
    for name in ("rgb", "alpha"):
        array = getattr(deer, name)
        assert array.min() >= 0.0 and array.max() <= 1.0, name

    fg = deer.alpha > 0.5
    # The silhouette of the depth map and of alpha agree (two files, one object).
    covered = deer.depth > 0
    iou = np.sum(fg & covered) / np.sum(fg | covered)
    assert iou > 0.98, iou
    # White background; near-unit normals on the object; background normal ~ (0, -1, 0).
    assert deer.rgb[deer.alpha < 0.01].mean() > 0.95
    solid = deer.alpha > 0.99
    norms = np.linalg.norm(deer.normal[solid], axis=-1)
    assert abs(np.median(norms) - 1.0) < 0.02, np.median(norms)
    bg_normal = np.median(deer.normal[deer.alpha < 0.01], axis=0)
    np.testing.assert_allclose(bg_normal, [0.0, -1.0, 0.0], atol=0.01)


def test_read_chunk_view_selection(deer):
    sub = read_chunk(deer.path, views=[5, 0, 5])
    np.testing.assert_array_equal(sub.views, [5, 0, 5])
    for name in ("rgb", "alpha", "depth", "normal", "cameras"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(deer, name)[[5, 0, 5]], name)
    # A view's tile is columns 512 v .. 512 v + 511 of the strip.
    strip = np.asarray(Image.open(deer.path / "alpha.jpg"), np.float32) / 255.0
    np.testing.assert_array_equal(sub.alpha[0], strip[:, 5 * 512 : 6 * 512])


def test_depth_unprojection_negative_control(deer):
    """Wrong conventions (depth as ray length; image y up) miss the FPS cloud by far more."""
    fps = read_ply_points(fps_path("10120"))
    views = [1, 6, 10]
    depth, cameras, alpha = deer.depth[views], deer.cameras[views], deer.alpha[views]
    solid = (alpha > 0.99) & (depth > 0)
    rng = np.random.default_rng(0)

    def median_distance(world, mask=solid):
        points = world[mask]
        sample = points[rng.choice(len(points), size=2000, replace=False)]
        return float(np.median(nearest_distances(sample, fps)))

    right = median_distance(unproject_depth(depth, cameras))
    # Depth read as ray length: z = length / |(x', y', 1)| for the pixel's normalised ray.
    h, w = depth.shape[-2:]
    x = (np.arange(w) + 0.5 - 0.5 * w) / (1.3889 * w)
    y = (np.arange(h) + 0.5 - 0.5 * h) / (1.3889 * h)
    ray_len = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    as_ray = median_distance(unproject_depth(depth / ray_len, cameras))
    # Image y up (OpenGL-style rows): flip the maps (and their mask) upside down.
    flipped = median_distance(unproject_depth(depth[:, ::-1], cameras), solid[:, ::-1])
    print(f"10120 negative control: right {right:.4f} ray-length {as_ray:.4f} y-up {flipped:.4f}")
    assert as_ray > right + 0.004 and flipped > 5 * right


def test_cameras_look_at_origin():
    """Every camera of every chunk sits 1.4-2.1 from the origin with +z pointing at it."""
    paths = sorted(GBUFFER.glob("Animals/0/*/*/c.npy")) if GBUFFER.is_dir() else []
    if not paths:
        pytest.skip(f"real G-buffer data not found at {GBUFFER} (expected ../shared/data)")
    read = read_chunk(paths[0].parent, views=[0]).cameras[0]
    np.testing.assert_array_equal(read, np.load(paths[0])[0])
    for path in paths:
        rows = np.load(path).astype(np.float64)
        cam2world = rows[:, :16].reshape(-1, 4, 4)
        rot, centre = cam2world[:, :3, :3], cam2world[:, :3, 3]
        np.testing.assert_allclose(cam2world[:, 3], np.tile([0, 0, 0, 1.0], (len(rows), 1)))
        np.testing.assert_allclose(
            rot @ rot.transpose(0, 2, 1), np.eye(3)[None].repeat(len(rows), 0), atol=1e-4
        )
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-4)
        radius = np.linalg.norm(centre, axis=1)
        assert np.all((radius > 1.4) & (radius < 2.1)), (path, radius)
        forward = rot[:, :, 2]
        to_origin = -centre / radius[:, None]
        angle = np.degrees(np.arccos(np.clip(np.sum(forward * to_origin, axis=1), -1, 1)))
        assert angle.max() < 2.0, (path, angle.max())
        k = rows[:, 16:25].reshape(-1, 3, 3)
        np.testing.assert_allclose(k[:, 0, 0], 1.3889, atol=1e-3)
        np.testing.assert_allclose(k[:, 1, 1], 1.3889, atol=1e-3)
        np.testing.assert_allclose(k[:, :2, 2], 0.5, atol=1e-6)
        # View 0 is the top view: the camera sits above the object.
        assert centre[0, 2] > 1.4


def test_normals_face_the_camera_and_match_depth(deer):
    """Decoded world normals face their camera and agree with normals of the depth surface."""
    world = unproject_depth(deer.depth, deer.cameras)
    centres = deer.cameras[:, [3, 7, 11]]
    for v in range(deer.num_views):
        solid = (deer.alpha[v] > 0.99) & (deer.depth[v] > 0)
        n = deer.normal[v]
        facing = np.sum(n * (world[v] - centres[v]), axis=-1) < 0
        assert facing[solid].mean() > 0.99, v
        # Normal of the unprojected depth surface from central differences.
        du = world[v][1:-1, 2:] - world[v][1:-1, :-2]
        dv = world[v][2:, 1:-1] - world[v][:-2, 1:-1]
        g = np.cross(du, dv)
        g /= np.linalg.norm(g, axis=-1, keepdims=True) + 1e-12
        inner = solid[1:-1, 1:-1] & solid[1:-1, 2:] & solid[1:-1, :-2]
        inner &= solid[2:, 1:-1] & solid[:-2, 1:-1]
        cos = np.abs(np.sum(g * n[1:-1, 1:-1], axis=-1))[inner]
        assert np.median(cos) > 0.95, (v, np.median(cos))


def test_unproject_depth_matches_explicit_inverse():
    """Non-square image, off-centre principal point, fx != fy, random pose: the result equals
    cam2world @ (z * K_px^-1 (j + 0.5, i + 0.5, 1)) computed with a matrix inverse."""
    rng = np.random.default_rng(1)
    h, w = 6, 10
    rows = []
    for _ in range(4):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = q, rng.normal(size=3)
        k = np.array([[1.2, 0, 0.45], [0, 1.5, 0.55], [0, 0, 1 / 512]])
        rows.append(np.concatenate([m.ravel(), k.ravel()]))
    rows = np.asarray(rows, np.float32).reshape(2, 2, 25)
    depth = rng.uniform(0.5, 2.0, size=(2, 2, h, w)).astype(np.float32)
    world = unproject_depth(depth, rows)
    assert world.shape == (2, 2, h, w, 3) and world.dtype == np.float32
    for a in range(2):
        for b in range(2):
            m = rows[a, b, :16].reshape(4, 4).astype(np.float64)
            k_px = rows[a, b, 16:].reshape(3, 3).astype(np.float64) * np.array([[w], [h], [1]])
            k_px[2] = [0, 0, 1]
            k_inv = np.linalg.inv(k_px)
            for i in range(h):
                for j in range(w):
                    cam = depth[a, b, i, j] * (k_inv @ [j + 0.5, i + 0.5, 1.0])
                    expected = m[:3, :3] @ cam + m[:3, 3]
                    np.testing.assert_allclose(world[a, b, i, j], expected, atol=1e-5)
    with pytest.raises(ValueError, match="cameras"):
        unproject_depth(depth, rows[0])


def write_synthetic_chunk(path: Path, size: int = 8) -> dict:
    """A 2-view chunk with flat per-view colours; returns the values it wrote."""
    path.mkdir(parents=True, exist_ok=True)
    colours = np.array([[200, 30, 60], [10, 220, 120]], np.uint8)
    rgb = np.concatenate([np.full((size, size, 3), c, np.uint8) for c in colours], axis=1)
    Image.fromarray(rgb).save(path / "raw_img.jpg", quality=100, subsampling=0)
    alpha = np.zeros((size, 2 * size), np.uint8)
    alpha[:, :size] = 255
    Image.fromarray(alpha).save(path / "alpha.jpg", quality=100)
    normal_colours = np.array([[255, 128, 0], [0, 255, 128]], np.uint8)
    normal = np.concatenate([np.full((size, size, 3), c, np.uint8) for c in normal_colours], 1)
    Image.fromarray(normal).save(path / "normal.png")
    depth = np.stack([np.full((size, size), 1.5, np.float32), np.zeros((size, size), np.float32)])
    np.savez_compressed(path / "depth.npz", depth=depth)
    cameras = np.zeros((2, 25), np.float32)
    cameras[:, :16] = np.eye(4, dtype=np.float32).ravel()
    cameras[:, 16:] = [1.3889, 0, 0.5, 0, 1.3889, 0.5, 0, 0, 1 / 512]
    cameras[1, 11] = -1.5  # view 1 sits at z = -1.5
    np.save(path / "c.npy", cameras)
    (path / "caption.txt").write_text("a small red cube\n")
    (path / "ins.txt").write_text("Synthetic/0/1\n")
    return {"colours": colours, "depth": depth, "cameras": cameras}


def test_synthetic_chunk_round_trip(tmp_path):
    written = write_synthetic_chunk(tmp_path / "chunk")
    chunk = read_chunk(tmp_path / "chunk")
    assert chunk.rgb.shape == (2, 8, 8, 3) and chunk.caption == "a small red cube"
    assert chunk.instance_id == "Synthetic/0/1"
    for v in range(2):
        np.testing.assert_allclose(
            chunk.rgb[v], np.broadcast_to(written["colours"][v] / 255.0, (8, 8, 3)), atol=3 / 255
        )
    np.testing.assert_allclose(chunk.alpha[0], 1.0, atol=2 / 255)
    np.testing.assert_allclose(chunk.alpha[1], 0.0, atol=2 / 255)
    # (255, 128, 0) -> n_raw (1, 1/255, -1) -> world (-1, 1, 1/255);
    # (0, 255, 128) -> n_raw (-1, 1, 1/255) -> world (1, -1/255, 1).
    np.testing.assert_allclose(
        chunk.normal[0], np.broadcast_to([-1, 1, 1 / 255], (8, 8, 3)), atol=1e-6
    )
    np.testing.assert_allclose(
        chunk.normal[1], np.broadcast_to([1, -1 / 255, 1], (8, 8, 3)), atol=1e-6
    )
    np.testing.assert_array_equal(chunk.depth, written["depth"])
    np.testing.assert_array_equal(chunk.cameras, written["cameras"])
    one = read_chunk(tmp_path / "chunk", views=[1])
    np.testing.assert_array_equal(one.cameras, written["cameras"][[1]])


def test_write_chunk_round_trip(tmp_path):
    """write_chunk -> read_chunk returns every field: exactly for depth, cameras and texts,
    within the 8-bit quantisation for the images.

    Bounds (levels of 1/255):
    - alpha: round(255 a) is off by <= 0.5. Each view is 2 x 2 constant 8x8 blocks, the JPEG
      blocks (views are 16 px wide and tile at multiples of 8): a constant block has only a
      DC coefficient, 8 (v - 128) for the integer level v, which quality 95's DC quantiser
      (2) divides exactly, so the grey JPEG decodes it exactly: <= 0.5.
    - rgb: the same, plus the 8-bit YCbCr conversion: Y, Cb, Cr each round by <= 0.5, and back
      in RGB that is <= 0.5 + 0.886 (B = Y + 1.772 (Cb - 128), the largest coefficient) < 1.5,
      an integer, so <= 1: in all <= 1.5.
    - normals (PNG, lossless): m = (-n.x, n.z, -n.y) is stored as round(127.5 (m + 1)) and read
      as 2 rgb / 255 - 1, off by <= 0.5 / 127.5 = 1/255 per component (no clipping for unit
      vectors); the reader's axis permutation and signs keep that per world component.
    Plus float32 rounding of the decoded values (~1e-7).
    """
    rng = np.random.default_rng(7)
    v, h = 3, 16
    # Constant 8x8 blocks (distinct per block and view) at values off the 8-bit grid.
    block_rgb = rng.uniform(0.0, 1.0, (v, 2, 2, 3))
    rgb = np.repeat(np.repeat(block_rgb, 8, axis=1), 8, axis=2).astype(np.float32)
    block_alpha = rng.uniform(0.0, 1.0, (v, 2, 2))
    block_alpha[0, 0, 0], block_alpha[1, 1, 1] = 0.0, 1.0
    alpha = np.repeat(np.repeat(block_alpha, 8, axis=1), 8, axis=2).astype(np.float32)
    normal = rng.normal(size=(v, h, h, 3))
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[alpha == 0] = (0.0, -1.0, 0.0)  # the background's normal
    normal = normal.astype(np.float32)
    depth = np.where(alpha > 0, rng.uniform(1.0, 2.5, (v, h, h)), 0.0).astype(np.float32)
    cameras = rng.normal(size=(v, 25)).astype(np.float32)
    caption, instance_id = "an orange cone on a blue box", "composition/0/17"
    path = tmp_path / "a" / "chunk"  # parents are created
    write_chunk(
        path,
        rgb=rgb,
        alpha=alpha,
        depth=depth,
        normal=normal,
        cameras=cameras,
        caption=caption,
        instance_id=instance_id,
    )
    assert sorted(p.name for p in path.iterdir()) == sorted(CHUNK_FILES)
    chunk = read_chunk(path)
    assert chunk.rgb.shape == (v, h, h, 3) and chunk.num_views == v
    np.testing.assert_array_equal(chunk.depth, depth)
    np.testing.assert_array_equal(chunk.cameras, cameras)
    assert chunk.caption == caption and chunk.instance_id == instance_id
    # As in the data: no trailing newline.
    assert (path / "caption.txt").read_bytes() == caption.encode()
    assert (path / "ins.txt").read_bytes() == instance_id.encode()
    eps = 1e-6
    assert np.abs(chunk.alpha - alpha).max() <= 0.5 / 255 + eps
    assert np.abs(chunk.rgb - rgb).max() <= 1.5 / 255 + eps
    assert np.abs(chunk.normal - normal).max() <= 1 / 255 + eps
    # Each view lands in its own tile: reading a subset selects the same views.
    two = read_chunk(path, views=[2, 0])
    np.testing.assert_array_equal(two.depth, depth[[2, 0]])
    np.testing.assert_array_equal(two.rgb, chunk.rgb[[2, 0]])


def test_write_chunk_rejects_what_the_reader_rejects(tmp_path):
    v, h = 2, 8
    good = dict(
        rgb=np.ones((v, h, h, 3)),
        alpha=np.ones((v, h, h)),
        depth=np.ones((v, h, h)),
        normal=np.zeros((v, h, h, 3)),
        cameras=np.zeros((v, 25)),
        caption="a cube",
        instance_id="cube/0/0",
    )
    bad = [
        ("rgb", np.ones((v, h, h + 1, 3)), "rgb"),
        ("cameras", np.zeros((v + 1, 25)), "cameras"),
        ("depth", np.ones((v, h, h + 8)), "square"),
        ("depth", -np.ones((v, h, h)), "depth >= 0"),
        ("cameras", np.full((v, 25), np.nan), "finite cameras"),
    ]
    for name, value, fragment in bad:
        with pytest.raises(ValueError, match=fragment) as info:
            write_chunk(tmp_path / name, **{**good, name: value})
        assert str(tmp_path / name) in str(info.value)
        assert not (tmp_path / name).exists()


# --------------------------------------------------------------------------------------------
# Bad chunks: a linked copy of a real chunk with one file replaced or removed


@pytest.fixture
def chunk_copy(tmp_path):
    """tmp_path/chunk holding symlinks to the files of real chunk 10120/1 (replace to corrupt)."""
    src = chunk_dir("10120")
    dst = tmp_path / "chunk"
    dst.mkdir()
    for file in src.iterdir():
        (dst / file.name).symlink_to(file.resolve())
    return dst


def replace(path: Path, data: bytes) -> Path:
    path.unlink()
    path.write_bytes(data)
    return path


def save_image(path: Path, array: np.ndarray) -> Path:
    path.unlink()
    Image.fromarray(array).save(path)
    return path


def expect_error(chunk: Path, file: Path, *fragments: str) -> str:
    with pytest.raises(GBufferError) as info:
        read_chunk(chunk)
    message = str(info.value)
    assert str(file) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("name", CHUNK_FILES)
def test_missing_file(chunk_copy, name):
    (chunk_copy / name).unlink()
    expect_error(chunk_copy, chunk_copy / name, "missing")


def test_not_a_directory(tmp_path):
    with pytest.raises(GBufferError, match="chunk directory") as info:
        read_chunk(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_undecodable_image(chunk_copy):
    file = replace(chunk_copy / "raw_img.jpg", b"this is not a jpeg at all")
    expect_error(chunk_copy, file, "cannot read the image")


@pytest.mark.parametrize("name", ["raw_img.jpg", "alpha.jpg", "normal.png"])
def test_truncated_image(chunk_copy, name):
    data = (chunk_copy / name).read_bytes()
    file = replace(chunk_copy / name, data[: len(data) // 2])
    expect_error(chunk_copy, file, "cannot decode")


def test_tile_width_not_multiple_of_height(chunk_copy):
    file = save_image(chunk_copy / "raw_img.jpg", np.zeros((40, 100, 3), np.uint8))
    expect_error(chunk_copy, file, "multiple", "width 100", "height 40")


@pytest.mark.parametrize("name", ["alpha.jpg", "normal.png"])
def test_image_size_disagrees(chunk_copy, name):
    channels = (64, 256) if name == "alpha.jpg" else (64, 256, 3)
    file = save_image(chunk_copy / name, np.zeros(channels, np.uint8))
    expect_error(chunk_copy, file, "8192x512", "256x64")


def test_depth_shape_disagrees(chunk_copy):
    file = chunk_copy / "depth.npz"
    file.unlink()
    np.savez(file, depth=np.zeros((16, 256, 256), np.float32))
    expect_error(chunk_copy, file, "(16, 512, 512)", "(16, 256, 256)")
    file.unlink()
    np.savez(file, other=np.zeros((16, 512, 512), np.float32))
    expect_error(chunk_copy, file, "'depth'", "other")
    file.unlink()
    depth = np.zeros((16, 512, 512), np.float32)
    depth[2, 3, 4] = np.nan
    np.savez(file, depth=depth)
    expect_error(chunk_copy, file, "NaN")


def test_cameras_shape_disagrees(chunk_copy):
    file = chunk_copy / "c.npy"
    rows = np.load(file)
    file.unlink()
    np.save(file, rows[:15])
    expect_error(chunk_copy, file, "(16, 25)", "(15, 25)")


def test_cameras_not_finite(chunk_copy):
    file = chunk_copy / "c.npy"
    rows = np.load(file)
    rows[3, 5] = np.nan
    rows[7, 20] = np.inf
    file.unlink()
    np.save(file, rows)
    expect_error(chunk_copy, file, "NaN/inf", "[3, 7]")


def test_corrupt_arrays(chunk_copy):
    file = replace(chunk_copy / "depth.npz", b"PK\x03\x04 truncated zip")
    expect_error(chunk_copy, file, "cannot read")
    shutil.copyfile(chunk_dir("10120") / "depth.npz", file.with_suffix(".tmp"))
    file.unlink()
    file.with_suffix(".tmp").rename(file)
    file = replace(chunk_copy / "c.npy", b"\x93NUMPY garbage")
    expect_error(chunk_copy, file, "cannot read")


def test_views_out_of_range(chunk_copy):
    with pytest.raises(GBufferError, match=r"\[0, 16\)") as info:
        read_chunk(chunk_copy, views=[0, 16])
    assert str(chunk_copy) in str(info.value)
