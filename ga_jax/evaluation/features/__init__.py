"""Frozen feature networks behind the distribution metrics, each read from its public weights
file without torch and checked against the package users trust for it.

  inception.py  FID Inception-v3 (pytorch-fid's network and input convention): FID/KID features
  pointnet2.py  Point-E's PointNet++ classifier: P-FID/P-KID features and P-IS log-probabilities
  musiq.py      MUSIQ (pyiqa's KonIQ model and preprocessing): no-reference image quality scores
"""

from ga_jax.evaluation.features.inception import (
    FIDInceptionV3,
    fid_features,
    load_fid_inception,
    preprocess_fid_images,
)
from ga_jax.evaluation.features.musiq import (
    MUSIQ,
    MusiqInputs,
    load_musiq,
    musiq_forward,
    musiq_scores,
    preprocess_musiq,
)
from ga_jax.evaluation.features.pointnet2 import (
    PointNet2Classifier,
    default_fps_start,
    load_pointe_pointnet,
    normalize_point_clouds,
    pointnet_features,
)

__all__ = [
    "FIDInceptionV3",
    "MUSIQ",
    "MusiqInputs",
    "PointNet2Classifier",
    "default_fps_start",
    "fid_features",
    "load_fid_inception",
    "load_musiq",
    "load_pointe_pointnet",
    "musiq_forward",
    "musiq_scores",
    "normalize_point_clouds",
    "pointnet_features",
    "preprocess_fid_images",
    "preprocess_musiq",
]
