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
    for kind in ("cloud", "dinov2", "inception", "musiq", "pointnet"):
        assert again["features"][kind] == {"computed": 0, "cached": 2 * OBJECTS}
    assert again["features"]["paired_views"] == {"computed": 0, "cached": OBJECTS}
    for name, result in first_run["metrics"].items():
        assert again["metrics"][name] == result, name


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


def test_clip_score_matches_transformers_clip_on_the_same_views(sets, tmp_path):
    """With a tiny random CLIP saved by transformers (config, weights, tokenizer), the job's
    CLIP score equals 100 x max(cos, 0) computed here with FlaxCLIPModel on the protocol's
    views and the prompt each sample directory stores; without weights the row says why."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPTokenizer,
        FlaxCLIPModel,
    )
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    config, workdir, generated_root = sets
    clip = tmp_path / "clip"
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    clip.mkdir()
    (clip / "vocab.json").write_text(json.dumps(vocab))
    (clip / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(clip / "vocab.json"), str(clip / "merges.txt")).save_pretrained(clip)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, projection_dim=16, bos_token_id=len(vocab) - 2,
                eos_token_id=len(vocab) - 1, pad_token_id=0)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, projection_dim=16,
                  num_attention_heads=4, image_size=32, patch_size=8)  # fmt: skip
    model = FlaxCLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(clip)

    generated = tmp_path / "generated"
    shutil.copytree(generated_root, generated)
    objects, _ = list_generated(generated, "samples")
    prompts = {o.name: f"a sphere number {i}" for i, o in enumerate(objects)}
    for o in objects[:-1]:  # the last has no prompt: left out of the score only
        info = json.dumps({"prompt": prompts[o.name]})
        np.savez(generated / o.name / "latent.npz", info=np.asarray(info))
    config = config.copy_and_resolve_references()
    config.generated.root = str(generated)
    config.evals = {"clip_score": dict(type="clip_score")}
    report = run_evaluation(config, tmp_path / "no_weights")
    assert "needs CLIP weights" in report["metrics"]["clip_score"]["error"]
    config.networks.clip.weights = str(clip)
    report = run_evaluation(config, tmp_path / "work")
    assert report["features"]["clip_score"] == {"computed": OBJECTS - 1, "cached": 0}

    protocol = RenderProtocol.from_config(config.protocol)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    tokenizer = CLIPTokenizer.from_pretrained(clip)
    model = FlaxCLIPModel.from_pretrained(clip)
    scores = []
    for o in list_generated(generated, "samples")[0][:-1]:
        views = (o.views(protocol) * 255).round().astype(np.uint8)
        pixels = processor(images=list(views), return_tensors="np")["pixel_values"]
        image = np.asarray(model.get_image_features(pixel_values=pixels))
        words = np.asarray(
            model.get_text_features(**tokenizer([prompts[o.name]], return_tensors="np"))
        )
        cos = (image @ words[0]) / np.linalg.norm(image, axis=1) / np.linalg.norm(words[0])
        scores.extend(100 * np.maximum(cos, 0))
    got = report["metrics"]["clip_score"]["value"]
    np.testing.assert_allclose(got, np.mean(scores), rtol=1e-5)
    assert report["metrics"]["clip_score"]["count"] == [OBJECTS - 1]


def _sample(xyz, ids, surfels, info):
    from ga_jax.pipeline.edit import EditableCloud
    from ga_jax.pipeline.generate import Sample

    n = len(xyz)
    cloud = EditableCloud(
        xyz.astype(np.float32), np.zeros((n, 3), np.float32), np.zeros((n, 2), np.float32), ids
    )
    return Sample(cloud, np.zeros((n, 2), np.float32), surfels, info)


def test_edit_preservation_compares_the_unedited_part_before_and_after(sets, tmp_path):
    """An edited sample whose top points moved and whose other surfels changed colour: the
    measure renders only the unmoved points' surfels, before and after; PSNR by hand."""
    import dataclasses

    from ga_jax.evaluation.object_sets import GeneratedObject
    from ga_jax.pipeline.sample_files import write_sample

    config, _, _ = sets
    rng = np.random.default_rng(5)
    points = rng.normal(size=(40, 3))
    points = 0.25 * points / np.linalg.norm(points, axis=1, keepdims=True)
    surfels = sphere_surfels(np.zeros(3), 0.25, (0.2, 0.6, 0.3), 400, rng)
    owner = np.argmin(((surfels.means[:, None] - points[None]) ** 2).sum(-1), axis=1)
    moved = points[:, 2] > 0.1
    offset = np.array([0.1, 0.0, 0.0])
    after_surfels = dataclasses.replace(
        surfels,
        means=(surfels.means + moved[owner][:, None] * offset).astype(np.float32),
        colors=np.where(moved[owner][:, None], surfels.colors, surfels.colors + 0.05),
    )
    ids = np.arange(40)
    before = _sample(points, ids, surfels, {"prompt": "a sphere"})
    after = _sample(points + moved[:, None] * offset, ids, after_surfels,
                    {"prompt": "a sphere", "edited_from": str(tmp_path / "before")})  # fmt: skip
    write_sample(tmp_path / "before", before, size=32)
    write_sample(tmp_path / "generated" / "after", after, size=32)
    config = config.copy_and_resolve_references()
    config.generated.root = str(tmp_path / "generated")
    config.evals = {"edit": dict(type="edit_preservation")}
    report = run_evaluation(config, tmp_path / "work")
    result = report["metrics"]["edit"]
    assert result["count"] == [1]
    np.testing.assert_allclose(result["value"]["unedited_fraction"], 1 - moved.mean())
    # By hand: each render keeps the surfels nearest to an unmoved point among the unmoved
    # points and the moved ones before and after the move; rendered alone, then PSNR.
    protocol = RenderProtocol.from_config(config.protocol)
    union = np.concatenate([points[~moved], points[moved], points[moved] + offset])
    renders = []
    for s in (surfels, after_surfels):
        d = ((s.means[:, None].astype(np.float64) - union[None]) ** 2).sum(-1)
        keep = d.argmin(axis=1) < (~moved).sum()
        s = dataclasses.replace(s, opacities=np.where(keep, s.opacities, 0.0))
        renders.append(GeneratedObject("x", None, "").views(protocol, s).astype(np.float64))
    mse = ((renders[0] - renders[1]) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(result["value"]["psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-4)


def test_cov_mmd_with_emd_matches_brute_force_over_permutations():
    import itertools

    from ga_jax.evaluation.evaluators import EVALUATORS, EvalData

    rng = np.random.default_rng(0)
    gen, ref = rng.normal(size=(3, 5, 3)), rng.normal(size=(4, 5, 3))
    data = EvalData(
        features={"generated": {"cloud": {"cloud": gen}}, "reference": {"cloud": {"cloud": ref}}},
        names={"generated": list("abc"), "reference": list("abcd")},
        paired={},
        clip=None,
        edits={},
    )
    got = EVALUATORS["cov_mmd"][1]({"distance": "emd", "points": 5}, data)["value"]
    perms = [list(p) for p in itertools.permutations(range(5))]
    d = np.array([[min(np.linalg.norm(a - b[p], axis=1).mean() for p in perms) for b in ref]
                  for a in gen])  # fmt: skip
    assert got["cov"] == len(set(d.argmin(1))) / len(ref) * 100
    np.testing.assert_allclose(got["mmd"], d.min(0).mean() * 1000, rtol=1e-6)
