"""The embedded default end to end (`make demo`): text to 3D and image to 3D with the small
synthetic-set models the package ships (Pipeline.from_pretrained), every export format
written under --out, with the time each part took.

    python -m launch.demo [--prompt="a red cube"] [--image=photo.png] [--out=outputs/demo]

The default image is a view of a synthetic object that no model saw in training (the
generator's object DEMO_OBJECT of seed DEMO_SEED, rendered at 128 px); these models know only
the synthetic set's primitives and colours, so a real photograph is out of their distribution.
Output: <out>/text/ and <out>/image/, each a sample directory (ga_jax/pipeline/sample_files.py)
plus object.<format> files (ga_jax/export), and <out>/input.png, the image used.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

from ga_jax.data.synthetic import make_object, render_views
from ga_jax.data.synthetic.cameras import orbit_cameras
from ga_jax.export import FORMATS, export
from ga_jax.pipeline.generate import DEFAULT_MODELS, OUT_OF_DISTRIBUTION, Pipeline
from ga_jax.pipeline.jobs import read_image
from ga_jax.pipeline.sample_files import write_sample

DEMO_SEED, DEMO_OBJECT = 1, 3  # seed 1: the held-out objects' seed (docs/results.md)

_PROMPT = flags.DEFINE_string("prompt", "a red cube", "the text prompt")
_IMAGE = flags.DEFINE_string("image", "", "an image file ('' = a view of a synthetic object)")
_OUT = flags.DEFINE_string("out", "outputs/demo", "output directory")
_MODELS = flags.DEFINE_string("models", "", "a models directory ('' = the shipped default)")
_SEED = flags.DEFINE_integer("seed", 0, "noise seed")
# Every format but 'ply': the sample directory already holds the 2DGS surfels (surfels.ply).
_FORMATS = flags.DEFINE_list(
    "formats", [f for f in FORMATS if f != "ply"], "export formats besides the sample directory"
)
_SIZE = flags.DEFINE_integer("size", 256, "render size of the exports (px)")
_BACKEND = flags.DEFINE_string("backend", "native", "renderer: native (C++, CPU) or xla")


def demo_image(path: Path) -> Path:
    """Render the default conditioning image (a synthetic object, 128 px) to `path`."""
    obj = make_object(DEMO_SEED, DEMO_OBJECT)
    camera = orbit_cameras([30.0], 20.0, 1.75, 128)
    rgb = render_views(obj, camera, 128)["rgb"][0]
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(path)
    print(f"input image: {path} ({obj.caption!r}, object {DEMO_OBJECT} of seed {DEMO_SEED})")
    return path


def generate(name: str, out: Path, condition: str, **inputs) -> dict[str, float]:
    """One object with the `condition` stages; returns the seconds of each part."""
    times = {}
    start = time.perf_counter()
    pipe = Pipeline.from_pretrained(_MODELS.value or None, condition)
    times["load models"] = time.perf_counter() - start
    start = time.perf_counter()
    sample = pipe.run(**inputs, seed=_SEED.value).sample(0)
    times["sample (compile included)"] = time.perf_counter() - start
    directory = out / name
    start = time.perf_counter()
    write_sample(directory, sample, size=_SIZE.value, backend=_BACKEND.value)
    times["sample directory"] = time.perf_counter() - start
    exports: dict[str, float] = {}
    paths = export(
        sample.surfels,
        sample.cloud.xyz,
        directory,
        _FORMATS.value,
        size=_SIZE.value,
        backend=_BACKEND.value,
        timings=exports,
    )
    times.update({f"export {k}": v for k, v in exports.items()})
    print(f"\n{name}: {directory}/ (surfels.ply, points.ply, renders.png, latent.npz)")
    for fmt, path in paths.items():
        print(f"  {fmt:7s} {path}")
    return times


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.WARNING)
    out = Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    models = Path(_MODELS.value) if _MODELS.value else DEFAULT_MODELS
    print(f"models: {models}")
    timings = {"text": generate("text", out, "text", prompt=_PROMPT.value)}
    image_path = Path(_IMAGE.value) if _IMAGE.value else demo_image(out / "input.png")
    if _IMAGE.value:
        print(f"input image: {image_path} (note: {OUT_OF_DISTRIBUTION})")
    try:
        image = read_image(image_path)
        timings["image"] = generate("image", out, "image", image=image)
    except FileNotFoundError as e:
        if "stage1_image" not in str(e):
            raise
        print(f"\nimage to 3D skipped: {e}")
    print("\nseconds per part")
    for name, parts in timings.items():
        for part, seconds in parts.items():
            print(f"  {name:5s} {part:28s} {seconds:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
