"""The Pipeline on tiny random models: shapes, reproducible noise, editing mechanics (rows
reused bit for bit, region regeneration holding the rest fixed), sample directories and the
launch.sample / launch.edit jobs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.loading import load_config
from configs.sample.default import get_config as sample_config
from configs.sample.edit import get_config as edit_config
from ga_jax.data.ply import read_ply_points, write_ply_points
from ga_jax.export.ply import surfel_ply_fields
from ga_jax.flow.samplers import SamplerSettings, initial_noise
from ga_jax.pipeline import edit
from ga_jax.pipeline.generate import BOX, Pipeline, prepare_points
from ga_jax.pipeline.jobs import run_edit, run_sampling
from ga_jax.pipeline.sample_files import SampleFileError, read_sample, write_sample
from tests.tiny_models import tiny_pipeline

EULER_4 = SamplerSettings("euler", steps=4)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def test_run_shapes_and_noise_rows(pipe):
    out = pipe.run(seed=3, num_samples=2)
    n, c = pipe.num_points, pipe.latent_dim
    assert out.xyz.shape == (2, n, 3) and out.features.shape == (2, n, c)
    assert out.surfels.means.shape[:2] == (2, 4 * n)  # the tiny VAE's one upsampler, x4
    assert np.all(np.isfinite(out.xyz)) and np.all(np.isfinite(out.features))
    # The documented noise: rows of (seed, sample, point) per stage stream.
    np.testing.assert_array_equal(
        out.noise_xyz, initial_noise(3, np.arange(2), np.arange(n), 3, stream=1)
    )
    np.testing.assert_array_equal(
        out.noise_features, initial_noise(3, np.arange(2), np.arange(n), c, stream=2)
    )
    assert out.info["stages"]["1"]["nfe"] == 4 and out.info["stages"]["2"]["nfe"] == 4
    again = pipe.run(seed=3, num_samples=2)
    np.testing.assert_array_equal(out.xyz, again.xyz)  # deterministic for a seed
    np.testing.assert_array_equal(out.features, again.features)
    other = pipe.run(seed=4, num_samples=2)
    assert not np.allclose(out.xyz, other.xyz)


def test_run_writes_the_formats_asked_for_each_sample(pipe, tmp_path):
    """run(..., out_dir, formats): sample_<i> files per sample, their surfels the returned
    ones (the 2DGS PLY read back); formats without a directory or unknown ones are refused."""
    from ga_jax.export.ply import read_surfel_ply

    out = pipe.run(seed=3, num_samples=2, out_dir=tmp_path, formats=("ply", "points"))
    assert [sorted(f) for f in out.files] == [["ply", "points"]] * 2
    for i, files in enumerate(out.files):
        assert files["ply"] == tmp_path / f"sample_{i}_surfels.ply" and files["points"].is_file()
        back, want = read_surfel_ply(files["ply"]), out.sample(i).surfels
        np.testing.assert_allclose(back.means, want.means, atol=1e-6)
        np.testing.assert_allclose(back.colors, want.colors, atol=1e-6)
    with pytest.raises(ValueError, match="expected an out_dir"):
        pipe.run(seed=3, formats=("ply",))
    with pytest.raises(ValueError, match=r"unknown \['stl'\]"):
        pipe.run(seed=3, out_dir=tmp_path, formats=("ply", "stl"))


def test_identity_edit_reproduces_the_sample_bit_for_bit(pipe):
    out = pipe.run(seed=1)
    original = out.sample(0)
    edited = pipe.edit(original, original.cloud)
    np.testing.assert_array_equal(edited.features, original.features)
    np.testing.assert_array_equal(edited.surfels.means, original.surfels.means)


def test_edit_strength_switches_the_geometry_part_way(pipe):
    """strength 1 is the rerun on the edited points; a smaller strength follows the original
    sample's trajectory longer, so its features stay closer to the original's; the info
    records it."""
    original = pipe.run(seed=4).sample(0)
    moved = edit.translate(original.cloud, (0.05, 0.0, 0.0), edit.Box((0.2, 0, 0), (0.2, 1, 1)))
    full = pipe.edit(original, moved)
    np.testing.assert_array_equal(pipe.edit(original, moved, strength=1.0).features, full.features)
    drift = {
        s: float(np.abs(pipe.edit(original, moved, strength=s).features - original.features).max())
        for s in (0.02, 0.5)
    }
    assert drift[0.02] < drift[0.5] < float(np.abs(full.features - original.features).max())
    assert drift[0.02] < 0.1 * float(np.abs(original.features).max())
    assert pipe.edit(original, moved, strength=0.5).info["edit_strength"] == 0.5
    # The velocity sees `before` until t_switch, `after` from then on.
    from ga_jax.models.flow.stage import StageVelocity, SwitchedPoints  # noqa: PLC0415

    stage = pipe.stages[2]
    v = StageVelocity(stage.model)
    x = jnp.asarray(original.cloud.noise_features)[None]
    before = jnp.asarray(original.cloud.xyz)[None]
    after = jnp.asarray(moved.xyz)[None]
    cond = pipe.null_condition(2, 1)
    switched = SwitchedPoints(before, after, jnp.float32(0.5))
    for t, xyz in ((0.3, before), (0.5, after), (0.7, after)):
        want = v(x, jnp.float32(t), ((stage.params["dit"], xyz), cond))
        got = v(x, jnp.float32(t), ((stage.params["dit"], switched), cond))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"edit strength: expected a number in \(0, 1\]"):
            pipe.edit(original, moved, strength=bad)


def test_edit_keeps_surviving_rows_and_changes_only_through_the_points(pipe):
    original = pipe.run(seed=2).sample(0)
    rows = pipe.noise_rows(original.info["seed"], original.info["sample_index"])
    region = edit.Sphere(tuple(original.cloud.xyz[0].tolist()), 0.15)
    cloud = edit.delete(original.cloud, region, pipe.num_points, rows)
    assert len(cloud) == pipe.num_points
    result = pipe.edit(original, cloud)
    by_id = {int(i): k for k, i in enumerate(original.cloud.ids)}
    survivors = [k for k, i in enumerate(result.cloud.ids) if int(i) in by_id]
    assert survivors and len(survivors) < pipe.num_points
    for k in survivors:
        j = by_id[int(result.cloud.ids[k])]
        np.testing.assert_array_equal(
            result.cloud.noise_features[k], original.cloud.noise_features[j]
        )
        np.testing.assert_array_equal(result.cloud.xyz[k], original.cloud.xyz[j])
    # New points' rows are the documented function of (seed, sample, id).
    new = [k for k in range(pipe.num_points) if k not in set(survivors)]
    ids = result.cloud.ids[new]
    want = initial_noise(2, np.array([0]), ids, pipe.latent_dim, stream=2)[0]
    np.testing.assert_array_equal(result.cloud.noise_features[new], want)


def test_region_regeneration_holds_the_outside_fixed(pipe):
    original = pipe.run(seed=5).sample(0)
    region = edit.Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.0))  # points with z == 0: none
    with pytest.raises(ValueError, match="no point lies inside"):
        pipe.regenerate_region(original, region)
    z = original.cloud.xyz[:, 2]
    region = edit.Box((0.0, 0.0, float(z.max())), (10.0, 10.0, float(np.ptp(z)) / 3))
    inside = region.contains(original.cloud.xyz)
    assert 0 < inside.sum() < pipe.num_points
    result = pipe.regenerate_region(original, region)
    np.testing.assert_array_equal(result.cloud.xyz[~inside], original.cloud.xyz[~inside])
    assert not np.allclose(result.cloud.xyz[inside], original.cloud.xyz[inside])
    np.testing.assert_array_equal(result.cloud.noise_xyz, original.cloud.noise_xyz)
    assert result.info["regenerated_points"] == int(inside.sum())


def test_prepare_points_fps_and_rescale_rule():
    rng = np.random.default_rng(0)
    inside = rng.uniform(-0.3, 0.3, (500, 3)).astype(np.float32)
    points, done = prepare_points(inside, 128)
    assert points.shape == (128, 3) and done["fps"] and done["rescale"] is None
    assert set(map(tuple, points)) <= set(map(tuple, inside))  # a subset, not moved
    big = inside * 3 + 1.0
    points, done = prepare_points(big, 128)
    assert done["rescale"] is not None and np.max(np.abs(points)) <= BOX + 1e-6
    np.testing.assert_allclose(np.max(np.abs(points)), BOX, rtol=1e-5)
    few = inside[:20]  # fewer than P: kept exactly, densified up to P inside their hull box
    points, done = prepare_points(few, 128)
    assert points.shape == (128, 3) and done["densified"] == 108 and done["rescale"] is None
    np.testing.assert_array_equal(points[:20], few)
    assert np.all(points.min(0) >= few.min(0) - 1e-6) and np.all(points.max(0) <= few.max(0) + 1e-6)
    with pytest.raises(ValueError, match=r"points: expected shape \[M, 3\] with M >= 2"):
        prepare_points(inside[:1], 128)


def test_points_input_skips_stage_one(pipe):
    cloud = np.random.default_rng(1).uniform(-0.4, 0.4, (300, 3)).astype(np.float32)
    out = pipe.run(points=cloud, num_samples=2)
    prepared, _ = prepare_points(cloud, pipe.num_points)
    np.testing.assert_array_equal(out.xyz[0], prepared)
    np.testing.assert_array_equal(out.xyz[1], prepared)
    assert "1" not in out.info["stages"] and out.info["points"]["fps"]


def test_sample_directory_round_trip(pipe, tmp_path):
    sample = pipe.run(seed=7).sample(0)
    directory = write_sample(tmp_path / "s", sample, views=2, size=32)
    for name in ("points.ply", "surfels.ply", "renders.png", "latent.npz"):
        assert (directory / name).is_file(), name
    np.testing.assert_array_equal(read_ply_points(directory / "points.ply"), sample.cloud.xyz)
    back = read_sample(directory)
    for field in ("xyz", "noise_xyz", "noise_features", "ids"):
        np.testing.assert_array_equal(getattr(back.cloud, field), getattr(sample.cloud, field))
    np.testing.assert_array_equal(back.features, sample.features)
    assert back.info == json.loads(json.dumps(sample.info))
    fields = surfel_ply_fields(jax.tree.map(np.asarray, sample.surfels))
    np.testing.assert_array_equal(surfel_ply_fields(back.surfels)["x"], fields["x"])
    (directory / "latent.npz").write_bytes(b"not an npz")
    with pytest.raises(SampleFileError, match="latent.npz: unreadable"):
        read_sample(directory)
    with pytest.raises(SampleFileError, match="missing"):
        read_sample(tmp_path / "nothing")


def test_sample_and_edit_jobs(tmp_path, monkeypatch):
    from ga_jax.pipeline import jobs

    built, build = [], jobs.pipeline_from_config

    def build_once(config, load, condition="text"):
        # The three jobs share one random-weight pipeline.
        if not built:
            built.append(build(config, load, condition))
        return built[0]

    monkeypatch.setattr(jobs, "pipeline_from_config", build_once)
    config = sample_config("random_tiny")
    config.sampler.steps = 2
    config.num_samples = 2
    config.render.size = 32
    config.outdir = str(tmp_path / "out")
    config.prompt = None
    directories = run_sampling(config, load_config)
    assert [d.name for d in directories] == ["sample_s0_0", "sample_s0_1"]
    e = edit_config("random_tiny")
    e.sampler.steps = 2
    e.render.size = 32
    e.sample = str(directories[1])
    e.op = "delete"
    e.sphere = "0,0,0;0.2"
    out = run_edit(e, load_config)
    edited = read_sample(out)
    assert edited.info["edits"][-1]["op"] == "delete" and edited.info["sample_index"] == 1
    assert edited.info["edited_from"] == str(directories[1].resolve())  # the edit measure's
    # An edited PLY with a moved point: rows kept by index.
    points = read_ply_points(directories[0] / "points.ply")
    points[0] += 0.01
    write_ply_points(tmp_path / "moved.ply", points)
    e.sample, e.op, e.sphere, e.points = (
        str(directories[0]),
        "points",
        "",
        str(tmp_path / "moved.ply"),
    )
    e.out = str(tmp_path / "moved")
    moved = read_sample(run_edit(e, load_config))
    np.testing.assert_array_equal(moved.cloud.xyz, points)
    np.testing.assert_array_equal(
        moved.cloud.noise_features, read_sample(directories[0]).cloud.noise_features
    )
    e.op = "explode"
    with pytest.raises(ValueError, match="op: expected one of"):
        run_edit(e, load_config)


def test_from_runs_restores_what_the_runs_saved(pipe, tmp_path):
    """Three 'runs' (their parameters and configs saved as the training loop saves them) load
    into a Pipeline that generates exactly what the pipeline holding those weights does."""
    from ga_jax.train.checkpoint import Checkpointer

    specs = ("configs/vae/tiny.py", "configs/flow/tiny.py:1", "configs/flow/tiny.py:2")
    configs = [load_config(s) for s in specs]
    params = [pipe.vae_params, pipe.stages[1].params, pipe.stages[2].params]
    workdirs = []
    for i, (config, p) in enumerate(zip(configs, params, strict=True)):
        workdir = tmp_path / f"run{i}"
        ckpt = Checkpointer(workdir / "checkpoints")
        ckpt.save(3, {"step": 3, "params": p}, config=config)
        ckpt.close()
        workdirs.append(workdir)
    restored = Pipeline.from_runs(*workdirs, sampler=EULER_4)
    a, b = pipe.run(seed=9), restored.run(seed=9)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.features, b.features)
    # The same runs exported as model files: exact in float32, close in float16.
    from ga_jax.train.runs import export_run

    for dtype in ("float32", "float16"):
        files = [tmp_path / f"{w.name}_{dtype}.safetensors" for w in workdirs]
        for w, f in zip(workdirs, files, strict=True):
            assert export_run(w, f, dtype=dtype)["step"] == 3
        c = Pipeline.from_runs(*files, sampler=EULER_4).run(seed=9)
        if dtype == "float32":
            np.testing.assert_array_equal(a.xyz, c.xyz)
            np.testing.assert_array_equal(a.features, c.features)
        else:
            np.testing.assert_allclose(a.xyz, c.xyz, atol=2e-3)
            assert not np.array_equal(a.xyz, c.xyz)  # the weights were rounded
    with pytest.raises(FileNotFoundError, match="missing: no such model file"):
        Pipeline.from_runs(tmp_path / "missing", *workdirs[1:])
    with pytest.raises(ValueError, match="run2: expected a stage-1 flow model"):
        Pipeline.from_runs(workdirs[0], workdirs[2], workdirs[2])


def test_from_pretrained_reads_a_models_directory(pipe, tiny_models, tmp_path):
    """Model files added to a models directory (as launch.export_model --models_dir does)
    load by name (the stages are `pipe`'s: the same points and features; its VAE differs only
    in the surfel head's biases); a missing manifest, name or file, or a truncated file, is
    named."""
    import json
    import shutil

    with pytest.raises(FileNotFoundError, match="manifest.json: missing"):
        Pipeline.from_pretrained(tmp_path)
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    listed = json.loads((models / "manifest.json").read_text())["models"]
    assert sorted(listed) == ["stage1_text", "stage2_text", "vae"]
    assert listed["vae"]["step"] == 5
    assert listed["vae"]["bytes"] == (models / "vae.safetensors").stat().st_size
    a = pipe.run(seed=4)
    b = Pipeline.from_pretrained(models, sampler=EULER_4).run(seed=4)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.features, b.features)
    # The sampling job reads the directory when no runs are named, and writes the formats.
    config = sample_config()
    config.models, config.outdir, config.prompt = str(models), str(tmp_path / "out"), "a cube"
    config.sampler.name, config.sampler.steps = "euler", 4
    config.seed, config.render.size, config.formats = 4, 32, "3dgs"
    (directory,) = run_sampling(config, load_config)
    assert (directory / "object_3dgs.ply").is_file()
    np.testing.assert_array_equal(read_sample(directory).cloud.xyz, a.xyz[0])
    # A sampling default recorded in the manifest replaces the stage's training guidance.
    from ga_jax.weights.model_files import set_sampling_default

    assert _loaded_guidance(models, 1) == pipe.stages[1].guidance_scale
    set_sampling_default(models, "stage1_text", "guidance_scale", 7.5)
    assert _loaded_guidance(models, 1) == 7.5
    assert _loaded_guidance(models, 2) == pipe.stages[2].guidance_scale
    assert Pipeline.from_pretrained(models, sampler=EULER_4).edit_strength == 1.0
    set_sampling_default(models, "stage2_text", "edit_strength", 0.5)
    assert Pipeline.from_pretrained(models, sampler=EULER_4).edit_strength == 0.5
    with pytest.raises(
        ValueError, match=r"sampling.stage2_text.edit_strength: expected a pos.*at most 1"
    ):
        set_sampling_default(models, "stage2_text", "edit_strength", 1.5)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["sampling"]["stage1_text"]["guidance_scale"] = -1
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="sampling.stage1_text.guidance_scale: expected a pos"):
        Pipeline.from_pretrained(models)
    with pytest.raises(ValueError, match="no model 'stage9' to set"):
        set_sampling_default(models, "stage9", "guidance_scale", 2.0)
    with pytest.raises(FileNotFoundError, match="no model 'stage1_image'"):
        Pipeline.from_pretrained(models, condition="image")
    with pytest.raises(ValueError, match="condition: expected"):
        Pipeline.from_pretrained(models, condition="audio")
    (models / "vae.safetensors").write_bytes(b"version https://git-lfs")
    with pytest.raises(ValueError, match="the manifest says"):
        Pipeline.from_pretrained(models)
    (models / "vae.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="listed for 'vae' in the manifest but missing"):
        Pipeline.from_pretrained(models)


def _loaded_guidance(models, stage: int) -> float:
    return Pipeline.from_pretrained(models, sampler=EULER_4).stages[stage].guidance_scale


def test_a_frozen_condition_is_encoded_once_per_prompt(pipe, monkeypatch):
    calls = []
    prepare = pipe.conditioner.prepare
    monkeypatch.setattr(pipe.conditioner, "prepare", lambda **kw: calls.append(1) or prepare(**kw))
    pipe.run("a red cube", seed=0)
    assert len(calls) == 1  # both stages read the same frozen features
    pipe.run("a blue cone", seed=0)
    assert len(calls) == 2


def test_demo_writes_both_objects_in_every_format_asked(tiny_models, tmp_path, capsys):
    """launch.demo (make demo) on a models directory: text, then image from the default
    synthetic view; the files it lists exist; without image stages it says so and goes on."""
    import shutil

    from absl import flags

    from ga_jax.weights.model_files import add_to_models_directory
    from launch import demo

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    out = tmp_path / "demo"
    argv = ["demo", f"--models={models}", f"--out={out}", "--formats=3dgs,points,png"]
    flags.FLAGS(argv + ["--size=32", "--backend=xla"])
    try:
        demo.main([])
        printed = capsys.readouterr().out
        assert "image to 3D skipped" in printed and "stage1_image" in printed
        for stage in (1, 2):  # the tiny stages stand in for image ones
            add_to_models_directory(
                models, f"stage{stage}_image", models / f"stage{stage}_text.safetensors", {}
            )
        demo.main([])
        printed = capsys.readouterr().out
    finally:
        flags.FLAGS.unparse_flags()
    assert (out / "input.png").is_file()
    for name in ("text", "image"):
        for suffix in ("_3dgs.ply", "_points.ply", "_preview.png"):
            assert (out / name / f"object{suffix}").is_file()
        assert (out / name / "latent.npz").is_file()
        assert f"{name:5s} sample (compile included)" in printed


def test_stages_must_share_a_conditioner_but_not_their_training_start(tiny_models, tmp_path):
    """condition.init_from says where training started (the image encoder's pretraining); two
    stages differing only there form one Pipeline, any other condition field is refused."""
    from ga_jax.weights.model_files import read_model_file, write_model_file

    def stage1_with(**fields):
        config, params, manifest = read_model_file(tiny_models / "stage1_text.safetensors")
        with config.unlocked():
            config.condition.update(fields)
        path = tmp_path / f"stage1_{len(list(tmp_path.iterdir()))}.safetensors"
        write_model_file(path, config, params, dtype="float32", manifest=manifest)
        return path

    vae, stage2 = tiny_models / "vae.safetensors", tiny_models / "stage2_text.safetensors"
    pipe = Pipeline.from_runs(vae, stage1_with(init_from="/gone/encoder.safetensors"), stage2)
    assert pipe.stages[1].params is not None  # built: the start did not split them
    with pytest.raises(ValueError, match="different conditioners"):
        Pipeline.from_runs(vae, stage1_with(image_size=99), stage2)
