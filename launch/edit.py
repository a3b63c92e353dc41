"""Edit a sample directory's point cloud and regenerate it with the same noise
(configs/sample/edit.py: translate / scale / rotate / delete / merge / points / regenerate).

    python -m launch.edit --config=configs/sample/edit.py --config.sample=S --config.op=delete \
        --config.sphere="0,0,0.2;0.1" --config.vae_workdir=W0 --config.stage1_workdir=W1 \
        --config.stage2_workdir=W2
"""

import logging

from absl import app
from ml_collections import config_flags

from configs.loading import load_config
from ga_jax.pipeline.jobs import run_edit
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sample/edit.py", "editing config")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize(multi_process=False)
    print(run_edit(_CONFIG.value, load_config))


if __name__ == "__main__":
    app.run(main)
