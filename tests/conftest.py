"""Test setup: 8 simulated CPU devices, set before jax is imported anywhere."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# A compilation cache for this test session: trainer tests compile the same step several
# times (a run, its resumed continuation, a reference run); the cache compiles it once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ga_jax_xla_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

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
