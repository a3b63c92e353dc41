"""Every VAE config builds, and the real-object split is what configs/vae/real.py says."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ga_jax.data.loader import make_source

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "objaverse_gbuffer"


@pytest.mark.parametrize("name", ["paper", "small", "tiny", "real"])
def test_configs_build_and_lock(name):
    config = importlib.import_module(f"configs.vae.{name}").get_config()
    assert config.is_locked
    with pytest.raises(ValueError, match=f"configs/vae/{name}.py"):
        importlib.import_module(f"configs.vae.{name}").get_config("nope")


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")
def test_real_split_holds_out_chunk_3_of_every_object(monkeypatch):
    from configs.vae import real

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the configs' roots are relative
    config = real.get_config()
    train, held = make_source(config.data).chunks, make_source(config.eval_data).chunks
    objects = lambda chunks: {c.rsplit("/", 1)[0] for c in chunks}
    assert len(train) == 10 and len(held) == 5 and not set(train) & set(held)
    assert objects(train) == objects(held) and len(objects(held)) == 5
    assert all(c.endswith("/3") for c in held)
    # Every record of the held-out chunks is evaluated: full batches, nothing dropped.
    assert 2 * len(held) == config.eval_data.batch_size * config.train.eval_batches
