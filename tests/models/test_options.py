"""ModelOptions: defaults, normalisation, hashing, errors that name the field, and build_vae
handing the config's one ModelOptions to every module."""

import dataclasses

import jax.numpy as jnp
import pytest

from configs.vae.model import tiny_model
from ga_jax.models.common import REMAT_POLICIES, ModelOptions
from ga_jax.models.vae import build_vae


def test_defaults_and_normalisation():
    opts = ModelOptions()
    assert (opts.dtype, opts.param_dtype) == (jnp.dtype("float32"), jnp.dtype("float32"))
    assert (opts.attention_impl, opts.attention_chunk_size) == ("xla", 1024)
    assert (opts.scan_layers, opts.remat_policy) == (True, "none")
    # Names and dtypes give equal (and equally hashed) options: Linen fields stay hashable.
    a = ModelOptions(dtype="bfloat16", param_dtype="float32")
    b = ModelOptions(dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert a == b and hash(a) == hash(b) and isinstance(a.dtype, jnp.dtype)
    assert a.replace(dtype=jnp.float32) == ModelOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.dtype = jnp.float32


@pytest.mark.parametrize(
    "field, value",
    [
        ("dtype", "int32"),
        ("dtype", "no_such_type"),
        ("param_dtype", None),
        ("attention_impl", "flash"),
        ("attention_chunk_size", 0),
        ("attention_chunk_size", 8.0),
        ("attention_chunk_size", True),
        ("scan_layers", 1),
        ("remat_policy", "some"),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"ModelOptions\.{field}: expected"):
        ModelOptions(**{field: value})


def test_every_remat_policy_is_accepted():
    for policy in REMAT_POLICIES:
        assert ModelOptions(remat_policy=policy).remat_policy == policy


def test_build_vae_passes_one_options_to_every_module():
    cfg = tiny_model()
    cfg.update(dict(dtype="bfloat16", remat_policy="full", attention_impl="chunked"))
    cfg.attention_chunk_size = 64
    model = build_vae(cfg)
    want = ModelOptions(
        dtype=jnp.bfloat16,
        param_dtype=jnp.float32,
        attention_impl="chunked",
        attention_chunk_size=64,
        scan_layers=False,
        remat_policy="full",
    )
    assert model.encoder.options == model.decoder.options == model.surfel_head.options == want


def test_config_errors_name_the_field():
    cfg = tiny_model()
    cfg.attention_impl = "flash"
    with pytest.raises(ValueError, match="ModelOptions.attention_impl"):
        build_vae(cfg)
    cfg = tiny_model().to_dict()
    del cfg["remat_policy"]
    with pytest.raises(ValueError, match=r"config.model: missing field\(s\) \['remat_policy'\]"):
        ModelOptions.from_config(cfg)
