"""The metric job end to end on tiny sets (issue 19, acceptance 3): generated surfel objects
against fake reference objects, random-weight networks (labelled a plumbing check). A second
run over the same workdir computes no feature (shown by the counts) and gives the same
numbers; a corrupt sample is reported by path and the job still finishes. The measures the
job reports are recomputed here from the cached clouds by brute-force numpy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from configs.eval.synthetic import get_config
from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.ply import read_ply_points
from ga_jax.evaluation.metric_job import run_evaluation
from ga_jax.evaluation.object_sets import (
    RenderProtocol,
    fps_cloud,
    list_generated,
    list_reference,
)
from ga_jax.export.ply import write_surfel_ply
from ga_jax.rendering.surfels import Surfels
from tests.data.fake_vae_data import make_fake_dataset

OBJECTS = 4


def sphere_surfels(centre, radius, colour, n: int, rng) -> Surfels:
    """Surfels on a sphere, each a disk tangent to it."""
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # The quaternion turning z onto the normal: (1 + z.n, z x n), normalised.
    z = np.array([0.0, 0.0, 1.0])
    q = np.concatenate([1.0 + normal @ z[:, None], np.cross(z, normal)], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Surfels(
        means=(centre + radius * normal).astype(np.float32),
        quaternions=q.astype(np.float32),
        scales=np.full((n, 2), 0.04, np.float32),
        opacities=np.where(np.arange(n) % 10 == 0, 0.05, 0.9).astype(np.float32),
        colors=np.broadcast_to(np.asarray(colour, np.float32), (n, 3)).copy(),
    )


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """(config, workdir, generated root): OBJECTS fake spheres as the reference and a slightly
    displaced sphere per object as its generated sample directory (same name)."""
    root = tmp_path_factory.mktemp("metric_job")
    gbuffer, fps, truth = make_fake_dataset(
        root, classes={"Spheres": OBJECTS}, chunks_per_object=1, views=4, size=32, points=600
    )
    rng = np.random.default_rng(0)
    generated = root / "generated"
    for chunk, t in truth.items():
        name = chunk.rsplit("/", 1)[0]
        surfels = sphere_surfels(t["centre"] + 0.02, t["radius"] * 1.1, (0.8, 0.2, 0.2), 700, rng)
        (generated / name).mkdir(parents=True)
        write_surfel_ply(generated / name / "surfels.ply", surfels)
    config = get_config("tiny,dinov2")
    config.generated.root = str(generated)
    config.reference.fps_root = str(fps)
    config.reference.gbuffer_root = str(gbuffer)
    return config, root / "work", generated


@pytest.fixture(scope="module")
def first_run(sets):
    config, workdir, _ = sets
    return run_evaluation(config, workdir)


def test_first_run_reports_every_metric(first_run, sets):
    _, workdir, _ = sets
    report = first_run
    assert report["plumbing_check"].startswith("PLUMBING CHECK")
    assert report["generated"]["used"] == OBJECTS and report["reference"]["used"] == OBJECTS
    assert report["problems"] == []
    for kind in ("cloud", "dinov2", "inception", "musiq", "pointnet"):
        assert report["features"][kind] == {"computed": 2 * OBJECTS, "cached": 0}
    assert report["features"]["paired_views"] == {"computed": OBJECTS, "cached": 0}
    # 700 surfels, 70 of them below the opacity threshold: 630 centres, FPS'd to 512.
    assert report["cloud_points"]["generated"] == {"min": 512, "mean": 512.0}
    assert report["devices"] == jax.device_count() == 8  # tests/conftest.py: 8 CPU devices
    names = ("fid", "kid", "musiq", "p_fid", "p_kid", "cov_mmd", "geometry", "reconstruction")
    for name in names + ("fd_dinov2", "kd_dinov2"):
        assert "error" not in report["metrics"][name], report["metrics"][name]
    assert np.isfinite(report["metrics"]["fid"]["value"])
    # Each object's views: 2 views x 4 objects per side.
    assert report["metrics"]["fid"]["count"] == [2 * OBJECTS, 2 * OBJECTS]
    md = (workdir / "metrics.md").read_text()
    assert "PLUMBING CHECK" in md and "| geometry |" in md and "32 px" in md
    assert (
        json.loads((workdir / "metrics.json").read_text())["metrics"].keys()
        == report["metrics"].keys()
    )


def test_cloud_measures_match_brute_force(first_run, sets):
    """Geometry (paired CD-L1, F-score) and COV/MMD recomputed in numpy from the protocol's
    clouds, built here independently of the cache."""
    config, _, generated_root = sets
    protocol = RenderProtocol.from_config(config.protocol)
    generated, _ = list_generated(generated_root, "samples")
    fps_root = Path(config.reference.fps_root)
    gen = [o.cloud(protocol)[0] for o in generated]
    ref = [fps_cloud(read_ply_points(fps_root / o.name / "fps-4096.ply"), protocol.points)[0]
           for o in generated]  # fmt: skip

    def d2(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    cd, fs = [], []
    for a, b in zip(gen, ref):
        d = np.sqrt(d2(a, b))
        cd.append((d.min(1).mean() + d.min(0).mean()) / 2)
        p, r = (d.min(1) < 0.01).mean(), (d.min(0) < 0.01).mean()
        fs.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    geometry = first_run["metrics"]["geometry"]["value"]
    np.testing.assert_allclose(geometry["cd_l1"], np.mean(cd) * 1000, rtol=1e-4)
    np.testing.assert_allclose(geometry["f_score"], np.mean(fs), atol=1e-6)

    # COV / MMD under the squared_sum Chamfer on 128-point FPS subsets.
    sub = [c[farthest_point_sample(c, 128)] for c in gen]
    sub_ref = [c[farthest_point_sample(c, 128)] for c in ref]
    dist = np.array([[d2(a, b).min(1).mean() + d2(a, b).min(0).mean() for b in sub_ref]
                     for a in sub])  # fmt: skip
    cov = len(set(dist.argmin(1))) / len(sub_ref)
    mmd = dist.min(0).mean()
    got = first_run["metrics"]["cov_mmd"]["value"]
    np.testing.assert_allclose(got["cov"], cov * 100, rtol=1e-6)
    np.testing.assert_allclose(got["mmd"], mmd * 1000, rtol=1e-4)


def test_reconstruction_psnr_by_hand(first_run, sets):
    """PSNR recomputed in numpy from the generated object rendered with the reference chunk's
    cameras and the reference views, both as the protocol makes them."""
    config, _, generated_root = sets
    protocol = RenderProtocol.from_config(config.protocol)
    generated, _ = list_generated(generated_root, "samples")
    reference, _ = list_reference(
        config.reference.fps_root, config.reference.gbuffer_root, protocol
    )
    psnrs = []
    for g, r in zip(generated, reference):
        assert g.name == r.name
        target, cameras = r.views_and_cameras(protocol)
        rendered = g.views(protocol, cameras=cameras)
        mse = ((rendered.astype(np.float64) - target) ** 2).mean(axis=(1, 2, 3))
        psnrs.append(-10 * np.log10(mse))
    got = first_run["metrics"]["reconstruction"]["value"]
    np.testing.assert_allclose(got["psnr"], np.mean(psnrs), rtol=1e-5)
    assert 0 < got["lpips"] and -1 <= got["ssim"] <= 1


def test_second_run_resumes_from_the_cache(first_run, sets):
    config, workdir, _ = sets
    again = run_evaluation(config, workdir)
    for kind in ("cloud", "inception", "musiq", "pointnet"):
        assert again["features"][kind] == {"computed": 0, "cached": 2 * OBJECTS}
    for name, result in first_run["metrics"].items():
        assert again["metrics"][name]["value"] == result["value"], name


def test_corrupt_and_incomplete_samples_are_reported(first_run, sets, tmp_path):
    config, workdir, generated_root = sets
    generated = tmp_path / "generated"
    shutil.copytree(generated_root, generated)
    names = sorted(p.parent.relative_to(generated).as_posix() for p in generated.rglob("*.ply"))
    corrupt = generated / names[0] / "surfels.ply"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated
    incomplete = generated / "Spheres/0/extra"
    incomplete.mkdir(parents=True)
    (incomplete / "points.ply").write_bytes(b"")  # a sample directory without surfels.ply
    config = config.copy_and_resolve_references()
    config.generated.root = str(generated)
    report = run_evaluation(config, workdir)
    paths = {p["path"]: p["error"] for p in report["problems"]}
    assert str(corrupt) in paths and str(incomplete / "surfels.ply") in paths
    assert report["generated"]["used"] == OBJECTS - 1
    assert report["generated"]["listed"] == OBJECTS + 1
    md = (workdir / "metrics.md").read_text()
    assert str(corrupt) in md and "2 object(s) left out" in md
    # The other generated objects and the whole reference side came from the cache.
    assert report["features"]["inception"] == {"computed": 0, "cached": 2 * OBJECTS - 1}
    assert "error" not in report["metrics"]["geometry"]
    assert report["metrics"]["geometry"]["count"] == [OBJECTS - 1]


def test_kid_on_too_few_objects_is_reported_not_fatal(sets, tmp_path):
    config, workdir, _ = sets
    config = config.copy_and_resolve_references()
    config.evals = {
        "p_kid": dict(type="kid", features="pointnet", subsets=2, subset_size=OBJECTS + 1)
    }
    report = run_evaluation(config, workdir)
    assert "fewer than subset_size" in report["metrics"]["p_kid"]["error"]


def test_bad_config_names_the_field(sets, tmp_path):
    config, _, _ = sets
    config = config.copy_and_resolve_references()
    config.evals = {"x": dict(type="no_such_metric")}
    with pytest.raises(ValueError, match="evals.x.type"):
        run_evaluation(config, tmp_path)
    config.evals = {"y": dict(type="frechet", features="vgg")}
    with pytest.raises(ValueError, match="evals.y.features"):
        run_evaluation(config, tmp_path)
    config = get_config("tiny")
    config.protocol.views = 0
    with pytest.raises(ValueError, match="protocol.views"):
        RenderProtocol.from_config(config.protocol)
