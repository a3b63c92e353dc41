"""ga-jax: GaussianAnything (point-cloud latent 3D VAE + cascaded flow DiTs) in JAX/Flax."""

__version__ = "0.1.0"
