"""Reconstruction metrics (PSNR, SSIM per object and mean) of a trained VAE.

    python -m launch.eval_vae --config=configs/vae/small.py --workdir=outputs/vae_small

Reads the latest checkpoint in --workdir and `config.eval_data`; writes
<workdir>/eval_recon.json and eval_recon.md and prints the table. --latent=sample decodes
posterior samples (eval_recon_sample.*); --latent=noisy --noise_scale=s --noise_stats=L the
posterior mean plus s x the per-channel std of latent dataset L (eval_recon_noisy<s>.*).
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.data.latents import LatentDataset, pooled_stats
from ga_jax.evaluation.vae_jobs import evaluate_reconstruction
from ga_jax.models.vae.reconstruct import LATENTS
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", None, "the run's configs/vae/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
_LATENT = flags.DEFINE_enum("latent", "mean", LATENTS, "which h is decoded")
_NOISE_SCALE = flags.DEFINE_float(
    "noise_scale", 0.0, "with --latent=noisy: noise std as a multiple of each channel's std"
)
_NOISE_STATS = flags.DEFINE_string(
    "noise_stats", None, "with --latent=noisy: a latent dataset whose stats give the channel stds"
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize()
    noise_std, tag = None, "" if _LATENT.value == "mean" else f"_{_LATENT.value}"
    if _LATENT.value == "noisy":
        if not _NOISE_STATS.value:
            raise app.UsageError("--latent=noisy needs --noise_stats=<latent dataset>")
        _, std = pooled_stats([LatentDataset(_NOISE_STATS.value)], "mean")
        noise_std, tag = _NOISE_SCALE.value * std, f"_noisy{_NOISE_SCALE.value:g}"
    evaluate_reconstruction(
        _CONFIG.value, _WORKDIR.value, latent=_LATENT.value, noise_std=noise_std, tag=tag
    )
    print(open(f"{_WORKDIR.value}/eval_recon{tag}.md").read())


if __name__ == "__main__":
    app.run(main)
