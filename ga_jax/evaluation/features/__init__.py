"""Frozen feature networks behind the distribution metrics (FID/KID, ...), each read from its
public weights file without torch and checked against the package users trust for it."""

from ga_jax.evaluation.features.inception import (
    FIDInceptionV3,
    fid_features,
    load_fid_inception,
    preprocess_fid_images,
)

__all__ = ["FIDInceptionV3", "fid_features", "load_fid_inception", "preprocess_fid_images"]
