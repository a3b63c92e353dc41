"""The point-cloud-latent 3D VAE: encoder, posterior, DiT decoder, cascaded surfel head."""

from ga_jax.models.vae.decoder import Decoder
from ga_jax.models.vae.encoder import Encoder
from ga_jax.models.vae.latent import DiagonalGaussian
from ga_jax.models.vae.surfel_head import SurfelHead, Upsampler, surfel_activations
from ga_jax.models.vae.vae import (
    LATENT_RNG,
    VAE,
    abstract_variables,
    build_vae,
    count_params,
    param_breakdown,
    param_counts,
)

__all__ = [
    "LATENT_RNG",
    "VAE",
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
    "SurfelHead",
    "Upsampler",
    "abstract_variables",
    "build_vae",
    "count_params",
    "param_breakdown",
    "param_counts",
    "surfel_activations",
]
