"""Generate 3D objects from a prompt, an image or a point cloud (configs/sample/default.py).

    python -m launch.sample --config=configs/sample/default.py --config.prompt="a red cube" \
        --config.vae_workdir=W0 --config.stage1_workdir=W1 --config.stage2_workdir=W2
    python -m launch.sample --config=configs/sample/default.py:random_tiny --config.prompt=x

Writes one sample directory per sample (ga_jax/pipeline/sample_files.py) under
config.outdir and an index of them, <name>_s<seed>.json, and prints the stages' NFE and times.
Runs as several processes too (launch/cluster.py flags, SLURM, TPU slices): each process
generates a block of the samples, process 0 checks them all and writes the index.
"""

import logging

import jax
from absl import app
from ml_collections import config_flags

from configs.loading import load_config
from ga_jax.pipeline.jobs import run_sampling
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sample/default.py", "sampling config")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize()
    directories = run_sampling(_CONFIG.value, load_config)
    if jax.process_index() == 0:
        for directory in directories:
            print(directory)


if __name__ == "__main__":
    app.run(main)
