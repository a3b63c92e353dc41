"""Our Linen DINOv2 against transformers' FlaxDinov2Model on the same random weights, and the
with-registers safetensors reader (token order, errors)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn
from safetensors.numpy import save_file
from transformers import Dinov2Config, FlaxDinov2Model

from ga_jax.models.conditioning.build import build_conditioner
from ga_jax.models.conditioning.dinov2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Dinov2,
    convert_hf_state,
)

WIDTH, HEADS, DEPTH, GRID = 32, 4, 2, 4  # native size 56 px


def hf_model(grid=GRID, seed=0):
    config = Dinov2Config(
        hidden_size=WIDTH, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
        intermediate_size=4 * WIDTH, image_size=14 * grid, patch_size=14,
        layerscale_value=1.0,  # FlaxDinov2 applies it twice (notes 2b): keep 1.0
    )  # fmt: skip
    return FlaxDinov2Model(config, seed=seed)


def torch_layout(flax_params) -> dict:
    """FlaxDinov2Model's parameters under transformers' (torch) state-dict names/layouts."""
    p = nn.unbox(flax_params)
    e = p["embeddings"]
    state = {
        "embeddings.cls_token": e["cls_token"],
        "embeddings.mask_token": e["mask_token"],
        "embeddings.position_embeddings": e["position_embeddings"],
        "embeddings.patch_embeddings.projection.weight": np.transpose(
            e["patch_embeddings"]["projection"]["kernel"], (3, 2, 0, 1)
        ),
        "embeddings.patch_embeddings.projection.bias": e["patch_embeddings"]["projection"]["bias"],
        "layernorm.weight": p["layernorm"]["scale"],
        "layernorm.bias": p["layernorm"]["bias"],
    }
    for i, layer in p["encoder"]["layer"].items():
        pre = f"encoder.layer.{i}."
        att = layer["attention"]
        for name in ("query", "key", "value"):
            state[pre + f"attention.attention.{name}.weight"] = att["attention"][name]["kernel"].T
            state[pre + f"attention.attention.{name}.bias"] = att["attention"][name]["bias"]
        state[pre + "attention.output.dense.weight"] = att["output"]["dense"]["kernel"].T
        state[pre + "attention.output.dense.bias"] = att["output"]["dense"]["bias"]
        for n in ("norm1", "norm2"):
            state[pre + f"{n}.weight"] = layer[n]["scale"]
            state[pre + f"{n}.bias"] = layer[n]["bias"]
        for n in ("fc1", "fc2"):
            state[pre + f"mlp.{n}.weight"] = layer["mlp"][n]["kernel"].T
            state[pre + f"mlp.{n}.bias"] = layer["mlp"][n]["bias"]
        state[pre + "layer_scale1.lambda1"] = layer["layer_scale1"]["lambda1"]
        state[pre + "layer_scale2.lambda1"] = layer["layer_scale2"]["lambda1"]
    return {k: np.asarray(v, np.float32) for k, v in state.items()}


def perturbed(params, seed=3):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


def hf_tokens(model, params, images):
    pixels = (images - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return model(np.transpose(pixels, (0, 3, 1, 2)), params=params).last_hidden_state


@pytest.mark.parametrize("scan", [True, False])
def test_equals_flax_dinov2_at_the_native_size(scan):
    hf = hf_model()
    params = perturbed(hf.params)  # layer scales and tokens away from their init values
    ours = Dinov2(WIDTH, DEPTH, HEADS, num_registers=0, grid=GRID)
    if not scan:
        ours = ours.clone(options=ours.options.replace(scan_layers=False))
    converted = convert_hf_state(torch_layout(params), ours, "test")
    images = np.random.default_rng(0).uniform(size=(2, 56, 56, 3)).astype(np.float32)
    want = hf_tokens(hf, params, images)
    got = ours.apply({"params": converted}, images, method=Dinov2.tokens)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    patches, cls = ours.apply({"params": converted}, images)
    np.testing.assert_array_equal(cls, got[:, 0])
    np.testing.assert_array_equal(patches, got[:, 1:])


def test_interpolated_positions_equal_a_model_built_at_that_size():
    """At 84 px (grid 6) we resize the stored 4 x 4 grid; a FlaxDinov2Model built for 84 px
    whose position table is that resized grid (so it interpolates nothing) must agree."""
    hf = hf_model()
    params = perturbed(hf.params)
    ours = Dinov2(WIDTH, DEPTH, HEADS, num_registers=0, grid=GRID)
    converted = convert_hf_state(torch_layout(params), ours, "test")
    pos = np.asarray(params["embeddings"]["position_embeddings"])
    grid = jax.image.resize(pos[0, 1:].reshape(GRID, GRID, WIDTH), (6, 6, WIDTH), "cubic",
                            antialias=True).reshape(1, 36, WIDTH)  # fmt: skip
    big = hf_model(grid=6)
    big_params = jax.tree.map(lambda x: x, params)
    big_params["embeddings"]["position_embeddings"] = jnp.concatenate([pos[:, :1], grid], 1)
    images = np.random.default_rng(1).uniform(size=(1, 84, 84, 3)).astype(np.float32)
    np.testing.assert_allclose(
        ours.apply({"params": converted}, images, method=Dinov2.tokens),
        hf_tokens(big, big_params, images),
        atol=1e-5,
        rtol=1e-5,
    )


def with_registers_state(rng, registers=4, depth=0):
    d = WIDTH
    state = {
        "embeddings.cls_token": rng.normal(size=(1, 1, d)),
        "embeddings.mask_token": np.zeros((1, d)),
        "embeddings.register_tokens": rng.normal(size=(1, registers, d)) * 5,
        "embeddings.position_embeddings": rng.normal(size=(1, 1 + GRID * GRID, d)),
        "embeddings.patch_embeddings.projection.weight": rng.normal(size=(d, 3, 14, 14)) * 0.1,
        "embeddings.patch_embeddings.projection.bias": rng.normal(size=(d,)),
        "layernorm.weight": rng.uniform(0.5, 1.5, size=(d,)),
        "layernorm.bias": rng.normal(size=(d,)),
    }
    return {k: v.astype(np.float32) for k, v in state.items()}


def test_reads_the_with_registers_layout_in_token_order(tmp_path):
    """Depth 0: the tokens are the final norm of [CLS + pos_0, R_1..R_4, patches + pos], which
    the test computes by hand from the file's arrays."""
    rng = np.random.default_rng(0)
    state = with_registers_state(rng)
    path = tmp_path / "model.safetensors"
    save_file({"dinov2." + k: v for k, v in state.items()}, str(path))  # prefix accepted
    cond = build_conditioner(ml_collections.ConfigDict(dict(
        name="dinov2", weights=str(path), preset="tiny", depth=0, image_size=56)))  # fmt: skip
    params = cond.load()
    images = rng.uniform(size=(1, 56, 56, 3)).astype(np.float32)
    tokens = cond.module.apply({"params": params}, images, method=Dinov2.tokens)
    assert tokens.shape == (1, 1 + 4 + 16, WIDTH)

    def ln(x):
        y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
        return y * state["layernorm.weight"] + state["layernorm.bias"]

    x = (images[0].astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
    w = state["embeddings.patch_embeddings.projection.weight"].astype(np.float64)
    patches = (
        np.stack(
            [
                np.einsum("ijc,ocij->o", x[r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14], w)
                for r in range(GRID)  # row-major patch order
                for c in range(GRID)
            ]
        )
        + state["embeddings.patch_embeddings.projection.bias"]
    )
    pos = state["embeddings.position_embeddings"][0]
    want = np.concatenate([
        ln(state["embeddings.cls_token"][0] + pos[:1]),
        ln(state["embeddings.register_tokens"][0]),  # no position embedding
        ln(patches + pos[1:]),
    ])  # fmt: skip
    np.testing.assert_allclose(tokens[0], want, atol=2e-4, rtol=1e-4)
    patch_tokens, cls = cond.apply(params, cond.prepare(images=(images * 255).astype(np.uint8)))
    assert patch_tokens.shape == (1, 16, WIDTH) and cls.shape == (1, WIDTH)


def test_bad_files_name_the_file_and_key(tmp_path):
    cfg = ml_collections.ConfigDict(dict(name="dinov2", weights=str(tmp_path / "none.st"),
                                         preset="tiny", depth=0, image_size=56))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="none.st: no such weights file"):
        build_conditioner(cfg).load()
    state = with_registers_state(np.random.default_rng(0))
    del state["layernorm.bias"]
    save_file(state, str(tmp_path / "a.st"))
    cfg.weights = str(tmp_path / "a.st")
    with pytest.raises(ValueError, match=r"a.st: missing key 'layernorm.bias'"):
        build_conditioner(cfg).load()
    state = with_registers_state(np.random.default_rng(0), registers=2)
    save_file(state, str(tmp_path / "b.st"))
    cfg.weights = str(tmp_path / "b.st")
    with pytest.raises(ValueError, match=r"'embeddings.register_tokens': expected shape"):
        build_conditioner(cfg).load()
    (tmp_path / "c.st").write_bytes(b"garbage")
    cfg.weights = str(tmp_path / "c.st")
    with pytest.raises(ValueError, match="c.st: unreadable safetensors"):
        build_conditioner(cfg).load()
    cfg.weights = ""
    with pytest.raises(ValueError, match="condition.weights: dinov2 needs"):
        build_conditioner(cfg).load()
    with pytest.raises(ValueError, match="divisible by 14"):
        Dinov2(WIDTH, 0, HEADS, grid=GRID).init(jax.random.key(0), jnp.zeros((1, 50, 50, 3)))


def test_large_preset_has_the_public_checkpoint_size():
    """facebook/dinov2-with-registers-large holds 304,372,736 parameters (notes 2b, counted on
    the meta device); all but the mask token (1,024, used only for masked training) are ours."""
    from ga_jax.models.conditioning.dinov2 import PRESETS

    model = Dinov2(**PRESETS["large"])
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 518, 518, 3)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes["params"])))
    assert count == 304_372_736 - 1024
