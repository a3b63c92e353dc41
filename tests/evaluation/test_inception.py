"""FID Inception against pytorch-fid 0.3.0 on random weights (issue 19, feature networks).

The golden fixture (tests/fixtures/inception_golden/, made once by
tests/fixtures/make_inception_golden.py in a scratch venv with torch + pytorch-fid) holds
pytorch-fid's features and logits for three images under weights drawn by a seeded numpy rule.
Here the same 23.9M weights are regenerated without torch, written in the real file layout
(566 entries, BN counters included) with torch_pickle.save, read back through
load_fid_inception, and our network must reproduce pytorch-fid to 1e-4 relative (measured:
see test_features_and_logits_match_pytorch_fid). Two small files that torch itself wrote (zip
and legacy format) check that the reader reads real torch output. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.evaluation.features import inception
from ga_jax.evaluation.features.inception import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    FIDInceptionV3,
    convert_fid_inception_state,
    load_fid_inception,
    preprocess_fid_images,
)
from ga_jax.weights import torch_pickle
from tests.fixtures.golden import read_golden, with_batch_norm_counters
from tests.fixtures.make_inception_golden import SEED, seeded_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inception_golden"
GOLDEN = FIXTURES / "golden.npz"
SUBSETS = ("stem_subset_zip.pth", "stem_subset_legacy.pth")

pytestmark = pytest.mark.skipif(
    not all((FIXTURES / name).is_file() for name in ("golden.npz", *SUBSETS)),
    reason=f"golden fixture missing in {FIXTURES}; make it with "
    "tests/fixtures/make_inception_golden.py (needs torch + pytorch-fid, see its docstring)",
)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return read_golden(GOLDEN)


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return seeded_state_dict(with_batch_norm_counters(inception.torch_state_shapes()), SEED)


@pytest.fixture(scope="module")
def params(state, tmp_path_factory):
    """The seeded weights through the whole file path: torch layout -> .pth -> loader."""
    path = tmp_path_factory.mktemp("fid") / WEIGHTS_FILE
    torch_pickle.save(path, state)
    return load_fid_inception(path)


def test_layout_and_regenerated_weights_equal_pytorch_fids(golden, state):
    """Our key layout is pytorch-fid's (566 entries), and every regenerated tensor sums to
    what torch held after load_state_dict (so the numpy stream did not change)."""
    assert int(golden["seed"]) == SEED
    assert list(golden["keys"]) == sorted(state)
    assert len(state) == 566
    sums = np.array([state[k].astype(np.float64).sum() for k in sorted(state)])
    np.testing.assert_allclose(sums, golden["key_sums"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", SUBSETS)
def test_torch_written_files_read_back_exactly(name, state):
    loaded = torch_pickle.load(FIXTURES / name)
    assert len(loaded) == 13  # 2 stem convs x (weight + 5 BN entries) + fc.bias
    for key, value in loaded.items():
        assert value.dtype == state[key].dtype, key  # int64 counters, float32 weights
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_features_and_logits_match_pytorch_fid(golden, params):
    """299 x 299 (no resize), 64 x 64 (upsampled) and 320 x 400 (downsampled, no antialias).

    Measured max |ours - pytorch-fid| / max |pytorch-fid| on the 2-core CPU: features 2.8e-7,
    logits 4.8e-7 (features up to 54). Each FID quirk undone moved the features by far more
    (measured once): resize with antialias 1.6e-1 (320 x 400 image), avg-pool counting the
    padding 4.3e-2, Mixed_7c avg- instead of max-pool 3.1e-1, BN eps 1e-5 1.8e-2.
    """
    images = [golden[f"image_{i}"] for i in range(3)]
    x = jnp.concatenate([preprocess_fid_images(jnp.asarray(im[None], jnp.float32) / 255.0)
                         for im in images])  # fmt: skip
    assert x.shape == (3, 299, 299, 3)
    model = FIDInceptionV3(with_logits=True)
    features, logits = jax.jit(model.apply)({"params": params}, x)
    for name, got, want in (("features", features, golden["features"]),
                            ("logits", logits, golden["logits"])):  # fmt: skip
        assert got.shape == want.shape and got.dtype == jnp.float32
        rel = float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))
        print(f"{name}: max relative error {rel:.2e}")
        assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"


def test_missing_file_names_the_path_and_where_to_get_it(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    with pytest.raises(FileNotFoundError) as err:
        load_fid_inception(path)
    assert str(path) in str(err.value) and WEIGHTS_URL in str(err.value)


def test_incomplete_file_names_the_file_and_the_missing_keys():
    """The torch-written stem subset is a real torch file but not the whole network."""
    path = FIXTURES / SUBSETS[0]
    with pytest.raises(ValueError, match="missing keys") as err:
        load_fid_inception(path)
    message = str(err.value)
    assert str(path) in message and "'Conv2d_2b_3x3.bn.bias'" in message
    assert "(461 in all)" in message  # 472 tensors - the 11 in the subset (counters aside)


def test_wrong_keys_and_shapes_are_named(state):
    broken = {k: v for k, v in state.items() if k != "Mixed_7c.branch_pool.conv.weight"}
    broken["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)  # torchvision's
    broken["fc.weight"] = np.zeros((1000, 2048), np.float32)
    with pytest.raises(ValueError) as err:
        convert_fid_inception_state(broken, "some.pth")
    message = str(err.value)
    assert message.startswith("some.pth: ")
    assert "missing keys ['Mixed_7c.branch_pool.conv.weight']" in message
    assert "unexpected keys ['AuxLogits.fc.weight']" in message
    assert "'fc.weight' has shape (1000, 2048), expected (1008, 2048)" in message


def test_inputs_are_checked():
    with pytest.raises(TypeError, match="divide 8-bit images by 255"):
        preprocess_fid_images(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected \[N, H, W, 3\]"):
        preprocess_fid_images(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="H, W >= 75"):
        jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def test_fid_features_shapes(params):
    """The [0, 1]-images entry point composes preprocessing and the network (traced only; the
    values are checked above)."""
    images = jax.ShapeDtypeStruct((2, 64, 80, 3), jnp.float32)
    with_logits = functools.partial(inception.fid_features, with_logits=True)
    features, logits = jax.eval_shape(with_logits, params, images)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert jax.eval_shape(inception.fid_features, params, images)[1] is None


def test_golden_versions_are_recorded(golden):
    versions = json.loads(str(golden["versions"]))
    assert versions["pytorch_fid"] == "0.3.0" and versions["torch"].startswith("2.")
