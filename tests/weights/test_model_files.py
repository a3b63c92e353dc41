"""Model files (safetensors with the run's config and a manifest): round trips, the half
precision cast, and clear errors for files that are not ours."""

import json

import ml_collections
import numpy as np
import pytest

from ga_jax.weights.model_files import FORMAT, read_model_file, write_model_file


def tree():
    rng = np.random.default_rng(0)
    return {
        "dit": {"block_0": {"kernel": rng.normal(size=(4, 3)).astype(np.float32)}},
        "condition": {"bias": rng.normal(size=(3,)).astype(np.float32)},
    }


def config():
    return ml_collections.ConfigDict({"task": "flow", "stage": 1, "model": {"width": 8}})


def test_round_trip_in_float32_and_float16(tmp_path):
    params = tree()
    write_model_file(tmp_path / "a.safetensors", config(), params, dtype="float32")
    c, back, manifest = read_model_file(tmp_path / "a.safetensors")
    assert c.to_dict() == config().to_dict() and manifest == {"dtype": "float32"}
    np.testing.assert_array_equal(
        back["dit"]["block_0"]["kernel"], params["dit"]["block_0"]["kernel"]
    )
    np.testing.assert_array_equal(back["condition"]["bias"], params["condition"]["bias"])

    write_model_file(tmp_path / "b.safetensors", config(), params, manifest={"step": 7})
    _, half, manifest = read_model_file(tmp_path / "b.safetensors")
    assert manifest == {"step": 7, "dtype": "float16"}
    kernel = params["dit"]["block_0"]["kernel"]
    assert half["dit"]["block_0"]["kernel"].dtype == np.float32  # read back as float32
    np.testing.assert_allclose(half["dit"]["block_0"]["kernel"], kernel, rtol=2**-11)
    assert (tmp_path / "b.safetensors").stat().st_size < (tmp_path / "a.safetensors").stat().st_size


def test_values_that_would_not_survive_are_refused(tmp_path):
    params = tree()
    params["condition"]["bias"][0] = 1e6
    with pytest.raises(ValueError, match="condition/bias: out of float16 range"):
        write_model_file(tmp_path / "x.safetensors", config(), params)
    params["condition"]["bias"][0] = np.nan
    with pytest.raises(ValueError, match="condition/bias: non-finite"):
        write_model_file(tmp_path / "x.safetensors", config(), params, dtype="float32")


def test_files_that_are_not_model_files_are_named(tmp_path):
    from safetensors.numpy import save_file

    with pytest.raises(FileNotFoundError, match="no such model file"):
        read_model_file(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01not a header")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors"):
        read_model_file(tmp_path / "junk.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(
        ValueError, match=f"other.safetensors: metadata format None, expected {FORMAT!r}"
    ):
        read_model_file(tmp_path / "other.safetensors")
    # Our metadata is plain JSON that other tools can read.
    write_model_file(tmp_path / "ok.safetensors", config(), tree())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ok.safetensors"), framework="numpy") as f:
        assert json.loads(f.metadata()["config"])["stage"] == 1


def test_models_manifest_records_files_and_measurements(tmp_path):
    """Model entries, a non-model file (section "files") and an evaluation's summary share one
    manifest; sizes and SHA-256 are those of the bytes on disk; a re-recorded task replaces
    the earlier one; a directory without a manifest gets no measurement."""
    import hashlib

    from ga_jax.weights.model_files import (
        MODELS_FORMAT,
        add_to_models_directory,
        models_directory_files,
        record_measurement,
    )

    write_model_file(tmp_path / "vae.safetensors", config(), tree())
    (tmp_path / "judges.npz").write_bytes(b"judges")
    with pytest.raises(FileNotFoundError, match="manifest.json: missing"):
        record_measurement(tmp_path, "text", {"summary": {}})
    add_to_models_directory(tmp_path, "vae", tmp_path / "vae.safetensors", {"step": 3})
    add_to_models_directory(tmp_path, "judges", tmp_path / "judges.npz", {}, section="files")
    record_measurement(tmp_path, "text", {"summary": {"all": {"class": 0.5}}})
    record_measurement(tmp_path, "text", {"summary": {"all": {"class": 0.75}}})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == MODELS_FORMAT and set(manifest["models"]) == {"vae"}
    judges = manifest["files"]["judges"]
    assert judges["bytes"] == 6 and judges["sha256"] == hashlib.sha256(b"judges").hexdigest()
    assert manifest["measurements"] == {"text": {"summary": {"all": {"class": 0.75}}}}
    assert models_directory_files(tmp_path, ["vae"]) == [tmp_path / "vae.safetensors"]
    with pytest.raises(ValueError, match="expected a file inside"):
        add_to_models_directory(tmp_path / "other", "vae", tmp_path / "vae.safetensors", {})
