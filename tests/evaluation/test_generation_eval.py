"""The generation evaluation's pieces (ga_jax/evaluation/generation.py): prompts, expected
words, accuracies by hand, and the render-space judging of a two-part surfel object."""

import dataclasses

import numpy as np
import pytest

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.synthetic import COLOURS, make_object, sample_surface
from ga_jax.data.synthetic.splits import has_heldout_combo
from ga_jax.evaluation.generation import (
    Judges,
    expected_words,
    judge_generation,
    single_part_prompts,
    summarise,
    two_part_prompts,
    wrong_colour_caption,
)
from ga_jax.metrics.judges import ColourJudge, ShapeJudge, rotations_about_z
from ga_jax.rendering.surfels import Surfels


def test_prompts_and_expected_words():
    prompts = single_part_prompts()
    assert len(prompts) == 66 and sum(p["heldout"] for p in prompts) == 10
    assert expected_words("a medium pink cylinder") == {
        "expected_shape": "cylinder",
        "expected_colour": "pink",
    }
    assert expected_words("an orange sphere on a grey cube") == {
        "expected_top_colour": "orange",
        "expected_bottom_colour": "grey",
    }
    assert wrong_colour_caption("a red cone on a black box") == "a green cone on a red box"


def test_summarise_counts_by_hand():
    rows = [
        dict(
            shape="cube", expected_shape="cube", colour="red", expected_colour="red", heldout=False
        ),
        dict(
            shape="box", expected_shape="cube", colour="red", expected_colour="red", heldout=False
        ),
        dict(
            shape="cone", expected_shape="cone", colour="blue", expected_colour="red", heldout=True
        ),
    ]
    s = summarise(rows)
    assert s["all"]["samples"] == 3
    assert s["all"]["shape_accuracy"] == 2 / 3 and s["all"]["colour_accuracy"] == 2 / 3
    assert s["seen"]["shape_accuracy"] == 0.5 and s["seen"]["colour_accuracy"] == 1.0
    assert s["heldout"]["colour_accuracy"] == 0.0
    assert "mean_max_abs_xyz" not in s["all"]  # only judged rows carry the reach
    rows[0]["max_abs_xyz"], rows[1]["max_abs_xyz"] = 0.40, 0.50
    s = summarise(rows)
    assert s["seen"]["mean_max_abs_xyz"] == 0.45 and s["seen"]["outside_frame_fraction"] == 0.5


def _composition_surface(obj, n, seed):
    """(points [n, 3] on the visible surface, top-part mask): a point is on the top part when
    it lies above the bottom part's highest point (its flat top)."""
    points = sample_surface(obj, n, np.random.default_rng(seed)).astype(np.float32)
    bottom = sample_surface(
        dataclasses.replace(obj, parts=obj.parts[:1]), 4000, np.random.default_rng(seed + 1)
    )
    return points, points[:, 2] > bottom[:, 2].max() + 1e-4


def test_two_part_surfels_are_judged_per_part():
    obj = next(o for o in (make_object(0, i) for i in range(40)) if o.class_name == "composition")
    bottom, top = obj.parts
    means, on_top = _composition_surface(obj, 1500, 0)
    colours = np.where(on_top[:, None], top.albedo * 0.8, bottom.albedo * 0.8).astype(np.float32)
    rng = np.random.default_rng(0)
    n = len(means)
    surfels = Surfels(
        means=means,
        quaternions=rng.normal(size=(n, 4)).astype(np.float32),
        scales=np.full((n, 2), 0.02, np.float32),
        opacities=np.full((n,), 0.95, np.float32),
        colors=colours,
    )
    refs = {name: [np.asarray(rgb) * 0.8] for name, rgb in COLOURS.items()}
    xyz = means[farthest_point_sample(means, 256)]  # like the latent's FPS points
    clouds = {"composition": [xyz], "other": [np.random.default_rng(1).normal(size=(256, 3))]}
    judges = Judges(
        ShapeJudge.from_clouds(clouds, 256, 1, rotations=4), ColourJudge.from_measurements(refs)
    )
    expected = expected_words(obj.caption)
    row = judge_generation(judges, xyz, surfels, expected)
    assert row["expected_top_colour"] == top.colour
    assert row["shape"] == "composition"
    assert row["top_colour"] == top.colour and row["bottom_colour"] == bottom.colour
    assert row["colour"] in (top.colour, bottom.colour)


def test_two_part_prompts_use_the_generators_wording():
    prompts = two_part_prompts(16)
    assert len({p["prompt"] for p in prompts}) == 16 and prompts == two_part_prompts(16)
    from ga_jax.data.synthetic import BOTTOM_SHAPES, TOP_SHAPES

    def template(text):  # the wording with colour, shape and article words abstracted
        names = {**dict.fromkeys(COLOURS, "C"), **dict.fromkeys(TOP_SHAPES + BOTTOM_SHAPES, "S")}
        words = text.split()
        # An article must agree with the word after it.
        assert all(w != "a" or nxt[0] not in "aeiou" for w, nxt in zip(words, words[1:]))
        return " ".join(names.get(w, "A" if w in ("a", "an") else w) for w in words)

    objects = (make_object(0, i) for i in range(200))
    captions = {template(o.caption) for o in objects if o.class_name == "composition"}
    for p in prompts:
        assert not has_heldout_combo(p["prompt"])
        assert expected_words(p["prompt"]) == {
            "expected_top_colour": p["expected_top_colour"],
            "expected_bottom_colour": p["expected_bottom_colour"],
        }
        assert p["expected_top_colour"] != p["expected_bottom_colour"]
    assert {template(p["prompt"]) for p in prompts} == captions == {"A C S on A C S"}


@pytest.fixture(scope="module")
def tiny_pipe():
    from configs.loading import load_config
    from ga_jax.flow.samplers import SamplerSettings
    from ga_jax.pipeline.generate import Pipeline

    return Pipeline.from_configs(
        load_config("configs/vae/tiny.py"),
        load_config("configs/flow/tiny.py:1,text"),
        load_config("configs/flow/tiny.py:2,text"),
        sampler=SamplerSettings("euler", steps=2),
    )


def test_edit_parts_measures_the_colour_change_of_a_moved_top(tiny_pipe):
    """A judge that only knows 'red' matches every sample; a zero move reproduces the sample
    (changes exactly 0), a real move is measured on the same split."""
    from ga_jax.evaluation.generation import edit_parts, summarise_edits

    p = tiny_pipe.num_points
    rng = np.random.default_rng(0)
    judges = Judges(
        ShapeJudge.from_clouds({"a": [rng.normal(size=(p, 3))]}, p, 1, rotations=2),
        ColourJudge.from_measurements({"red": [np.asarray(COLOURS["red"])]}),
    )
    prompt = {"prompt": "a red cube on a blue box", "expected_top_colour": "red",
              "expected_bottom_colour": "red", "heldout": False}  # fmt: skip
    still = edit_parts(tiny_pipe, judges, [prompt], 1, offset=(0, 0, 0), progress=False)[0]
    assert still["matched"] and still["top_change"] == 0.0 and still["bottom_change"] == 0.0
    assert still["kept"]
    moved = edit_parts(tiny_pipe, judges, [prompt], 2, offset=(0.1, 0, 0), progress=False)
    assert [r["sample"] for r in moved] == [0, 1]
    out = tiny_pipe.run(prompt=prompt["prompt"], seed=0, num_samples=2)
    for r, xyz in zip(moved, out.xyz, strict=True):
        assert r["moved_points"] == int((xyz[:, 2] > r["split_height"]).sum())
        assert r["kept"] == (max(r["top_change"], r["bottom_change"]) <= 0.05)
    summary = summarise_edits(moved + [{**still, "matched": False}])
    assert summary["samples"] == 3 and summary["matched_before_edit"] == 2


def test_text_to_3d_rows_on_a_tiny_random_pipeline(tiny_pipe):
    from ga_jax.evaluation.generation import text_to_3d

    pipe = tiny_pipe
    rng = np.random.default_rng(0)
    p = pipe.num_points
    judges = Judges(
        ShapeJudge.from_clouds(
            {"a": [rng.normal(size=(p, 3))], "b": [rng.normal(size=(p, 3))]}, p, 1, rotations=2
        ),
        ColourJudge.from_measurements({k: [np.asarray(v)] for k, v in COLOURS.items()}),
    )
    prompts = single_part_prompts()[:2]
    rows = text_to_3d(pipe, judges, prompts, 2, progress=False)
    from ga_jax.evaluation.generation import JUDGE_RESOLUTION, grid_prompts, sample_grid

    assert len(grid_prompts()) == 15 and len({p["prompt"] for p in grid_prompts()}) == 15
    grid = sample_grid(pipe, prompts, 2)
    r = JUDGE_RESOLUTION
    assert grid.shape == (2 * r, 2 * r, 3) and grid.dtype == np.uint8
    assert len(rows) == 4 and [r["sample"] for r in rows] == [0, 1, 0, 1]
    assert {r["shape"] for r in rows} <= {"a", "b"} and all(r["colour"] in COLOURS for r in rows)
    assert rows[0]["prompt"] == prompts[0]["prompt"] and rows[0]["nfe"] > 0
    # The pipeline's guidance options reach the sampler's Guidance.
    seen = []
    integrate = pipe.integrate

    def spy(*args, guidance, **kwargs):
        seen.append(guidance)
        return integrate(*args, guidance=guidance, **kwargs)

    pipe.integrate = spy
    pipe.guidance_interval, pipe.guidance_rescale = (0.0, 0.5), 0.7
    pipe.run(prompt="a red cube", seed=1, guidance=3.0)
    assert [(g.scale, g.interval, g.rescale) for g in seen] == [(3.0, (0.0, 0.5), 0.7)] * 2


def _random_judges(p, rng):
    return Judges(
        ShapeJudge.from_clouds(
            {"a": [rng.normal(size=(p, 3))], "b": [rng.normal(size=(p, 3))]}, p, 1, rotations=2
        ),
        ColourJudge.from_measurements({k: [np.asarray(v)] for k, v in COLOURS.items()}),
    )


def test_nfe_sweep_rows_carry_each_setting_and_restore_the_pipeline(tiny_pipe, monkeypatch):
    from ga_jax.evaluation import generation

    monkeypatch.setattr(
        generation,
        "NFE_SAMPLERS",
        (("euler2", {"name": "euler", "steps": 2}), ("heun2", {"name": "heun", "steps": 2})),
    )
    # One guidance option (the one that differs from the pipeline's own): half the run time.
    monkeypatch.setattr(generation, "NFE_GUIDANCE", generation.NFE_GUIDANCE[1:])
    saved = tiny_pipe.guidance_interval, tiny_pipe.guidance_rescale
    assert saved != generation.NFE_GUIDANCE[0][1:]
    prompts = single_part_prompts()[:1]
    rows = generation.nfe_sweep(
        tiny_pipe, _random_judges(tiny_pipe.num_points, np.random.default_rng(1)), prompts, 1
    )
    assert (tiny_pipe.guidance_interval, tiny_pipe.guidance_rescale) == saved
    settings = [(r["sampler"], r["guidance_options"]) for r in rows]
    assert settings == [(s, g) for s in ("euler2", "heun2") for g, _, _ in generation.NFE_GUIDANCE]
    nfe = {r["sampler"]: r["nfe"] for r in rows}
    # Two stages of two Euler steps: 4 evaluations; Heun evaluates more per step (its exact
    # count is the sampler's own report, tested in tests/flow).
    assert nfe["euler2"] == 4 and nfe["heun2"] > nfe["euler2"]


@pytest.fixture(scope="module")
def tiny_heldout(tmp_path_factory, tiny_pipe):
    """Two synthetic objects (32 px, one chunk) and a latent dataset of them with random
    latents of the tiny pipeline's shapes and their conditioning views."""
    from ga_jax.data import synthetic
    from ga_jax.data.gbuffer import read_chunk
    from ga_jax.data.latents import LatentDataset, LatentWriter

    root = tmp_path_factory.mktemp("heldout")
    synthetic.generate_dataset(root / "gb", 2, seed=1, resolution=32, num_chunks=1, progress=False)
    rng = np.random.default_rng(2)
    p, c = tiny_pipe.num_points, tiny_pipe.latent_dim
    with LatentWriter(
        root / "latents", num_points=p, latent_dim=c, metadata={"gbuffer_root": str(root / "gb")}
    ) as writer:
        for i in range(2):
            obj = make_object(1, i)
            chunk = read_chunk(root / "gb" / obj.instance_id / "1")
            xyz = sample_surface(obj, p, rng)[None].astype(np.float32)
            h = rng.normal(size=(1, p, c)).astype(np.float32)
            views = (chunk.rgb[:2] * 255).round().astype(np.uint8)
            writer.add(obj.instance_id, obj.caption, xyz=xyz, sample=h, mean=h,
                       logvar=np.zeros_like(h), cond_images=views,
                       cond_cameras=chunk.cameras[:2])  # fmt: skip
    return LatentDataset(root / "latents"), root / "gb"


def test_points_to_3d_scores_each_variant_against_the_objects_views(tiny_pipe, tiny_heldout):
    import jax
    import jax.numpy as jnp

    from ga_jax.data.gbuffer import read_chunk
    from ga_jax.evaluation.generation import POINT_VARIANTS, points_to_3d
    from ga_jax.rendering.cameras import Cameras
    from ga_jax.rendering.render import render_surfels

    latents, gbuffer_root = tiny_heldout
    rows = points_to_3d(tiny_pipe, latents, gbuffer_root, size=16, progress=False)
    assert [r["instance_id"] for r in rows] == [latents[i]["instance_id"] for i in range(2)]
    for r in rows:
        assert all(np.isfinite(r[f"psnr_{v}"]) for v in POINT_VARIANTS)
    # The ceiling by hand: the posterior mean decoded, 2x2 box-averaged targets, PSNR per view.
    item = latents[1]
    chunk = read_chunk(gbuffer_root / item["instance_id"] / "1")
    surfels = tiny_pipe.decode(item["xyz"][:1], item["mean"][:1])
    surfels = jax.tree.map(lambda x: jnp.asarray(x[0]), surfels)
    rgb = np.asarray(
        render_surfels(
            surfels, Cameras.from_rows(jnp.asarray(chunk.cameras), 16, 16), jnp.ones(3)
        ).rgb
    )
    target = chunk.rgb.astype(np.float64)
    target = (
        target[:, 0::2, 0::2]
        + target[:, 1::2, 0::2]
        + target[:, 0::2, 1::2]
        + target[:, 1::2, 1::2]
    ) / 4
    mse = ((rgb - target) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(
        rows[1]["psnr_vae_reconstruction"], np.mean(-10 * np.log10(mse)), atol=1e-3
    )


def test_image_to_3d_judges_and_measures_the_stage1_cloud(tiny_heldout):
    from configs.loading import load_config
    from ga_jax.evaluation.generation import image_to_3d
    from ga_jax.flow.samplers import SamplerSettings
    from ga_jax.pipeline.generate import Pipeline

    pipe = Pipeline.from_configs(
        load_config("configs/vae/tiny.py"),
        load_config("configs/flow/tiny.py:1,image"),
        load_config("configs/flow/tiny.py:2,image"),
        sampler=SamplerSettings("euler", steps=2),
    )
    latents, _ = tiny_heldout
    rows = image_to_3d(
        pipe, _random_judges(pipe.num_points, np.random.default_rng(3)), latents, progress=False
    )
    assert len(rows) == 2
    item = latents[0]
    assert rows[0]["caption"] == str(item["caption"]) and rows[0]["shape"] in ("a", "b")
    # The Chamfer distance by brute force over the judges' 24 rotations about z.
    cloud = pipe.run(image=item["cond_images"][0], seed=0).sample(0).cloud.xyz
    best = np.inf
    for r in rotations_about_z(24):
        d = np.linalg.norm((cloud @ r.T)[:, None] - item["xyz"][0][None], axis=-1)
        best = min(best, 0.5 * (d.min(1).mean() + d.min(0).mean()))
    np.testing.assert_allclose(rows[0]["chamfer"], best, rtol=1e-4)


def test_captions_to_3d_writes_each_object_as_a_sample_directory(tiny_pipe, tiny_heldout, tmp_path):
    from ga_jax.evaluation.generation import captions_to_3d
    from ga_jax.pipeline.sample_files import read_sample

    latents, _ = tiny_heldout
    judges = _random_judges(tiny_pipe.num_points, np.random.default_rng(4))
    rows = captions_to_3d(tiny_pipe, judges, latents, tmp_path, backend="xla", progress=False)
    assert [r["instance_id"] for r in rows] == [latents[i]["instance_id"] for i in range(2)]
    # Named like the object (the metric job pairs them by name); the stored sample is the
    # caption's sample 0 of seed 0.
    item = latents[1]
    stored = read_sample(tmp_path / item["instance_id"])
    direct = tiny_pipe.run(prompt=str(item["caption"]), seed=0).sample(0)
    np.testing.assert_allclose(stored.cloud.xyz, direct.cloud.xyz, atol=1e-6)
    np.testing.assert_allclose(stored.features, direct.features, atol=1e-6)
    assert rows[1]["caption"] == str(item["caption"])
