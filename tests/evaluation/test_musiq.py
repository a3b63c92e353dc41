"""MUSIQ against pyiqa 0.1.16 on random weights (issue 19, feature networks).

The golden fixture (tests/fixtures/musiq_golden/, made once by
tests/fixtures/make_musiq_golden.py in a scratch venv with torch + pyiqa) holds what pyiqa's
own ``MUSIQ`` (KonIQ configuration) built and returned for three images of different sizes
under weights drawn by a seeded numpy rule: its multi-scale patch tensors (as metadata, random
projections and a few whole patches), the cls features and the scores. Here the same 27.1M
weights are regenerated without torch and go through both file formats: written as pyiqa's
``.pth`` with torch_pickle.save and as the original google-research ``.npz`` (written by this
test with pyiqa's converter run backwards), each read by load_musiq. Our preprocessing must
reproduce pyiqa's patch tensors and our network its scores to 1e-4 relative (measured: see
the tests). A small file that torch itself wrote checks that the reader reads real torch
output. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from ga_jax.evaluation.features import musiq
from ga_jax.evaluation.features.musiq import (
    NPZ_URL,
    WEIGHTS_FILE,
    WEIGHTS_URL,
    convert_musiq_npz,
    convert_musiq_state,
    image_patches,
    load_musiq,
    musiq_forward,
    musiq_scores,
    preprocess_musiq,
)
from ga_jax.weights import torch_pickle
from ga_jax.weights.model_files import flatten_params
from tests.fixtures.golden import read_golden
from tests.fixtures.make_musiq_golden import (
    SEED,
    SUBSET_KEYS,
    projection_matrix,
    seeded_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "musiq_golden"
GOLDEN = FIXTURES / "golden.npz"
SUBSET = FIXTURES / "subset.pth"
NUM_IMAGES = 3

pytestmark = pytest.mark.skipif(
    not (GOLDEN.is_file() and SUBSET.is_file()),
    reason=f"golden fixture missing in {FIXTURES}; make it with "
    "tests/fixtures/make_musiq_golden.py (needs torch + pyiqa, see its docstring)",
)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return read_golden(GOLDEN)


@pytest.fixture(scope="module")
def images(golden) -> list[np.ndarray]:
    return [golden[f"image_{i}"] for i in range(NUM_IMAGES)]


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return seeded_state_dict(musiq.torch_state_shapes(), SEED)


@pytest.fixture(scope="module")
def params(state, tmp_path_factory):
    """The seeded weights through the whole .pth path: pyiqa layout -> .pth -> loader."""
    path = tmp_path_factory.mktemp("musiq") / WEIGHTS_FILE
    torch_pickle.save(path, state)
    return load_musiq(path)


# The original checkpoint's names for pyiqa's, written out by hand from google-research's
# musiq/model code and pyiqa's scripts/convert_musiq_to_pth.py (independently of the loader's
# own mapping). Block children: the expected flax.nn auto names, and the other numbering the
# research notes guessed; the loader must accept both.
BLOCK_NAMES = {
    "vit_style": ("LayerNorm_0", "SelfAttention_1", "LayerNorm_2", "MlpBlock_3"),
    "per_class": ("LayerNorm_0", "SelfAttention_0", "LayerNorm_1", "MlpBlock_0"),
}


def original_npz_arrays(state: dict[str, np.ndarray], names: tuple[str, ...]) -> dict:
    """pyiqa's state dict as the original ``koniq_ckpt.npz`` holds it: flax layout under
    ``opt/target/``, plus optimiser state that the loader must ignore."""
    norm1, attention, norm2, mlp = names
    out = {}

    def put(name: str, value: np.ndarray) -> None:
        out["opt/target/" + name] = np.ascontiguousarray(value)
        out["opt/state/param_states/" + name + "/grad_ema"] = np.zeros(1, np.float32)

    for key, value in state.items():
        parts = key.split(".")
        leaf = {"weight": "scale" if "gn" in parts[-2] or "norm" in parts[-2] else "kernel"}.get(
            parts[-1], parts[-1]
        )
        if value.ndim == 4:  # conv OIHW -> HWIO
            value = value.transpose(2, 3, 1, 0)
        if parts[0] in ("conv_root", "gn_root"):
            put(f"{parts[0]}/{leaf}", value)
        elif parts[0] == "block1":
            put(f"block1/unit1/{parts[1]}/{leaf}", value)
        elif parts[0] in ("embedding", "head"):
            put(f"{parts[0]}/{leaf}", value.T if leaf == "kernel" else value)
        elif key == "transformer_encoder.posembed_input.position_emb":
            put("Transformer/posembed_input/pos_embedding", value)
        elif key == "transformer_encoder.scaleembed_input.scale_emb":
            put("Transformer/scaleembed_input/scale_embedding", value[None])
        elif key == "transformer_encoder.cls":
            put("Transformer/cls", value)
        elif parts[1] == "encoder_norm":
            put(f"Transformer/encoder_norm/{leaf}", value)
        else:  # transformer_encoder.transformer.encoderblock_i.<child>...
            block, child = parts[2], parts[3]
            prefix = f"Transformer/{block}"
            if child in ("norm1", "norm2"):
                put(f"{prefix}/{norm1 if child == 'norm1' else norm2}/{leaf}", value)
            elif child == "mlp":
                dense = {"fc1": "Dense_0", "fc2": "Dense_1"}[parts[4]]
                put(f"{prefix}/{mlp}/{dense}/{leaf}", value.T if leaf == "kernel" else value)
            else:  # attention.{query,key,value,out}.{weight,bias}
                proj = parts[4]
                if proj == "out":  # kernel (6, 64, 384), bias (384,)
                    value = value.T.reshape(6, 64, 384) if leaf == "kernel" else value
                else:  # kernel (384, 6, 64), bias (6, 64)
                    value = (
                        value.T.reshape(384, 6, 64) if leaf == "kernel" else value.reshape(6, 64)
                    )
                put(f"{prefix}/{attention}/{proj}/{leaf}", value)
    out["opt/state/step"] = np.array(120000)
    return out


def test_layout_and_regenerated_weights_equal_pyiqas(golden, state):
    """Our key layout is pyiqa's (248 tensors, 27,125,825 numbers), and every regenerated
    tensor sums to what torch held after load_state_dict."""
    assert int(golden["seed"]) == SEED
    assert list(golden["keys"]) == sorted(state)
    assert len(state) == 248 and sum(v.size for v in state.values()) == 27_125_825
    sums = np.array([state[k].astype(np.float64).sum() for k in sorted(state)])
    np.testing.assert_allclose(sums, golden["key_sums"], rtol=1e-9, atol=1e-9)


def test_torch_written_file_reads_back_exactly(state):
    loaded = torch_pickle.load(SUBSET)
    assert sorted(loaded) == sorted(SUBSET_KEYS)
    for key, value in loaded.items():
        assert value.dtype == np.float32, key
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_hashed_positions_match_pyiqa(golden):
    """Row (and column) hashes for 1..48 patches per side, torch's float32 nearest rule; and
    the research notes' hand values for a 3 x 12 patch grid."""
    table = golden["hash_rows"]
    for count in range(1, table.shape[0] + 1):
        np.testing.assert_array_equal(musiq.grid_index(count), table[count - 1, :count])
    np.testing.assert_array_equal(musiq.grid_index(3), [0, 3, 6])
    np.testing.assert_array_equal(musiq.grid_index(12), [0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9])
    assert musiq.hashed_positions(3, 12)[12 + 2] == 30 + 1


def test_patches_match_pyiqa(golden, images):
    """Every row of pyiqa's patch tensor: the spatial index, scale id and mask exactly, the
    pixels (c, h, w) through a random projection and a few whole patches.

    Measured on the 2-core CPU: whole patches max |diff| 7.7e-7, projections 2.7e-5 (of
    values up to 125; jax's cubic-pytorch resize vs torch's bicubic). Plain Keys cubic
    (a = -0.5) instead moves the score 6.7e-3 relative, antialiasing 3.2e-2, a rounded rather
    than floored hash index 8.7e-2.
    """
    proj = projection_matrix()
    for i, image in enumerate(images):
        patches, spatial, scale, mask = image_patches(image)
        meta = golden[f"meta_{i}"]
        assert patches.shape == (len(meta), 32, 32, 3) and patches.dtype == np.float32
        np.testing.assert_array_equal(spatial, meta[:, 0])
        np.testing.assert_array_equal(scale, meta[:, 1])
        np.testing.assert_array_equal(mask, meta[:, 2] > 0)
        h, w = image.shape[:2]
        assert len(meta) == 49 + 144 + -(-h // 32) * -(-w // 32)
        pixels = patches.transpose(0, 3, 1, 2).reshape(len(meta), -1)  # pyiqa's (c, h, w)
        rows = golden[f"sample_idx_{i}"]
        np.testing.assert_allclose(pixels[rows], golden[f"sample_patches_{i}"], atol=5e-6)
        np.testing.assert_allclose(pixels.astype(np.float64) @ proj, golden[f"proj_{i}"], atol=5e-4)


def test_scores_and_features_match_pyiqa(golden, images, params):
    """64 x 96 (upsampled), 100 x 100 and 300 x 200 (portrait), batched into one call padded to
    a common length (pyiqa runs them one by one).

    Measured max |ours - pyiqa| / max |pyiqa| on the 2-core CPU: scores 1.1e-6, cls features
    7.9e-7 (scores about -0.8, features up to 4.2). Each pyiqa convention undone moved the
    scores by (measured once): tanh GELU 2.8e-4, the resizes above far more; the biased std
    (1.3e-6) and -1e10 masking (1.4e-6) are below round-off here, as expected.
    """
    inputs = preprocess_musiq(images, length_multiple=64)
    assert inputs.patches.shape == (NUM_IMAGES, 320, 32, 32, 3)
    scores, features = musiq_forward(params, inputs)
    for name, got, want in (("scores", scores, golden["scores"]),
                            ("features", features, golden["features"])):  # fmt: skip
        assert got.shape == want.shape and got.dtype == np.float32
        rel = float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))
        print(f"{name}: max relative error {rel:.2e}")
        assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"
    # The convenience entry point pads and batches the same way (same compiled call).
    np.testing.assert_array_equal(musiq_scores(params, images), np.asarray(scores))


@pytest.mark.parametrize("naming", sorted(BLOCK_NAMES))
def test_original_npz_loads_the_same_params(naming, state, params, tmp_path):
    path = tmp_path / musiq.NPZ_FILE
    np.savez(path, **original_npz_arrays(state, BLOCK_NAMES[naming]))
    from_npz = flatten_params(load_musiq(path))
    from_pth = flatten_params(params)
    assert sorted(from_npz) == sorted(from_pth)
    for key, value in from_pth.items():
        np.testing.assert_array_equal(from_npz[key], value, err_msg=key)


def test_missing_file_names_the_path_and_where_to_get_it(tmp_path):
    for name in (WEIGHTS_FILE, musiq.NPZ_FILE):
        path = tmp_path / name
        with pytest.raises(FileNotFoundError) as err:
            load_musiq(path)
        message = str(err.value)
        assert str(path) in message and WEIGHTS_URL in message and NPZ_URL in message


def test_incomplete_file_names_the_file_and_the_missing_keys():
    """The torch-written subset is a real torch file but not the whole network."""
    with pytest.raises(ValueError, match="missing keys") as err:
        load_musiq(SUBSET)
    message = str(err.value)
    assert str(SUBSET) in message and "'block1.conv1.weight'" in message
    assert "(239 in all)" in message  # 248 tensors - the 9 in the subset


def test_wrong_keys_and_shapes_are_named(state):
    broken = {k: v for k, v in state.items() if k != "block1.conv2.weight"}
    broken["imagenet_head.weight"] = np.zeros((1000, 384), np.float32)  # imagenet_pretrain's
    broken["embedding.weight"] = np.zeros((384, 3072), np.float32)
    with pytest.raises(ValueError) as err:
        convert_musiq_state(broken, "some.pth")
    message = str(err.value)
    assert message.startswith("some.pth: ")
    assert "missing keys ['block1.conv2.weight']" in message
    assert "unexpected keys ['imagenet_head.weight']" in message
    assert "'embedding.weight' has shape (384, 3072), expected (384, 16384)" in message

    big_head = {k: v for k, v in state.items() if not k.startswith("head.")}
    big_head["head.0.weight"] = np.zeros((1000, 384), np.float32)
    with pytest.raises(ValueError, match="'head.0.weight' has 1000 outputs; expected one of 1"):
        convert_musiq_state(big_head, "some.pth")
    with pytest.raises(ValueError, match="has none") as err:
        convert_musiq_npz({"params/conv_root/kernel": np.zeros(1)}, "x.npz")
    assert "'params/conv_root/kernel'" in str(err.value)


def test_ava_head_gives_the_mean_of_the_distribution(state):
    """pyiqa's AVA layout (head.0.*, 10 outputs) loads into a 10-output MUSIQ, whose score is
    sum(softmax * (1..10)) (checked against numpy; the network is only traced)."""
    ava = {k: v for k, v in state.items() if not k.startswith("head.")}
    ava["head.0.weight"] = state["head.weight"].repeat(10, axis=0)
    ava["head.0.bias"] = np.arange(10, dtype=np.float32) / 10
    params = convert_musiq_state(ava, "ava.pth")
    assert musiq.num_classes_of(params) == 10 and params["head"]["kernel"].shape == (384, 10)
    length = 49 + 144 + 1  # a 20 x 30 image
    inputs = musiq.MusiqInputs(
        jax.ShapeDtypeStruct((1, length, 32, 32, 3), np.float32),
        *[jax.ShapeDtypeStruct((1, length), np.int32)] * 2,
        jax.ShapeDtypeStruct((1, length), np.bool_),
    )
    score, features = jax.eval_shape(musiq_forward, params, inputs)
    assert score.shape == (1,) and features.shape == (1, 384)
    logits = np.random.default_rng(0).standard_normal((4, 10))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = musiq.score_from_logits(logits.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), p @ np.arange(1, 11), rtol=1e-5)


def test_inputs_are_checked():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    as_uint8 = image_patches(image)
    as_float = image_patches(image.astype(np.float32) / 255.0)
    for a, b in zip(as_uint8, as_float):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected floats in"):
        image_patches(image.astype(np.float32) / 127.5 - 1.0)
    with pytest.raises(TypeError, match="uint8 or floats"):
        image_patches(image.astype(np.int32))
    with pytest.raises(ValueError, match=r"expected \[H, W, 3\]"):
        image_patches(image[..., :1])
    with pytest.raises(ValueError, match="wrap it in a list"):
        preprocess_musiq(image)
    with pytest.raises(ValueError, match=r"expected \[B, L, 32, 32, 3\]"):
        jax.eval_shape(
            musiq.MUSIQ().init,
            jax.random.key(0),
            musiq.MusiqInputs(
                np.zeros((1, 2, 16, 16, 3)), *[np.zeros((1, 2), int)] * 2, np.ones((1, 2), bool)
            ),  # fmt: skip
        )


def test_golden_versions_are_recorded(golden):
    versions = json.loads(str(golden["versions"]))
    assert versions["pyiqa"] == "0.1.16" and versions["torch"].startswith("2.")
