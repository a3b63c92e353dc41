"""The export entry point (ga_jax.export.export): every format's file, read back by its own
tool, and the errors it raises before writing anything."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh
from PIL import Image

from ga_jax.data.ply import read_ply_vertices
from ga_jax.export import FORMATS, export
from ga_jax.export.ply import read_surfel_ply
from tests.export.shapes import SPHERE_CENTRE, fast_backend, sphere_surfels

# Writing MP4 starts ffmpeg (fork + exec), which JAX warns about; exec follows at once.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def test_every_format(tmp_path):
    surfels = sphere_surfels()
    xyz = np.random.default_rng(0).normal(size=(100, 3)) * 0.1 + SPHERE_CENTRE
    timings = {}
    paths = export(
        surfels,
        xyz,
        tmp_path / "out",
        formats=list(FORMATS),
        name="sphere",
        size=64,
        frames=4,
        mesh_resolution=48,
        backend=fast_backend(),
        timings=timings,
    )
    assert list(paths) == list(FORMATS) and list(timings) == list(FORMATS)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"sphere{suffix}" for suffix in FORMATS.values()
    )
    np.testing.assert_array_equal(read_surfel_ply(paths["ply"]).means, surfels.means)
    assert "scale_2" in read_ply_vertices(paths["3dgs"])
    points = read_ply_vertices(paths["points"])
    np.testing.assert_array_equal(points["x"], xyz[:, 0].astype(np.float32))
    assert points["red"].dtype == np.uint8
    for fmt in ("obj", "glb"):
        mesh = trimesh.load(paths[fmt], force="mesh")
        assert len(mesh.faces) > 500 and np.all(np.isfinite(mesh.vertices))
    assert iio.imread(paths["gif"], index=None).shape[:3] == (4, 64, 64)
    assert iio.improps(paths["mp4"], plugin="FFMPEG").shape[1:3] == (64, 64)
    assert np.asarray(Image.open(paths["png"])).shape == (3 * 64, 4 * 64, 3)
    assert all(t >= 0 for t in timings.values())


def test_errors_come_before_any_file(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"unknown 'stl', 'ply2'; expected some of ply, 3dgs"):
        export(sphere_surfels(10), None, out, formats=("ply", "stl", "ply2"))
    s = sphere_surfels(10)
    with pytest.raises(ValueError, match="export: surfels.means: contains NaN"):
        export(s.replace(means=np.full_like(s.means, np.nan)), None, out, formats=("ply",))
    with pytest.raises(ValueError, match="point_colours: xyz: expected shape"):
        export(s, np.zeros((4, 2)), out, formats=("ply", "points"))
    with pytest.raises(ValueError, match="export: size: expected an even size for mp4"):
        export(s, None, out, formats=("mp4",), size=63)
    with pytest.raises(ValueError, match="export: name: expected a file name"):
        export(s, None, out, formats=("ply",), name="a/b")
    assert not out.exists()
