"""The paper-size models' parameter shardings under the mesh presets equal the golden files
(tests/fixtures/shardings, written by tests/fixtures/make_sharding_golden.py). A failure is a
change of logical axis names, rules or shapes: review the diff, then rewrite the files."""

from __future__ import annotations

import json
import math

import pytest

from tests.fixtures.make_sharding_golden import MODELS, OUT, PRESETS, parameter_shardings


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name, spec", MODELS)
def test_parameter_shardings_match_the_golden_file(name, spec, preset):
    golden = json.loads((OUT / f"{name}_{preset}.json").read_text())
    now = parameter_shardings(spec, preset)
    assert now["mesh"] == golden["mesh"]
    changed = {
        k: (golden["params"].get(k), v)
        for k, v in now["params"].items()
        if golden["params"].get(k) != v
    }
    missing = sorted(set(golden["params"]) - set(now["params"]))
    assert not changed and not missing, (
        f"{name} under {preset}: {len(changed)} parameters changed "
        f"({dict(list(changed.items())[:5])}), {len(missing)} gone ({missing[:5]}); if "
        "intended: python -m tests.fixtures.make_sharding_golden"
    )


def test_fsdp_presets_split_nearly_every_parameter():
    """Under fsdp every large parameter is split 8 ways: replicated ones hold < 1%."""
    for name, _ in MODELS:
        golden = json.loads((OUT / f"{name}_fsdp.json").read_text())
        sizes = {k: math.prod(v["shape"]) for k, v in golden["params"].items()}
        replicated = sum(sizes[k] for k, v in golden["params"].items() if not any(v["spec"]))
        assert replicated < 0.01 * sum(sizes.values()), name
