"""Models: shared Linen building blocks (common/) and the 3D VAE (vae/)."""

from ga_jax.models.common import LOGICAL_AXIS_RULES, ModelOptions

__all__ = ["LOGICAL_AXIS_RULES", "ModelOptions"]
