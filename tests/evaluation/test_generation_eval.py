"""The generation evaluation's pieces (ga_jax/evaluation/generation.py): prompts, expected
words, accuracies by hand, and the render-space judging of a two-part surfel object."""

import dataclasses

import numpy as np

from ga_jax.data.fps import farthest_point_sample
from ga_jax.data.synthetic import COLOURS, make_object, sample_surface
from ga_jax.evaluation.generation import (
    Judges,
    expected_words,
    judge_generation,
    single_part_prompts,
    summarise,
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


def test_text_to_3d_rows_on_a_tiny_random_pipeline():
    from configs.loading import load_config
    from ga_jax.evaluation.generation import text_to_3d
    from ga_jax.flow.samplers import SamplerSettings
    from ga_jax.pipeline.generate import Pipeline

    pipe = Pipeline.from_configs(
        load_config("configs/vae/tiny.py"),
        load_config("configs/flow/tiny.py:1,text"),
        load_config("configs/flow/tiny.py:2,text"),
        sampler=SamplerSettings("euler", steps=2),
    )
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
