"""Write the latent dataset of a trained VAE for the flow models (ga_jax/data/latents.py).

    python -m launch.extract_latents --config=configs/vae/small.py --workdir=outputs/vae_small \
        --out=outputs/latents_small [--cond_size=518]

Encodes both halves of every chunk in `config.data` (no jitter, fixed order).
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from ga_jax.evaluation.vae_jobs import extract_latents
from launch import cluster

_CONFIG = config_flags.DEFINE_config_file("config", None, "the run's configs/vae/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
_OUT = flags.DEFINE_string("out", None, "the latent dataset directory to write")
_COND_SIZE = flags.DEFINE_integer("cond_size", 0, "conditioning views at this size (0 = none)")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the posterior samples")
_EXCLUDE = flags.DEFINE_bool(
    "exclude_heldout_combos",
    False,
    "leave out objects whose captions name a held-out shape/colour combination (a flow "
    "training set; ga_jax/data/synthetic/splits.py)",
)
flags.mark_flags_as_required(["config", "workdir", "out"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    cluster.initialize()
    extract_latents(
        _CONFIG.value,
        _WORKDIR.value,
        _OUT.value,
        cond_size=_COND_SIZE.value,
        seed=_SEED.value,
        exclude_heldout_combos=_EXCLUDE.value,
    )


if __name__ == "__main__":
    app.run(main)
