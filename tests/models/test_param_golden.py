"""The VAE and flow-DiT parameter trees (paths, shapes, dtypes, logical axis names) equal the
golden lists in tests/models/golden/: a refactor of the model code must leave them unchanged.

After an intended change, regenerate with `python -m tests.models.param_golden` (see
tests/models/param_golden.py) and review the diff.
"""

import difflib

import pytest

from tests.models.param_golden import CONFIGS, golden_path, param_lines, read_golden


@pytest.mark.parametrize("name", CONFIGS)
def test_params_match_golden(name):
    want, got = read_golden(name), param_lines(name)
    if got != want:
        diff = "\n".join(
            difflib.unified_diff(
                want, got, fromfile=str(golden_path(name)), tofile="rebuilt", lineterm="", n=1
            )
        )
        pytest.fail(
            f"{name}: the parameter tree differs from {golden_path(name)}.\n"
            f"If the change is intended, run `python -m tests.models.param_golden` and review "
            f"the diff.\n{diff}"
        )


def test_paper_counts_in_golden():
    """The paper config's golden counts are DESIGN.md's (launch/param_count.py prints them)."""
    counts = {line.split()[1]: int(line.split()[2]) for line in read_golden("vae_paper")[-3:]}
    assert counts == {"encoder": 14_049_500, "decoder": 156_548_258, "total": 170_597_758}
