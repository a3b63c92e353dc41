"""Between a stage's data and the x its flow learns: x = (data - shift) * gain, per channel.

Stage 1 learns the latent's xyz: shift 0, gain 1 / flow.xyz_scale. Stage 2 learns the
features h: gain flow.feature_scale (the paper's 1 for image and 4 for text), and with
per-channel statistics (flow.feature_mean / flow.feature_std, filled from the latent
dataset when flow.standardise_features is set) shift = mean and gain = feature_scale / std,
so that every channel of x has unit spread. Training (ga_jax/train/tasks/flow.py) and sampling
(ga_jax/pipeline/generate.py) read the same config fields through `stage_scaling`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["StageScaling", "stage_scaling"]


@dataclasses.dataclass(frozen=True)
class StageScaling:
    """shift and gain: float32 arrays broadcasting against the data's last axis."""

    shift: np.ndarray
    gain: np.ndarray

    def to_x(self, data):
        return (data - self.shift) * self.gain

    def from_x(self, x):
        return x / self.gain + self.shift


def stage_scaling(stage: int, flow: Any) -> StageScaling:
    """The scaling of a stage from its config's flow section (module docstring)."""
    if int(stage) == 1:
        return StageScaling(np.zeros((), np.float32), np.float32(1.0 / float(flow.xyz_scale)))
    gain = np.float32(flow.feature_scale)
    mean, std = tuple(flow.get("feature_mean", ())), tuple(flow.get("feature_std", ()))
    if not mean and not std:
        return StageScaling(np.zeros((), np.float32), gain)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != std.shape or mean.ndim != 1 or not (std > 0).all():
        raise ValueError(
            "flow.feature_mean / flow.feature_std: expected two equal-length lists with "
            f"positive stds, got {mean.shape} and {std.shape} (min std {std.min(initial=0)})"
        )
    return StageScaling(mean, (gain / std).astype(np.float32))
