"""Write a training run's latest parameters as one model file (ga_jax/weights/model_files.py).

    python -m launch.export_model --workdir=outputs/flow_stage1_text \
        --out=models/stage1_text.safetensors [--dtype=float16] [--note=key=value ...]
    python -m launch.export_model --workdir=outputs/flow_stage1_text \
        --models_dir=outputs/models --name=stage1_text [--note=key=value ...]

The EMA parameters when the run kept them; the run's config and a manifest (source, step,
training minutes, dtype, notes) go into the file's metadata. With --models_dir the file is
<models_dir>/<name>.safetensors and its entry (size, SHA-256, the manifest) is recorded in
the directory's manifest.json, the layout Pipeline.from_pretrained reads. Prints the
manifest and the file's size.
"""

import json
import logging
from pathlib import Path

from absl import app, flags

from ga_jax.train.runs import export_run
from ga_jax.weights.model_files import add_to_models_directory

_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
_OUT = flags.DEFINE_string("out", None, "the model file to write (.safetensors)")
_MODELS_DIR = flags.DEFINE_string(
    "models_dir", None, "instead of --out: a models directory to add the file to (with --name)"
)
_NAME = flags.DEFINE_string(
    "name", None, "the model's name in --models_dir: vae, stage1_text, stage2_image, ..."
)
_DTYPE = flags.DEFINE_enum("dtype", "float16", ["float16", "float32"], "storage precision")
_NOTES = flags.DEFINE_multi_string("note", [], "key=value pairs added to the manifest")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    notes = {}
    for note in _NOTES.value:
        key, sep, value = note.partition("=")
        if not sep or not key:
            raise app.UsageError(f"--note {note!r}: expected key=value")
        notes[key] = value
    if (_OUT.value is None) == (_MODELS_DIR.value is None):
        raise app.UsageError("give exactly one of --out and --models_dir")
    if _MODELS_DIR.value is not None and not _NAME.value:
        raise app.UsageError("--models_dir needs --name")
    out = _OUT.value or str(Path(_MODELS_DIR.value) / f"{_NAME.value}.safetensors")
    manifest = export_run(_WORKDIR.value, out, dtype=_DTYPE.value, extra=notes)
    if _MODELS_DIR.value is not None:
        manifest = add_to_models_directory(_MODELS_DIR.value, _NAME.value, out, manifest)
    size = Path(out).stat().st_size
    print(json.dumps({**manifest, "file": out, "bytes": size}, indent=1))


if __name__ == "__main__":
    app.run(main)
