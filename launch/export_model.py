"""Write a training run's latest parameters as one model file (ga_jax/weights/model_files.py).

    python -m launch.export_model --workdir=outputs/flow_stage1_text \
        --out=models/stage1_text.safetensors [--dtype=float16] [--note=key=value ...]

The EMA parameters when the run kept them; the run's config and a manifest (source, step,
dtype, notes) go into the file's metadata. Prints the manifest and the file's size.
"""

import json
import logging
from pathlib import Path

from absl import app, flags

from ga_jax.train.runs import export_run

_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
_OUT = flags.DEFINE_string("out", None, "the model file to write (.safetensors)")
_DTYPE = flags.DEFINE_enum("dtype", "float16", ["float16", "float32"], "storage precision")
_NOTES = flags.DEFINE_multi_string("note", [], "key=value pairs added to the manifest")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    notes = {}
    for note in _NOTES.value:
        key, sep, value = note.partition("=")
        if not sep or not key:
            raise app.UsageError(f"--note {note!r}: expected key=value")
        notes[key] = value
    manifest = export_run(_WORKDIR.value, _OUT.value, dtype=_DTYPE.value, extra=notes)
    size = Path(_OUT.value).stat().st_size
    print(json.dumps({**manifest, "file": _OUT.value, "bytes": size}, indent=1))


if __name__ == "__main__":
    app.run(main)
