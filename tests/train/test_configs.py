"""Every config builds (VAE, flow stages, sampling), and the real-object split is what
configs/vae/real.py says."""

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


@pytest.mark.parametrize(
    "spec",
    [
        "configs/flow/tiny.py:1",
        "configs/flow/tiny.py:2,text",
        "configs/flow/small.py:1,text",
        "configs/flow/small.py:2,image",
        "configs/flow/stage1_text.py",
        "configs/flow/stage2_text.py",
        "configs/flow/stage1_image.py",
        "configs/flow/stage2_image.py",
        "configs/flow/paper.py:1,image",
        "configs/flow/paper.py:2,text",
        "configs/sample/default.py",
        "configs/sample/edit.py:random_tiny",
        "configs/image_text/synthetic.py",
        "configs/image_text/synthetic.py:tiny",
    ],
)
def test_flow_and_sample_configs_load(spec):
    from configs.loading import load_config
    from ga_jax.models.flow.build import build_dit

    config = load_config(spec)
    assert config.is_locked
    if "flow" in spec:
        model = build_dit(config.model)
        assert model.xyz_condition == (config.stage == 2)


def test_bad_config_variants_are_named():
    from configs.loading import load_config

    with pytest.raises(ValueError, match="configs/flow/small.py: expected"):
        load_config("configs/flow/small.py:1")
    with pytest.raises(ValueError, match="condition: expected one of"):
        load_config("configs/flow/small.py:1,audio")
    with pytest.raises(ValueError, match="configs/flow/paper.py: expected"):
        load_config("configs/flow/paper.py:3,text")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config("configs/flow/huge.py")
    with pytest.raises(ValueError, match="configs/image_text/synthetic.py: variant"):
        load_config("configs/image_text/synthetic.py:huge")
