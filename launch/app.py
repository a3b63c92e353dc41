"""A local web app: text or image to 3D surfels with the models of a models directory, a
turntable, an interactive 3D view, downloads, and region edits that keep the noise.

    python -m launch.app [--models=DIR] [--port=7860] [--backend=native]

then open http://127.0.0.1:7860 (served on 127.0.0.1 only). --models: a models directory
(ga_jax/weights/model_files.py; '' = the shipped default, Pipeline.from_pretrained); its
image stages may be absent, and the image tab then says so. Needs `pip install -e '.[app]'`.

Generate: the "text" stages for a prompt, the "image" stages for an image; seed, sampler
steps and guidance go to Pipeline.run. Each result is written by ga_jax.export into its own
folder under --out: the surfel PLY, the 3DGS PLY and the GLB mesh (downloads) and a GIF
turntable. The 3D view shows the GLB: Gradio's Model3D opens every .ply with its Gaussian
splat viewer (a surfel or point PLY is not a splat file, and a splat's thin third scale and
fixed camera show little), while a GLB goes to the Babylon viewer, which frames the object
and draws the TSDF-fused mesh with its vertex colours.

Edit: a region (box: centre and half sizes; sphere: centre and radius) whose points are
translated or deleted, then stage 2 reruns with each surviving point's stored noise rows
(Pipeline.edit, as ga_jax/pipeline/jobs.py run_edit does), with the sample's own steps and
guidance. The last result lives in a gr.State, so edits chain. The functions above
`build_ui` hold the app's logic without any UI (tests/app/ call them directly).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
from absl import app, flags

from ga_jax.export import export
from ga_jax.flow.samplers import SamplerSettings
from ga_jax.pipeline import edit
from ga_jax.pipeline.generate import DEFAULT_MODELS, OUT_OF_DISTRIBUTION, Pipeline, Sample
from ga_jax.pipeline.jobs import parse_region, parse_vector
from ga_jax.weights.model_files import models_directory_files
from kernels.native_composite import available as native_unavailable

# Set before gradio is imported: a local app sends nothing anywhere.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

log = logging.getLogger(__name__)

CONDITIONS = ("text", "image")

# The files each result gets (ga_jax.export FORMATS); 'glb' is also the 3D view.
FORMATS = ("ply", "3dgs", "glb", "gif")
# The 3D view's background (RGBA in 0..1): opaque white, so that an empty view is known.
CLEAR_COLOR = (1.0, 1.0, 1.0, 1.0)
# System fonts only: the default theme would fetch Google Fonts, and the app is local.
THEME_FONTS = {"font": ["system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


@dataclasses.dataclass(frozen=True)
class Result:
    """What the app keeps of the last generation or edit (the gr.State): the sample, the
    condition whose stages made it, the image (image condition; edits pass it again), and
    the sampler steps and guidance (None: each stage's own) that edits reuse."""

    sample: Sample
    condition: str
    image: np.ndarray | None
    steps: int
    guidance: float | None


@dataclasses.dataclass(frozen=True)
class Files:
    """One result's files: the 3D view (GLB), the turntable (GIF) and the downloads."""

    view: Path
    turntable: Path
    downloads: list[Path]


class Models:
    """The pipelines of a models directory (None: the shipped default), loaded on first use,
    one per condition."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = DEFAULT_MODELS if directory is None else Path(directory)
        self._pipelines: dict[str, Pipeline] = {}

    def missing(self, condition: str) -> str | None:
        """None when the directory holds the `condition` stages, else why not (for the UI)."""
        names = ["vae", f"stage1_{condition}", f"stage2_{condition}"]
        try:
            models_directory_files(self.directory, names)
        except (FileNotFoundError, ValueError) as e:
            return f"{condition} to 3D is not available with these models: {e}"
        return None

    def get(self, condition: str) -> Pipeline:
        if condition not in CONDITIONS:
            raise ValueError(f"condition: expected one of {CONDITIONS}, got {condition!r}")
        if condition not in self._pipelines:
            reason = self.missing(condition)
            if reason:
                raise ValueError(reason)
            self._pipelines[condition] = Pipeline.from_pretrained(self.directory, condition)
        return self._pipelines[condition]


def generate(
    models: Models,
    condition: str,
    prompt: str = "",
    image: np.ndarray | None = None,
    *,
    seed: int = 0,
    steps: int = SamplerSettings().steps,
    guidance: float | None = None,
) -> Result:
    """One object from a prompt ("text") or an image uint8 [H, W, 3] ("image")."""
    if condition == "text" and not (prompt or "").strip():
        raise ValueError("prompt: expected some text, got an empty prompt")
    if condition == "image" and image is None:
        raise ValueError("image: expected an image, got none (upload one first)")
    pipe = models.get(condition)
    inputs = {"prompt": prompt.strip()} if condition == "text" else {"image": image[..., :3]}
    out = pipe.run(**inputs, seed=int(seed), steps=int(steps), guidance=guidance)
    return Result(out.sample(0), condition, inputs.get("image"), int(steps), guidance)


def edit_result(
    models: Models,
    result: Result,
    shape: str,
    center: str,
    size: str,
    op: str,
    vector: str = "0,0,0",
) -> Result:
    """`result` with the points inside a region translated by `vector` ("x,y,z") or deleted
    (op), regenerated with the same noise rows. The region: shape "box" (size: half sizes
    "x,y,z") or "sphere" (size: a radius), center "x,y,z" (the latent frame,
    [-0.45, 0.45]^3)."""
    if shape not in ("box", "sphere"):
        raise ValueError(f"region: expected 'box' or 'sphere', got {shape!r}")
    if op not in ("translate", "delete"):
        raise ValueError(f"edit: expected 'translate' or 'delete', got {op!r}")
    text = f"{center};{size}"
    region = parse_region(text if shape == "box" else "", text if shape == "sphere" else "")
    sample = result.sample
    inside = int(edit.region_mask(sample.cloud.xyz, region).sum())
    if not inside:
        raise ValueError(f"region: no point lies inside the {shape} {text!r}")
    pipe = models.get(result.condition)
    if op == "translate":
        cloud = edit.translate(sample.cloud, parse_vector(vector), region)
    else:
        rows = pipe.noise_rows(sample.info["seed"], sample.info["sample_index"])
        cloud = edit.delete(sample.cloud, region, pipe.num_points, rows)
    sampler = dataclasses.replace(pipe.sampler, steps=result.steps)
    edited = pipe.edit(sample, cloud, image=result.image, guidance=result.guidance, sampler=sampler)
    record = {"op": op, shape: text, "points_inside": inside}
    if op == "translate":
        record["vector"] = vector
    info = {**edited.info, "edits": [*sample.info.get("edits", []), record]}
    return dataclasses.replace(result, sample=dataclasses.replace(edited, info=info))


def parse_guidance(text: str) -> float | None:
    """'' -> None (each stage's trained scale), else the number."""
    if not (text or "").strip():
        return None
    try:
        return float(text)
    except ValueError as e:
        raise ValueError(f"guidance: expected a number or nothing, got {text!r}") from e


def write_files(
    result: Result,
    out_dir: str | Path,
    *,
    size: int = 256,
    frames: int = 36,
    mesh_resolution: int = 128,
    backend: str = "xla",
) -> Files:
    """The result's FORMATS files in out_dir (ga_jax.export; size, frames: the turntable's
    and the mesh fusion's renders)."""
    sample = result.sample
    paths = export(
        sample.surfels,
        sample.cloud.xyz,
        out_dir,
        FORMATS,
        size=size,
        frames=frames,
        mesh_resolution=mesh_resolution,
        backend=backend,
    )
    return Files(paths["glb"], paths["gif"], [paths[f] for f in ("ply", "3dgs", "glb")])


def summary(result: Result) -> str:
    """The sample's record as JSON text (condition, seed, sampler, NFE, timings, edits)."""
    info = {"condition": result.condition, **result.sample.info}
    return json.dumps(info, indent=1, default=str)


# -- the UI ----------------------------------------------------------------------------------


def _backend(name: str) -> str:
    """'native' where it can run (a C++ compiler, CPU), else 'xla'."""
    if name != "native":
        return name
    reason = native_unavailable()
    if reason:
        log.warning("%s: rendering with 'xla'", reason)
        return "xla"
    return name


def build_ui(models: Models, out_root: str | Path, **render) -> gr.Blocks:
    """The Blocks app; render: write_files' size, frames, mesh_resolution, backend. Every
    component has an elem_id (tests/app/test_browser.py finds them by it)."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)

    def show(result: Result):
        files = write_files(result, tempfile.mkdtemp(prefix="result_", dir=out_root), **render)
        paths = [str(p) for p in files.downloads]
        return result, str(files.view), str(files.turntable), paths, summary(result)

    def on_generate(condition, prompt, image, seed, steps, guidance):
        try:
            scale = parse_guidance(guidance)
            result = generate(
                models, condition, prompt, image, seed=seed, steps=steps, guidance=scale
            )
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from e
        return show(result)

    def on_edit(result, shape, center, size, op, vector):
        if result is None:
            raise gr.Error("edit: generate an object first")
        try:
            edited = edit_result(models, result, shape, center, size, op, vector)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        return show(edited)

    with gr.Blocks(title="ga-jax: text or image to 3D") as ui:
        gr.Markdown(f"# ga-jax: text or image to 3D surfels\nModels: `{models.directory}`")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                starts = {}
                for condition in CONDITIONS:
                    reason = models.missing(condition)
                    with gr.Tab(condition.capitalize(), elem_id=f"{condition}_tab"):
                        if reason:
                            gr.Markdown(f"**{reason}**", elem_id=f"{condition}_unavailable")
                        if condition == "text":
                            field = gr.Textbox(
                                "a red cube", label="Prompt", elem_id="prompt", lines=1
                            )
                        else:
                            field = gr.Image(
                                type="numpy",
                                image_mode="RGB",
                                label="Image",
                                interactive=not reason,
                                elem_id="image",
                            )
                            gr.Markdown(f"Note: {OUT_OF_DISTRIBUTION}.", elem_id="image_note")
                        button = gr.Button(
                            f"Generate from {condition}",
                            variant="primary",
                            interactive=not reason,
                            elem_id=f"generate_{condition}",
                        )
                    starts[condition] = (field, button)
                seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                steps = gr.Slider(
                    1,
                    64,
                    SamplerSettings().steps,
                    step=1,
                    label="Sampler steps (fixed-step samplers)",
                    elem_id="steps",
                )
                guidance = gr.Textbox(
                    "",
                    label="Guidance scale",
                    placeholder="empty: each stage's trained scale",
                    elem_id="guidance",
                )
                with gr.Accordion("Edit the last result (same noise)", elem_id="edit_form"):
                    shape = gr.Radio(
                        ["box", "sphere"], value="box", label="Region", elem_id="region"
                    )
                    center = gr.Textbox("0,0,0.2", label="Centre x,y,z", elem_id="center")
                    size = gr.Textbox(
                        "0.45,0.45,0.25",
                        label="Half sizes x,y,z (box) or radius (sphere)",
                        elem_id="size",
                    )
                    op = gr.Radio(
                        ["translate", "delete"], value="translate", label="Operation", elem_id="op"
                    )
                    vector = gr.Textbox("0,0,0.1", label="Translate by x,y,z", elem_id="vector")
                    edit_button = gr.Button("Apply edit", elem_id="apply_edit")
            with gr.Column():
                view = gr.Model3D(
                    label="3D view (GLB mesh)", clear_color=CLEAR_COLOR, elem_id="view"
                )
                turntable = gr.Image(
                    label="Turntable", type="filepath", height=300, elem_id="turntable"
                )
                files = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
                info = gr.Textbox(label="Sample", lines=8, max_lines=30, elem_id="info")
        outputs = [state, view, turntable, files, info]
        # One queue for every event: the pipelines are not meant to run concurrently.
        for condition, (field, button) in starts.items():
            prompt, image = (
                (field, gr.State(None)) if condition == "text" else (gr.State(""), field)
            )
            button.click(
                on_generate,
                [gr.State(condition), prompt, image, seed, steps, guidance],
                outputs,
                api_name=f"generate_{condition}",
                concurrency_id="models",
            )
        edit_button.click(
            on_edit,
            [state, shape, center, size, op, vector],
            outputs,
            api_name="edit",
            concurrency_id="models",
        )
    return ui


def define_flags() -> None:
    """The command line's flags, defined only when run as a program: tests import this
    module in one process with launch.demo, whose flags share some names."""
    flags.DEFINE_string("models", "", "a models directory ('' = the shipped default)")
    flags.DEFINE_integer("port", 7860, "port on 127.0.0.1")
    flags.DEFINE_string("out", "", "where results are written ('' = a new temp folder)")
    flags.DEFINE_string("backend", "native", "renderer: native (C++, CPU; else xla), xla")
    flags.DEFINE_integer("size", 256, "turntable and mesh-fusion render size (px)")
    flags.DEFINE_integer("frames", 36, "turntable frames")
    flags.DEFINE_integer("mesh_resolution", 128, "TSDF grid side of the GLB")


def _stop(signum, frame):
    raise KeyboardInterrupt  # Gradio closes its server on it, and the process exits 0


def main(argv):
    del argv
    args = flags.FLAGS
    logging.getLogger().setLevel(logging.INFO)
    models = Models(args.models or None)
    reasons = [models.missing(c) for c in CONDITIONS]
    if all(reasons):
        raise app.UsageError("\n".join(reasons))
    for condition in CONDITIONS:  # load before the first click
        if not models.missing(condition):
            models.get(condition)
    out = Path(args.out or tempfile.mkdtemp(prefix="ga_jax_app_"))
    render = {
        "size": args.size,
        "frames": args.frames,
        "mesh_resolution": args.mesh_resolution,
        "backend": _backend(args.backend),
    }
    ui = build_ui(models, out, **render)
    signal.signal(signal.SIGTERM, _stop)
    print(f"results: {out}")
    ui.queue().launch(
        server_name="127.0.0.1",
        server_port=args.port,
        allowed_paths=[str(out)],
        ssr_mode=False,
        theme=gr.themes.Default(**THEME_FONTS),
    )
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
