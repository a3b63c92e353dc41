"""Train a model (the task named by config.task; the 3D VAE by default), or resume it.

    python -m launch.train --config=configs/vae/tiny.py --workdir=outputs/vae_tiny
    python -m launch.train --config=configs/vae/small.py --workdir=W --config.train.total_steps=100

On several hosts, call with the same flags on every host; jax.distributed is initialised when
--distributed is set (TPU pods, or SLURM / env-configured GPU clusters).
"""

import logging

import jax
from absl import app, flags
from ml_collections import config_flags

from ga_jax.train.loop import train_and_evaluate
from ga_jax.train.tasks import make_task

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/<task>/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics and renders go here")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    config = _CONFIG.value
    train_and_evaluate(make_task(config), config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
