"""Train a model (the task named by config.task; the 3D VAE by default), or resume it.

    python -m launch.train --config=configs/vae/tiny.py --workdir=outputs/vae_tiny
    python -m launch.train --config=configs/vae/small.py --workdir=W --config.train.total_steps=100

On several hosts, run the same command on every host: a SLURM, Open MPI or multi-host TPU launch
is detected, or pass --coordinator_address, --num_processes and --process_id (launch/cluster.py;
launch/slurm_gpu.sbatch and launch/tpu_pod.sh are worked examples).
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.train.loop import train_and_evaluate
from ga_jax.train.tasks import make_task
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/<task>/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics and renders go here")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize()
    config = _CONFIG.value
    train_and_evaluate(make_task(config), config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
