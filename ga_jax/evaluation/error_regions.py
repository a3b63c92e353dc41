"""Where a reconstruction's squared error lies: background, silhouette band, object interior.

Per view, with m = target alpha > 0.5: the band is the pixels within `band_px` of the
silhouette (m dilated minus m eroded, `band_px` steps of the 3 x 3 cross each), the interior
is m eroded, the background is the rest. The interior's error d = pred - target is split into
the view's mean colour offset (n_interior |mean d|^2) and the spatial rest (sum |d - mean d|^2),
so a model that gets every object's colour slightly wrong and one that gets shading or texture
wrong are told apart. The four parts sum to the total squared error exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["REGIONS", "accumulate_error_regions", "summarise_error_regions"]

REGIONS = ("background", "band", "interior_offset", "interior_spatial")


def accumulate_error_regions(
    totals: dict[str, float],
    pred: np.ndarray,
    target: np.ndarray,
    alpha: np.ndarray,
    *,
    band_px: int = 2,
) -> dict[str, float]:
    """Adds the squared error of views pred, target [..., H, W, C] (alpha [..., H, W]) per
    region, and the pixel and value counts, to totals (returned; start from {})."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    alpha = np.asarray(alpha)
    if pred.shape != target.shape or alpha.shape != pred.shape[:-1]:
        raise ValueError(
            f"pred {pred.shape} and target {target.shape} must match, alpha {alpha.shape} "
            f"must be their shape without the channel axis"
        )
    h, w, c = pred.shape[-3:]
    pred, target = pred.reshape(-1, h, w, c), target.reshape(-1, h, w, c)
    for name in REGIONS + ("pixels", "values"):
        totals.setdefault(name, 0.0)
    for view_pred, view_target, view_alpha in zip(pred, target, alpha.reshape(-1, h, w)):
        mask = view_alpha > 0.5
        inner = ndimage.binary_erosion(mask, iterations=band_px, border_value=1)
        outer = ndimage.binary_dilation(mask, iterations=band_px)
        diff = view_pred - view_target
        squared = (diff**2).sum(-1)
        totals["background"] += float(squared[~outer].sum())
        totals["band"] += float(squared[outer & ~inner].sum())
        if inner.any():
            d = diff[inner]
            offset = d.mean(0)
            totals["interior_offset"] += float(len(d) * (offset**2).sum())
            totals["interior_spatial"] += float(((d - offset) ** 2).sum())
        totals["pixels"] += h * w
        totals["values"] += h * w * c
    return totals


def summarise_error_regions(totals: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per region: its share of the squared error and the PSNR (dB, data range 1) of all the
    views pooled (one MSE over every value, not the mean of per-view PSNRs) if that region's
    error were zero; "all" holds the pooled PSNR as it is."""
    total = sum(totals[r] for r in REGIONS)
    out = {"all": {"share": 1.0, "psnr": _psnr(total, totals["values"])}}
    for region in REGIONS:
        out[region] = {
            "share": totals[region] / total if total > 0 else 0.0,
            "psnr_without": _psnr(total - totals[region], totals["values"]),
        }
    return out


def _psnr(squared_error: float, values: float) -> float:
    return float(-10.0 * np.log10(max(squared_error / values, 1e-12)))
