"""Test setup: 8 simulated CPU devices, set before jax is imported anywhere."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "objaverse_gbuffer").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA.resolve()} (needs ../shared/data)")
    return SHARED_DATA.resolve()
