"""Reconstruction metrics (PSNR, SSIM per object and mean) of a trained VAE.

    python -m launch.eval_vae --config=configs/vae/small.py --workdir=outputs/vae_small

Reads the latest checkpoint in --workdir and `config.eval_data`; writes
<workdir>/eval_recon.json and eval_recon.md and prints the table.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.evaluation.vae_jobs import evaluate_reconstruction

_CONFIG = config_flags.DEFINE_config_file("config", None, "the run's configs/vae/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    evaluate_reconstruction(_CONFIG.value, _WORKDIR.value)
    print(open(f"{_WORKDIR.value}/eval_recon.md").read())


if __name__ == "__main__":
    app.run(main)
