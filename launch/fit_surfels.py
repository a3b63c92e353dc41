"""Fit surfels to posed views of a G-buffer chunk; write renders, a PNG grid and metrics.

python -m launch.fit_surfels --config=configs/fit_surfels.py --workdir=outputs/demo
"""

from absl import app, flags
from ml_collections import config_flags

from ga_jax.rendering.fit_job import run_fit
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fit_surfels.py", "fit config")
_WORKDIR = flags.DEFINE_string("workdir", "outputs/demo", "where outputs are written")


def main(argv):
    del argv
    cluster.initialize(multi_process=False)
    run_fit(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
