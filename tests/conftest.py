"""Test setup: 8 simulated CPU devices, set before jax is imported anywhere."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# No persistent compilation cache: with one, a full run of the suite (2026-12-05, on a loaded
# 2-core machine) aborted the process inside XLA's executable serialisation while writing
# the VAE smoke test's train step to the cache (the test passes alone and after the tests
# that ran before it in smaller groups); an aborted process loses the whole run.

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "objaverse_gbuffer").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA.resolve()} (needs ../shared/data)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models directory of tiny random models (tests/tiny_models.py), written once."""
    from tests.tiny_models import write_tiny_models  # noqa: PLC0415 - imports jax

    return write_tiny_models(tmp_path_factory.mktemp("tiny_models") / "models")
