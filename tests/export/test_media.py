"""Turntables, GIF/MP4 and the preview grid (ga_jax.export.media): files read back with
imageio / Pillow, frames against the grid's views of the same cameras, the depth row against
the sphere's geometry."""

from __future__ import annotations

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from ga_jax.export.media import render_grid, turntable_frames, write_gif, write_mp4, write_png
from tests.export.shapes import fast_backend, sphere_surfels

SIZE, FRAMES = 64, 8

# Writing MP4 starts ffmpeg (fork + exec), which JAX warns about; exec follows at once.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def frames():
    return turntable_frames(sphere_surfels(), FRAMES, SIZE, backend=fast_backend())


def test_turntable_frames_are_the_grid_views_of_the_same_cameras(frames):
    assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
    grid = render_grid(sphere_surfels(), 4, SIZE, fast_backend(), ("rgb", "normal", "depth"))
    assert grid.shape == (3 * SIZE, 4 * SIZE, 3) and grid.dtype == np.uint8
    # Frames 0, 2, 4, 6 of 8 sit at the grid's 4 azimuths (both at 20 degrees elevation).
    for view in range(4):
        column = grid[:SIZE, view * SIZE : (view + 1) * SIZE]
        assert np.max(np.abs(column.astype(int) - frames[2 * view])) <= 1
    # Over white, and the object in the middle of every frame.
    assert np.all(frames[:, 0, 0] == 255) and np.all(frames[:, SIZE // 2, SIZE // 2] < 250)


def test_preview_depth_row_is_dark_near_and_white_behind():
    grid = render_grid(sphere_surfels(), 4, SIZE, fast_backend(), ("depth",))
    view = grid[:, :SIZE, 0].astype(float)  # grey: all channels equal
    np.testing.assert_array_equal(grid[..., 0], grid[..., 2])
    assert view[0, 0] == 255
    # The sphere's nearest point projects near the image centre: the darkest pixels are there.
    dark = np.argwhere(view <= view.min() + 2).mean(0)
    assert np.all(np.abs(dark - SIZE / 2) < SIZE / 8)
    disk = np.argwhere(view < 250)
    centre, radius = disk.mean(0), np.sqrt(len(disk) / np.pi)
    distance = np.linalg.norm(np.indices(view.shape).transpose(1, 2, 0) - centre, axis=-1)
    # Opaque inside the silhouette: grey from 0 (near) to at most 0.75.
    assert view.min() <= 1 and np.max(view[distance < 0.85 * radius]) <= 0.75 * 255 + 1
    # Farther towards the silhouette: the ring at 0.8 of the disk's radius is lighter.
    inner = view[distance < 0.3 * radius].mean()
    ring = view[(distance > 0.75 * radius) & (distance < 0.85 * radius)].mean()
    assert ring > inner + 15  # measured: 26 against 0.5


def test_gif_and_mp4_read_back(tmp_path, frames):
    gif = iio.imread(write_gif(tmp_path / "t.gif", frames, fps=10), index=None)
    assert gif.shape[:3] == (FRAMES, SIZE, SIZE)
    # GIF quantises to a palette of 256 colours.
    assert np.mean(np.abs(gif[..., :3].astype(int) - frames)) < 4
    with imageio.get_reader(write_mp4(tmp_path / "t.mp4", frames, fps=10), "FFMPEG") as reader:
        assert reader.get_meta_data()["size"] == (SIZE, SIZE)
        video = np.stack(list(reader.iter_data()))
    assert video.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.mean(np.abs(video.astype(int) - frames)) < 6  # lossy H.264


def test_png_reads_back(tmp_path, frames):
    path = write_png(tmp_path / "p.png", frames[0])
    np.testing.assert_array_equal(np.asarray(Image.open(path)), frames[0])


def test_errors(tmp_path, frames):
    with pytest.raises(ValueError, match=r"t.mp4: frames: expected even height and width"):
        write_mp4(tmp_path / "t.mp4", frames[:, :63], fps=10)
    with pytest.raises(ValueError, match=r"t.gif: frames: expected dtype uint8"):
        write_gif(tmp_path / "t.gif", frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"t.gif: frames: expected shape \[F >= 1, H, W, 3\]"):
        write_gif(tmp_path / "t.gif", frames[0])
    with pytest.raises(ValueError, match="render_grid: rows: expected some of"):
        render_grid(sphere_surfels(), rows=("rgb", "alpha"))
    s = sphere_surfels(10)
    with pytest.raises(ValueError, match="turntable_frames: surfels.opacities"):
        turntable_frames(s.replace(opacities=s.opacities + 2), 2, 8)
    assert not list(tmp_path.iterdir())
