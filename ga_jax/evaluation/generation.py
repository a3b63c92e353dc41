"""Generation measured on the synthetic set (issue 17): the judges built from training data,
their ceilings, and text / image / point-cloud to 3D evaluated with them.

Judges (ga_jax/metrics/judges.py) come from the flows' training objects, regenerated from the
synthetic generator's (seed, index) so that the colour references are rendered on the judge
cameras: shape bank = the first `per_class` single-part objects of each shape, their
fps-4096.ply clouds FPS'd to the latent's point count; colour references = the first
`per_colour` single-part objects of each colour word, rendered by the exact ray caster.
`build_judges` caches both in one npz (judges.npz) beside the results.

A generated object is judged (judge_generation) on its stage-1 points (shape) and on renders
of its decoded surfels on the judge cameras over white (colour). For two-part prompts the
surfels are split at split_height(stage-1 points) and each part rendered alone (the other
part's opacities set to 0).

Ceilings: the shape judge's accuracy on held-out ground-truth clouds (objects of another seed,
never in the bank) and the colour judge's accuracy on the VAE's reconstructions of held-out
objects (their posterior means decoded, from the held-out latent dataset).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ga_jax.data.gbuffer import read_chunk
from ga_jax.data.ply import read_ply_points
from ga_jax.data.synthetic import (
    BOTTOM_SHAPES,
    COLOURS,
    SINGLE_SHAPES,
    TOP_SHAPES,
    make_object,
    render_views,
)
from ga_jax.data.synthetic.objects import article
from ga_jax.data.synthetic.splits import HELDOUT_COMBOS, has_heldout_combo
from ga_jax.metrics.image import psnr
from ga_jax.metrics.judges import (
    ColourJudge,
    ShapeJudge,
    foreground_colour,
    judge_cameras,
    rotation_min_chamfer,
    split_height,
)
from ga_jax.pipeline.generate import BOX
from ga_jax.pipeline.sample_files import write_sample
from ga_jax.rendering.cameras import Cameras
from ga_jax.rendering.render import render_surfels
from ga_jax.rendering.surfels import Surfels

log = logging.getLogger(__name__)

__all__ = [
    "Judges",
    "build_judges",
    "judge_generation",
    "single_part_prompts",
    "summarise",
    "text_to_3d",
]

JUDGE_RESOLUTION = 64


@dataclasses.dataclass(frozen=True)
class Judges:
    shape: ShapeJudge
    colour: ColourJudge

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            classes=np.asarray(self.shape.classes),
            bank=self.shape.bank,
            labels=self.shape.labels,
            rotations=self.shape.rotations,
            colour_names=np.asarray(self.colour.names),
            colour_references=self.colour.references,
        )

    @classmethod
    def load(cls, path: str | Path) -> Judges:
        with np.load(path) as z:
            shape = ShapeJudge(
                tuple(str(c) for c in z["classes"]), z["bank"], z["labels"], int(z["rotations"])
            )
            colour = ColourJudge(tuple(str(c) for c in z["colour_names"]), z["colour_references"])
        return cls(shape, colour)


def _single_part_objects(seed: int, indices: Iterable[int]):
    for i in indices:
        obj = make_object(seed, i)
        if obj.class_name != "composition":
            yield obj


def build_judges(
    fps_root: str | Path,
    *,
    seed: int,
    num_objects: int,
    points: int,
    per_class: int = 50,
    per_colour: int = 20,
    cache: str | Path | None = None,
) -> Judges:
    """Judges from training objects 0 .. num_objects-1 of synthetic dataset `seed` whose FPS
    clouds lie under fps_root (module docstring); read from / written to `cache` (npz)."""
    if cache is not None and Path(cache).is_file():
        judges = Judges.load(cache)
        if judges.shape.points == points:
            return judges
        log.info("%s: judges for %d points, rebuilding for %d", cache, judges.shape.points, points)
    start = time.perf_counter()
    clouds: dict[str, list[np.ndarray]] = {s: [] for s in SINGLE_SHAPES}
    colours: dict[str, list[np.ndarray]] = {c: [] for c in COLOURS}
    cameras = judge_cameras(JUDGE_RESOLUTION)
    for obj in _single_part_objects(seed, range(num_objects)):
        if len(clouds[obj.class_name]) < per_class:
            path = Path(fps_root) / obj.instance_id / "fps-4096.ply"
            clouds[obj.class_name].append(read_ply_points(path))
        word = obj.parts[0].colour
        if len(colours[word]) < per_colour:
            views = render_views(obj, cameras, JUDGE_RESOLUTION, supersample=2)
            colours[word].append(foreground_colour(views["rgb"], views["alpha"]))
        if all(len(v) >= per_class for v in clouds.values()) and all(
            len(v) >= per_colour for v in colours.values()
        ):
            break
    judges = Judges(
        ShapeJudge.from_clouds(clouds, points, per_class), ColourJudge.from_measurements(colours)
    )
    log.info("built the judges in %.0f s", time.perf_counter() - start)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        judges.save(cache)
    return judges


# --------------------------------------------------------------------------------------------
# Rendering and judging samples


def render_on_judge_cameras(
    surfels: Surfels, backend: str = "xla", keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [V, H, W, 3], alpha [V, H, W]) of one object's surfels on the judge cameras over
    white; `keep` [N] bool drops the other surfels (opacity 0)."""
    rows = judge_cameras(JUDGE_RESOLUTION)
    cameras = Cameras.from_rows(jnp.asarray(rows), JUDGE_RESOLUTION, JUDGE_RESOLUTION)
    s = jax.tree.map(jnp.asarray, surfels)
    if keep is not None:
        s = dataclasses.replace(s, opacities=jnp.where(jnp.asarray(keep), s.opacities, 0.0))
    out = render_surfels(s, cameras, jnp.ones(3), backend=backend)
    return np.asarray(out.rgb), np.asarray(out.alpha)


def judge_generation(
    judges: Judges,
    xyz: np.ndarray,
    surfels: Surfels,
    expected: dict[str, Any],
    *,
    backend: str = "xla",
) -> dict[str, Any]:
    """Judge one object: stage-1 points xyz [P, 3] and its decoded surfels (unbatched). The
    row holds the verdicts and the `expected` fields (expected_words' keys, and anything
    else to keep with the row); an expected_top_colour makes it a two-part judgement."""
    shape, distance = judges.shape.judge(np.asarray(xyz, np.float32)[None])
    rgb, alpha = render_on_judge_cameras(surfels, backend)
    colour = foreground_colour(rgb, alpha)
    row: dict[str, Any] = {
        **expected,
        "shape": shape[0],
        "shape_distance": float(distance[0]),
        # How far the stage-1 points reach (the data frame is [-0.45, 0.45]^3): guidance
        # above the trained scale can buy class accuracy by overshooting the object's size.
        "max_abs_xyz": float(np.max(np.abs(np.asarray(xyz)))),
        "colour": judges.colour.judge(colour),
        "mean_colour": colour.round(4).tolist(),
    }
    if "expected_top_colour" in expected:
        row["split_height"] = split_height(xyz)
        row.update(_part_colours(judges, surfels, row["split_height"], backend))
    return row


# --------------------------------------------------------------------------------------------
# Text to 3D


def single_part_prompts(size: str = "medium") -> list[dict[str, Any]]:
    """The 66 prompts "a <size> <colour> <shape>" with their expected words and whether the
    combination is held out of flow training."""
    heldout = set(HELDOUT_COMBOS)
    prompts = []
    for shape in SINGLE_SHAPES:
        for colour in COLOURS:
            prompts.append(
                {
                    "prompt": f"a {size} {colour} {shape}",
                    "expected_shape": shape,
                    "expected_colour": colour,
                    "heldout": (colour, shape) in heldout,
                }
            )
    return prompts


def two_part_prompts(count: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """`count` distinct prompts "a <colour> <top> on a <colour> <bottom>" in the generator's
    wording (two different colours, shapes from TOP_SHAPES / BOTTOM_SHAPES), drawn with a
    fixed rng and none naming a held-out combination, with their expected colours."""
    rng = np.random.default_rng(seed)
    prompts: dict[str, dict[str, Any]] = {}
    while len(prompts) < count:
        top, bottom = rng.choice(TOP_SHAPES), rng.choice(BOTTOM_SHAPES)
        c_top, c_bottom = rng.choice(list(COLOURS), size=2, replace=False)
        prompt = f"{article(c_top)} {c_top} {top} on {article(c_bottom)} {c_bottom} {bottom}"
        if prompt in prompts or has_heldout_combo(prompt):
            continue
        prompts[prompt] = {
            "prompt": prompt,
            "expected_top_colour": str(c_top),
            "expected_bottom_colour": str(c_bottom),
            "top_shape": str(top),
            "bottom_shape": str(bottom),
            "heldout": False,
        }
    return list(prompts.values())


def text_to_3d(
    pipeline,
    judges: Judges,
    prompts: Sequence[dict[str, Any]],
    samples: int,
    *,
    seed: int = 0,
    backend: str = "xla",
    steps: int | None = None,
    guidance: float | None = None,
    sampler=None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """`samples` objects per prompt (one batch: noise rows 0 .. samples-1 of `seed`), one row
    each: the prompt's fields (prompt, expected_*, heldout), the judges' verdicts
    (judge_generation), the sample index and the batch's sampling time per object. Prompts
    with an 'expected_top_colour' are two-part and also get per-part colours."""
    rows = []
    start = time.perf_counter()
    for n, p in enumerate(prompts):
        t0 = time.perf_counter()
        generation = pipeline.run(
            prompt=p["prompt"],
            seed=seed,
            num_samples=samples,
            steps=steps,
            guidance=guidance,
            sampler=sampler,
        )
        seconds = (time.perf_counter() - t0) / samples
        nfe = sum(s["nfe"] for s in generation.info["stages"].values())
        for i in range(samples):
            sample = generation.sample(i)
            row = judge_generation(judges, sample.cloud.xyz, sample.surfels, p, backend=backend)
            row.update(seed=seed, sample=i, seconds=seconds, nfe=nfe)
            rows.append(row)
        if progress:
            elapsed = time.perf_counter() - start
            log.info(
                "text to 3D: %d/%d prompts, %.1f s per prompt, ETA %.0f s",
                n + 1,
                len(prompts),
                elapsed / (n + 1),
                elapsed / (n + 1) * (len(prompts) - n - 1),
            )
    return rows


def accuracy(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """Fraction of rows whose verdict `key` equals `expected_<key>` (None without rows that
    expect one)."""
    judged = [r for r in rows if r.get(f"expected_{key}") is not None]
    if not judged:
        return None
    return float(np.mean([r.get(key) == r[f"expected_{key}"] for r in judged]))


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracies (shape, colour, and the parts' colours where expected) over all rows and
    over the seen / held-out combinations, with the mean seconds per sample and, for judged
    samples, the mean of their stage-1 points' largest |coordinate| and the fraction of
    samples reaching outside the latent frame [-BOX, BOX]^3."""
    groups = {
        "all": list(rows),
        "seen": [r for r in rows if not r.get("heldout")],
        "heldout": [r for r in rows if r.get("heldout")],
    }
    out = {}
    for name, subset in groups.items():
        if not subset:
            continue
        out[name] = {"samples": len(subset)}
        for key in ("shape", "colour", "top_colour", "bottom_colour"):
            value = accuracy(subset, key)
            if value is not None:
                out[name][f"{key}_accuracy"] = value
        if "seconds" in subset[0]:
            out[name]["seconds_per_sample"] = float(np.mean([r["seconds"] for r in subset]))
        reach = [r["max_abs_xyz"] for r in subset if "max_abs_xyz" in r]
        if reach:
            out[name]["mean_max_abs_xyz"] = float(np.mean(reach))
            out[name]["outside_frame_fraction"] = float(np.mean(np.asarray(reach) > BOX))
    return out


def write_json(path: str | Path, payload: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=1))


# --------------------------------------------------------------------------------------------
# Ceilings and the held-out objects


def expected_words(caption: str) -> dict[str, str]:
    """The shape/colour words a synthetic caption asks for: single part {expected_shape,
    expected_colour}; two parts {expected_top_colour, expected_bottom_colour}."""
    words = caption.lower().split()
    if "on" in words:
        cut = words.index("on")
        top = [w for w in words[:cut] if w in COLOURS]
        bottom = [w for w in words[cut:] if w in COLOURS]
        return {"expected_top_colour": top[0], "expected_bottom_colour": bottom[0]}
    colour = [w for w in words if w in COLOURS]
    shape = [w for w in words if w in SINGLE_SHAPES]
    if len(colour) != 1 or len(shape) != 1:
        raise ValueError(f"caption {caption!r}: expected one colour and one shape word")
    return {"expected_shape": shape[0], "expected_colour": colour[0]}


def shape_ceiling(judges: Judges, fps_root: str | Path, seed: int, indices: Iterable[int]):
    """The shape judge on held-out ground-truth clouds: rows with shape / expected_shape."""
    rows = []
    for obj in _single_part_objects(seed, indices):
        cloud = read_ply_points(Path(fps_root) / obj.instance_id / "fps-4096.ply")
        shape, distance = judges.shape.judge(judges.shape.points_of(cloud)[None])
        rows.append(
            {
                "instance_id": obj.instance_id,
                "shape": shape[0],
                "expected_shape": obj.class_name,
                "shape_distance": float(distance[0]),
            }
        )
    return rows


def reconstruction_colours(pipeline, judges: Judges, latents, *, backend: str = "xla"):
    """The colour judge on the VAE's reconstructions (posterior mean of each held-out
    object's first encoding, decoded): one row per object, two-part objects per part."""
    rows = []
    for i in range(len(latents)):
        item = latents[i]
        caption = str(item["caption"])
        xyz, mean = item["xyz"][0], item["mean"][0]
        surfels = jax.device_get(pipeline.decode(xyz[None], mean[None]))
        surfels = jax.tree.map(lambda x: np.asarray(x[0]), surfels)
        expected = {
            **expected_words(caption),
            "instance_id": item["instance_id"],
            "caption": caption,
        }
        row = judge_generation(judges, xyz, surfels, expected, backend=backend)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Image to 3D and point cloud to 3D on held-out objects


def image_to_3d(
    pipeline,
    judges: Judges,
    latents,
    *,
    view: int = 0,
    seed: int = 0,
    backend: str = "xla",
    progress: bool = True,
):
    """From one conditioning view of each held-out object: the judges' verdicts against its
    caption's words and the rotation-minimised Chamfer distance between the stage-1 cloud
    and the object's own (the VAE's FPS points)."""
    rows = []
    for i in range(len(latents)):
        item = latents[i]
        if "cond_images" not in item:
            raise ValueError(
                f"{latents.root}: object {item['instance_id']!r} has no conditioning views "
                "(extract with --cond_size)"
            )
        t0 = time.perf_counter()
        generation = pipeline.run(image=item["cond_images"][view], seed=seed)
        sample = generation.sample(0)
        caption = str(item["caption"])
        expected = {
            **expected_words(caption),
            "instance_id": item["instance_id"],
            "caption": caption,
        }
        row = judge_generation(judges, sample.cloud.xyz, sample.surfels, expected, backend=backend)
        row["chamfer"] = float(rotation_min_chamfer(sample.cloud.xyz[None], item["xyz"][:1])[0])
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if progress:
            log.info("image to 3D: %d/%d objects", i + 1, len(latents))
    return rows


def captions_to_3d(
    pipeline,
    judges: Judges,
    latents,
    samples_dir: str | Path,
    *,
    seed: int = 0,
    backend: str = "xla",
    progress: bool = True,
):
    """Text to 3D from each held-out object's own caption (sample 0 of `seed`), written as a
    sample directory <samples_dir>/<instance_id>/ (named like the object, so that the metric
    job pairs it with its ground truth: launch.evaluate) and judged against the caption."""
    rows = []
    for i in range(len(latents)):
        item = latents[i]
        caption = str(item["caption"])
        t0 = time.perf_counter()
        sample = pipeline.run(prompt=caption, seed=seed).sample(0)
        seconds = time.perf_counter() - t0
        write_sample(Path(samples_dir) / item["instance_id"], sample, size=128, backend=backend)
        expected = {
            **expected_words(caption),
            "instance_id": item["instance_id"],
            "caption": caption,
            "heldout": has_heldout_combo(caption),
        }
        row = judge_generation(judges, sample.cloud.xyz, sample.surfels, expected, backend=backend)
        rows.append({**row, "seconds": seconds})
        if progress:
            log.info("captions to 3D: %d/%d objects", i + 1, len(latents))
    return rows


def _views_psnr(surfels: Surfels, chunk, size: int, backend: str) -> float:
    cameras = Cameras.from_rows(jnp.asarray(chunk.cameras), size, size)
    out = render_surfels(jax.tree.map(jnp.asarray, surfels), cameras, jnp.ones(3), backend=backend)
    factor = chunk.rgb.shape[1] // size
    target = chunk.rgb.reshape(len(chunk.rgb), size, factor, size, factor, 3).mean((2, 4))
    return float(np.mean(np.asarray(psnr(out.rgb, jnp.asarray(target)))))


def wrong_colour_caption(caption: str) -> str:
    """The caption with each colour word replaced by the next colour of COLOURS (cyclic)."""
    names = list(COLOURS)
    return " ".join(
        names[(names.index(w) + 1) % len(names)] if w in COLOURS else w for w in caption.split()
    )


POINT_VARIANTS = ("generated", "unconditional", "wrong_colour", "h_zero", "vae_reconstruction")


def points_to_3d(
    pipeline,
    latents,
    gbuffer_root: str | Path,
    *,
    seed: int = 0,
    size: int = 64,
    backend: str = "xla",
    progress: bool = True,
):
    """Stage 2 + decode from each held-out object's FPS points and caption, scored by PSNR
    on the object's 16 views (ground truth box-downsampled to `size`), beside the baselines:
    unconditional stage 2, a wrong-colour caption, h = 0, and the VAE's reconstruction (its
    posterior mean decoded, the ceiling)."""
    rows = []
    for i in range(len(latents)):
        item = latents[i]
        caption, xyz = str(item["caption"]), item["xyz"][0]
        chunk = read_chunk(Path(gbuffer_root) / item["instance_id"] / "1")
        row: dict[str, Any] = {"instance_id": item["instance_id"], "caption": caption}
        for variant in POINT_VARIANTS:
            if variant == "h_zero":
                features = np.zeros_like(item["mean"][0])
            elif variant == "vae_reconstruction":
                features = item["mean"][0]
            else:
                prompt = {
                    "generated": caption,
                    "unconditional": None,
                    "wrong_colour": wrong_colour_caption(caption),
                }[variant]
                features = pipeline.run(prompt=prompt, points=xyz, seed=seed).features[0]
            surfels = jax.device_get(pipeline.decode(xyz[None], features[None]))
            surfels = jax.tree.map(lambda x: np.asarray(x[0]), surfels)
            row[f"psnr_{variant}"] = _views_psnr(surfels, chunk, size, backend)
        rows.append(row)
        if progress:
            log.info("point cloud to 3D: %d/%d objects", i + 1, len(latents))
    return rows


# --------------------------------------------------------------------------------------------
# Editing two-part objects

# The top part moves 0.1 along x: a horizontal move keeps every height, so the split height
# measured before the edit still separates the parts after it.
EDIT_OFFSET = (0.1, 0.0, 0.0)
EDIT_TOLERANCE = 0.05  # per channel, on the parts' mean foreground colours


def edit_parts(
    pipeline,
    judges: Judges,
    prompts: Sequence[dict[str, Any]],
    samples: int,
    *,
    seed: int = 0,
    offset: Sequence[float] = EDIT_OFFSET,
    backend: str = "xla",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Two-part prompts generated (samples per prompt); a sample whose parts both match their
    prompt colours is edited: the points above its split height (judges.split_height of the
    stage-1 cloud) are translated by `offset` (pipeline.edit ops: a box region, translate),
    stage 2 rerun with the same noise rows, decoded, and both parts judged again with the same
    split. A part whose decoded surfels no longer cover a pixel gets change None and the
    sample counts as not kept. Rows of unmatched samples carry matched=False and no edit."""
    from ga_jax.pipeline.edit import Box, translate  # noqa: PLC0415

    rows = []
    for n, p in enumerate(prompts):
        generation = pipeline.run(prompt=p["prompt"], seed=seed, num_samples=samples)
        for i in range(samples):
            sample = generation.sample(i)
            before = judge_generation(judges, sample.cloud.xyz, sample.surfels, p, backend=backend)
            row = {**p, "seed": seed, "sample": i, "split_height": before["split_height"]}
            row.update({f"before_{k}": before[k] for k in ("top_colour", "bottom_colour")})
            row["matched"] = all(before[f"{k}_colour"] == p[f"expected_{k}_colour"]
                                 for k in ("top", "bottom"))  # fmt: skip
            if row["matched"]:
                height = before["split_height"]
                # Every point above the split: a box from that height to far above.
                top = Box((0.0, 0.0, height + 5.0), (10.0, 10.0, 5.0))
                edited = pipeline.edit(sample, translate(sample.cloud, offset, top))
                after = _part_colours(judges, edited.surfels, height, backend)
                row["moved_points"] = int(top.contains(sample.cloud.xyz).sum())
                for k in ("top", "bottom"):
                    row[f"after_{k}_colour"] = after[f"{k}_colour"]
                    if after[f"{k}_mean_colour"] is None:  # the part no longer covers a pixel
                        row[f"{k}_change"] = None
                        continue
                    change = np.abs(
                        np.asarray(after[f"{k}_mean_colour"]) - before[f"{k}_mean_colour"]
                    )
                    row[f"{k}_change"] = float(change.max())
                changes = (row["top_change"], row["bottom_change"])
                row["kept"] = None not in changes and max(changes) <= EDIT_TOLERANCE
            rows.append(row)
        if progress:
            log.info("editing: %d/%d prompts", n + 1, len(prompts))
    return rows


def _part_colours(judges: Judges, surfels: Surfels, height: float, backend: str) -> dict:
    """Each part's mean foreground colour and verdict, the surfels split at `height`."""
    top = np.asarray(surfels.means)[:, 2] > height
    out = {}
    for name, keep in (("top", top), ("bottom", ~top)):
        rgb, alpha = render_on_judge_cameras(surfels, backend, keep)
        colour = foreground_colour(rgb, alpha) if alpha.sum() > 1e-6 else None
        out[f"{name}_colour"] = None if colour is None else judges.colour.judge(colour)
        out[f"{name}_mean_colour"] = None if colour is None else colour.round(4).tolist()
    return out


def summarise_edits(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many samples matched before the edit and the fraction of those whose two parts'
    mean colours stayed within EDIT_TOLERANCE."""
    edited = [r for r in rows if r["matched"]]
    return {
        "samples": len(rows),
        "matched_before_edit": len(edited),
        "colours_kept_fraction": float(np.mean([r["kept"] for r in edited])) if edited else None,
        "tolerance": EDIT_TOLERANCE,
        "offset": list(EDIT_OFFSET),
    }


# --------------------------------------------------------------------------------------------
# A picture of the samples


def grid_prompts() -> list[dict[str, Any]]:
    """One single-part prompt per colour word (shapes in turn, held-out combinations
    included) and four two-part prompts: the rows of the sample grid."""
    singles = single_part_prompts()
    rows = [
        next(p for p in singles if p["expected_colour"] == c and p["expected_shape"] == shape)
        for c, shape in zip(COLOURS, SINGLE_SHAPES * 2, strict=False)
    ]
    return rows + two_part_prompts(4)


def sample_grid(
    pipeline,
    prompts: Sequence[dict[str, Any]],
    samples: int,
    *,
    seed: int = 0,
    view: int = 1,
    backend: str = "xla",
) -> np.ndarray:
    """uint8 [len(prompts) * R, samples * R, 3]: judge camera `view` of each sample, one row
    per prompt (noise rows 0 .. samples-1 of `seed`, as text_to_3d)."""
    rows = []
    for p in prompts:
        generation = pipeline.run(prompt=p["prompt"], seed=seed, num_samples=samples)
        tiles = [
            render_on_judge_cameras(generation.sample(i).surfels, backend)[0][view]
            for i in range(samples)
        ]
        rows.append(np.concatenate(tiles, axis=1))
    return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The job: one task per call, JSON + markdown under `out`

TASKS = ("ceilings", "text", "image", "points", "nfe", "edit", "grid", "captions")
EDIT_PROMPTS = 32  # two-part prompts of the edit task (seeds per prompt: the job's `seeds`)

# The quality-versus-NFE sweep: (name, sampler fields); each runs plain and with the
# guidance interval + rescale below.
NFE_SAMPLERS = (
    ("euler4", {"name": "euler", "steps": 4}),
    ("euler8", {"name": "euler", "steps": 8}),
    ("euler12", {"name": "euler", "steps": 12}),
    ("euler25", {"name": "euler", "steps": 25}),
    ("euler50", {"name": "euler", "steps": 50}),
    ("heun12", {"name": "heun", "steps": 12}),
    ("dopri5", {"name": "dopri5"}),
)
# Guidance only over the first 60% of the path (t = 0 is noise) and rescale 0.7 (TRELLIS.2's
# structure default; ../shared/notes/peer_samplers_and_evaluation.md).
NFE_GUIDANCE = (("plain", (0.0, 1.0), 0.0), ("interval+rescale", (0.0, 0.6), 0.7))


def nfe_sweep(pipeline, judges, prompts, samples: int, *, backend: str = "xla"):
    """text_to_3d for every NFE_SAMPLERS x NFE_GUIDANCE setting; rows carry the setting."""
    from ga_jax.flow.samplers import SamplerSettings  # noqa: PLC0415

    rows = []
    saved = pipeline.guidance_interval, pipeline.guidance_rescale
    try:
        for name, fields in NFE_SAMPLERS:
            for guidance_name, interval, rescale in NFE_GUIDANCE:
                pipeline.guidance_interval, pipeline.guidance_rescale = interval, rescale
                log.info("NFE sweep: %s, guidance %s", name, guidance_name)
                for row in text_to_3d(
                    pipeline,
                    judges,
                    prompts,
                    samples,
                    backend=backend,
                    sampler=SamplerSettings(**fields),
                    progress=False,
                ):
                    rows.append(dict(row, sampler=name, guidance_options=guidance_name))
    finally:
        pipeline.guidance_interval, pipeline.guidance_rescale = saved
    return rows


def markdown_summary(title: str, summary: dict[str, Any]) -> str:
    keys = sorted({k for v in summary.values() for k in v})
    lines = [
        f"## {title}",
        "",
        "| subset | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, values in summary.items():
        cells = []
        for k in keys:
            v = values.get(k)
            cells.append("" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_generation_eval(
    task: str,
    out: str | Path,
    *,
    judges: Judges,
    pipeline=None,
    heldout=None,
    heldout_fps_root: str | Path | None = None,
    heldout_seed: int = 1,
    seeds: int = 4,
    heldout_seeds: int = 8,
    backend: str = "xla",
    seed: int = 0,
) -> dict[str, Any]:
    """Run one evaluation task (TASKS) and write <out>/<task>.json (rows + summary) and
    <out>/<task>.md; returns the summary. `seed`: the noise seed of the text task's samples
    (another seed checks a setting chosen on seed 0 on samples it was not chosen on)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if task == "ceilings":
        shape_rows = shape_ceiling(judges, heldout_fps_root, heldout_seed, range(len(heldout)))
        colour_rows = reconstruction_colours(pipeline, judges, heldout, backend=backend)
        summary = {
            "shape_judge_on_heldout_ground_truth": summarise(shape_rows)["all"],
            "colour_judge_on_vae_reconstructions": summarise(colour_rows)["all"],
        }
        rows = {"shape": shape_rows, "colour": colour_rows}
    elif task == "text":
        prompts = single_part_prompts()
        seen = [p for p in prompts if not p["heldout"]]
        held = [p for p in prompts if p["heldout"]]
        rows = text_to_3d(pipeline, judges, seen, seeds, seed=seed, backend=backend)
        rows += text_to_3d(pipeline, judges, held, heldout_seeds, seed=seed, backend=backend)
        summary = summarise(rows)
        two_part = text_to_3d(
            pipeline, judges, two_part_prompts(), seeds, seed=seed, backend=backend
        )
        summary["two_part"] = summarise(two_part)["all"]
        rows += two_part
    elif task == "grid":
        from PIL import Image  # noqa: PLC0415

        prompts = grid_prompts()
        image = sample_grid(pipeline, prompts, seeds, backend=backend)
        Image.fromarray(image).save(out / "grid.png")
        rows = [{"row": i, "prompt": p["prompt"]} for i, p in enumerate(prompts)]
        summary = {"all": {"prompts": len(prompts), "samples_per_prompt": seeds}}
    elif task == "edit":
        rows = edit_parts(pipeline, judges, two_part_prompts(EDIT_PROMPTS), seeds, backend=backend)
        summary = {"all": summarise_edits(rows)}
    elif task == "image":
        rows = image_to_3d(pipeline, judges, heldout, backend=backend)
        summary = summarise(rows)
        summary["all"]["mean_chamfer"] = float(np.mean([r["chamfer"] for r in rows]))
    elif task == "captions":
        rows = captions_to_3d(pipeline, judges, heldout, out / "samples", backend=backend)
        summary = summarise(rows)
    elif task == "nfe":
        prompts = [p for p in single_part_prompts() if not p["heldout"]][::2]
        rows = nfe_sweep(pipeline, judges, prompts, seeds, backend=backend)
        summary = {}
        for name, _ in NFE_SAMPLERS:
            for guidance_name, _, _ in NFE_GUIDANCE:
                subset = [
                    r
                    for r in rows
                    if r["sampler"] == name and r["guidance_options"] == guidance_name
                ]
                entry = summarise(subset)["all"]
                entry["nfe"] = float(np.mean([r["nfe"] for r in subset]))
                summary[f"{name} {guidance_name}"] = entry
    else:
        gbuffer_root = heldout.metadata.get("gbuffer_root")
        if not gbuffer_root:
            raise ValueError(
                f"{heldout.root}: index metadata has no gbuffer_root (re-extract the held-out "
                "latents) to find the objects' views"
            )
        rows = points_to_3d(pipeline, heldout, gbuffer_root, backend=backend)
        means = {
            f"mean_psnr_{v}": float(np.mean([r[f"psnr_{v}"] for r in rows])) for v in POINT_VARIANTS
        }
        summary = {"all": {"objects": len(rows), **means}}
    write_json(out / f"{task}.json", {"summary": summary, "rows": rows})
    (out / f"{task}.md").write_text(markdown_summary(task, summary))
    return summary
