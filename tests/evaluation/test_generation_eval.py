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
from ga_jax.metrics.judges import ColourJudge, ShapeJudge
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
