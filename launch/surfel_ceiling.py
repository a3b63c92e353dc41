"""Held-out PSNR of free per-object surfels fitted at a VAE config's resolution (no network).

    python -m launch.surfel_ceiling --config=configs/vae/real.py [--num_surfels=4096]

See ga_jax.evaluation.surfel_ceiling: the number bounds what the VAE decoding to that many
surfels can reach on the same views. Prints the metrics as a markdown row.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.evaluation.surfel_ceiling import fit_free_surfels
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/vae/*.py file")
_NUM_SURFELS = flags.DEFINE_integer("num_surfels", 4096, "surfels per object (<= FPS points)")
_STEPS = flags.DEFINE_integer("steps", 200, "Adam steps on the training batches")
_LR = flags.DEFINE_float("lr", 0.01, "Adam learning rate")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize(multi_process=False)
    r = fit_free_surfels(
        _CONFIG.value, num_surfels=_NUM_SURFELS.value, steps=_STEPS.value, lr=_LR.value
    )
    header = (
        "surfels",
        "steps",
        "train PSNR",
        "held-out PSNR",
        "SSIM",
        "novel PSNR",
        "novel SSIM",
        "records",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    print(
        f"| {_NUM_SURFELS.value} | {_STEPS.value} | {r['train_psnr']:.2f} | {r['psnr']:.2f} | "
        f"{r['ssim']:.4f} | {r['psnr_novel']:.2f} | {r['ssim_novel']:.4f} | {r['records']} |"
    )


if __name__ == "__main__":
    app.run(main)
