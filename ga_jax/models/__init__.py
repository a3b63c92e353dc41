"""Models: shared Linen layers (layers.py) and the 3D VAE (vae/)."""

from ga_jax.models.layers import LOGICAL_AXIS_RULES

__all__ = ["LOGICAL_AXIS_RULES"]
