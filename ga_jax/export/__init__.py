"""Exports that open in the usual 3D tools: ply (surfel PLY in the 2DGS layout)."""

from ga_jax.export.ply import (
    SH_C0,
    SURFEL_PLY_PROPERTIES,
    logit_to_opacity,
    opacity_to_logit,
    read_surfel_ply,
    rgb_to_sh_dc,
    sh_dc_to_rgb,
    surfel_ply_fields,
    write_surfel_ply,
)

__all__ = [
    "SH_C0",
    "SURFEL_PLY_PROPERTIES",
    "logit_to_opacity",
    "opacity_to_logit",
    "read_surfel_ply",
    "rgb_to_sh_dc",
    "sh_dc_to_rgb",
    "surfel_ply_fields",
    "write_surfel_ply",
]
