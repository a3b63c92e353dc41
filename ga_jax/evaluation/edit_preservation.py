"""How much of an object an edit leaves alone: PSNR / SSIM / LPIPS of the unedited part's
renders before and after the edit (the measure of the 3D editing benchmarks, on our samples).

The unedited part is defined by the stage-1 points, which carry ids through every edit
(ga_jax/pipeline/edit.py): a point is unedited when its id is in both clouds at the same
position (within `tolerance`). Both samples use one rule for their surfels: a surfel is kept
when its nearest point among the unedited points and the edited points of both clouds (where
they were and where they went) is unedited, so that neither render keeps surfels near a
place the edit touched. The kept surfels are rendered alone (the others made transparent) on
the protocol's cameras, before and after, and compared view by view. Stage 2 reruns over the
whole cloud after an edit, so this measures how far the regenerated features of the untouched
points drift, which is what a user of point editing cares about.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from ga_jax.evaluation.object_sets import GeneratedObject, RenderProtocol
from ga_jax.pipeline.generate import Sample

__all__ = ["edit_preservation_views", "kept_surfels", "unedited_points"]


def unedited_points(before: Sample, after: Sample, tolerance: float = 1e-5):
    """(mask over before's points, mask over after's points): ids in both clouds whose
    positions agree within tolerance."""
    b, a = before.cloud, after.cloud
    index_after = {int(i): k for k, i in enumerate(a.ids)}
    keep_before = np.zeros(len(b.ids), bool)
    keep_after = np.zeros(len(a.ids), bool)
    for k, i in enumerate(b.ids):
        j = index_after.get(int(i))
        if j is not None and np.max(np.abs(b.xyz[k] - a.xyz[j])) <= tolerance:
            keep_before[k] = keep_after[j] = True
    return keep_before, keep_after


def kept_surfels(sample: Sample, points: np.ndarray, unedited: np.ndarray) -> np.ndarray:
    """bool [S]: the sample's surfels whose nearest point of points [P, 3] is unedited [P]."""
    nearest = cKDTree(np.asarray(points, np.float64)).query(
        np.asarray(sample.surfels.means, np.float64)
    )[1]
    return unedited[nearest]


def edit_preservation_views(
    before: Sample, after: Sample, protocol: RenderProtocol
) -> tuple[np.ndarray, np.ndarray, float]:
    """(views before, views after) [V, R, R, 3] of the unedited surfels alone, on the
    protocol's cameras, and the fraction of before's points left unedited."""
    keep_before, keep_after = unedited_points(before, after)
    # Unedited points once, then the edited ones where they were and where they went.
    points = np.concatenate(
        [
            before.cloud.xyz[keep_before],
            before.cloud.xyz[~keep_before],
            after.cloud.xyz[~keep_after],
        ]
    )
    unedited = np.arange(len(points)) < keep_before.sum()
    views = []
    for sample in (before, after):
        surfels = sample.surfels
        visible = kept_surfels(sample, points, unedited)
        surfels = dataclasses.replace(
            surfels, opacities=np.where(visible, np.asarray(surfels.opacities), 0.0)
        )
        views.append(GeneratedObject("edit", None, "").views(protocol, surfels))
    return views[0], views[1], float(keep_before.mean())
