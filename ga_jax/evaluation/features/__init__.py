"""Frozen feature networks behind the distribution metrics, each read from its public weights
file without torch and checked against the package users trust for it.

  inception.py  FID Inception-v3 (pytorch-fid's network and input convention): FID/KID features
  pointnet2.py  Point-E's PointNet++ classifier: P-FID/P-KID features and P-IS log-probabilities
"""

from ga_jax.evaluation.features.inception import (
    FIDInceptionV3,
    fid_features,
    load_fid_inception,
    preprocess_fid_images,
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
    "PointNet2Classifier",
    "default_fps_start",
    "fid_features",
    "load_fid_inception",
    "load_pointe_pointnet",
    "normalize_point_clouds",
    "pointnet_features",
    "preprocess_fid_images",
]
