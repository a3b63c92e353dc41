"""The error split by region against hand-built views and loops over pixels."""

import numpy as np
import pytest

from ga_jax.evaluation.error_regions import (
    REGIONS,
    accumulate_error_regions,
    summarise_error_regions,
)


def _square_view(size=16, lo=4, hi=12):
    alpha = np.zeros((size, size))
    alpha[lo:hi, lo:hi] = 1.0
    return alpha


def _regions_by_loops(alpha):
    """band_px = 1 from the definition: 4-neighbours, pixels outside the image count as object
    for the erosion (border_value 1) and as background for the dilation."""
    h, w = alpha.shape
    m = alpha > 0.5

    def at(i, j, outside):
        return m[i, j] if 0 <= i < h and 0 <= j < w else outside

    region = np.empty((h, w), object)
    for i in range(h):
        for j in range(w):
            near = [(i, j), (i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
            inner = all(at(a, b, True) for a, b in near)
            outer = any(at(a, b, False) for a, b in near)
            region[i, j] = "interior" if inner else ("band" if outer else "background")
    return region


def test_regions_match_pixel_loops_and_split_the_error():
    rng = np.random.default_rng(0)
    alpha = _square_view()
    alpha[4:6, 0:4] = 1.0  # an arm that touches the image border
    region = _regions_by_loops(alpha)
    target = rng.uniform(size=(16, 16, 3))
    pred = target + rng.normal(scale=0.1, size=(16, 16, 3))
    totals = accumulate_error_regions({}, pred, target, alpha, band_px=1)
    squared = ((pred - target) ** 2).sum(-1)
    assert totals["background"] == pytest.approx(squared[region == "background"].sum())
    assert totals["band"] == pytest.approx(squared[region == "band"].sum())
    d = (pred - target)[region == "interior"]
    assert totals["interior_offset"] == pytest.approx(len(d) * (d.mean(0) ** 2).sum())
    assert sum(totals[r] for r in REGIONS) == pytest.approx(squared.sum())
    assert totals["pixels"] == 256 and totals["values"] == 768


def test_each_kind_of_error_lands_in_its_region():
    alpha = _square_view()
    region = _regions_by_loops(alpha)
    target = np.full((16, 16, 3), 0.5)
    offset = target + 0.1 * (region == "interior")[..., None]  # one colour shift inside
    checker = (np.indices((16, 16)).sum(0) % 2 * 2 - 1)[..., None] * np.ones(3)
    # A zero-mean pattern inside: 36 interior pixels, 18 of each sign.
    spatial = target + 0.1 * checker * (region == "interior")[..., None]
    outside = target + 0.2 * (region == "background")[..., None]
    for pred, where in ((offset, "interior_offset"), (spatial, "interior_spatial"),
                        (outside, "background")):
        totals = accumulate_error_regions({}, pred, target, alpha, band_px=1)
        total = sum(totals[r] for r in REGIONS)
        assert total > 0 and totals[where] == pytest.approx(total), where
        summary = summarise_error_regions(totals)
        assert summary[where]["share"] == pytest.approx(1.0)
        assert summary["all"]["psnr"] == pytest.approx(
            -10 * np.log10(((pred - target) ** 2).mean()))


def test_accumulates_over_calls_and_leading_axes():
    rng = np.random.default_rng(1)
    alpha = np.stack([_square_view(), _square_view(lo=2, hi=9)])[None]  # [1, 2, H, W]
    target = rng.uniform(size=(1, 2, 16, 16, 3))
    pred = rng.uniform(size=(1, 2, 16, 16, 3))
    both = accumulate_error_regions({}, pred, target, alpha)
    one = accumulate_error_regions({}, pred[:, :1], target[:, :1], alpha[:, :1])
    accumulate_error_regions(one, pred[:, 1:], target[:, 1:], alpha[:, 1:])
    for name in REGIONS + ("pixels", "values"):
        assert one[name] == pytest.approx(both[name])
    with pytest.raises(ValueError, match="alpha"):
        accumulate_error_regions({}, pred, target, alpha[..., :8])
