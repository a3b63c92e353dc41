"""LPIPS-VGG: against a plain numpy float64 reference, metric properties, gradients, weight files.

Random weights are written in the public files' torch key layout (torchvision
``features.{i}.weight`` OIHW, lpips ``lin{l}.model.1.weight`` (1, C, 1, 1)) with
torch_pickle.save, converted by launch.convert_lpips, loaded back; the reference reads the torch
arrays directly, so layout conversion is checked too. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_jax.losses import lpips
from ga_jax.weights import torch_pickle
from launch import convert_lpips

# VGG16 `features` layout: "C" conv 3x3 + ReLU with that many outputs, "M" max-pool 2x2.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
TAPS = (3, 8, 15, 22, 29)  # features index of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
# True float32 convs where the comparison is tight (on CPU the default already is; on GPU the
# default TF32 is ~2e-5 relative off).
HIGHEST = jax.lax.Precision.HIGHEST


def random_torch_states(seed: int) -> tuple[dict, dict]:
    """torchvision-VGG16 and lpips-v0.1 state dicts with random (He-scaled) weights."""
    rng = np.random.default_rng(seed)
    vgg, c_in, index = {}, 3, 0
    for item in VGG16_CFG:
        if item == "M":
            index += 1
            continue
        std = np.sqrt(2.0 / (9 * c_in))
        vgg[f"features.{index}.weight"] = (std * rng.normal(size=(item, c_in, 3, 3))).astype(
            np.float32
        )
        vgg[f"features.{index}.bias"] = (0.05 * rng.normal(size=item)).astype(np.float32)
        c_in, index = item, index + 2
    vgg["classifier.0.weight"] = np.zeros((4, 3), np.float32)  # ignored by the converter
    lin = {
        f"lin{l}.model.1.weight": np.abs(rng.normal(size=(1, c, 1, 1))).astype(np.float32) / c
        for l, c in enumerate((64, 128, 256, 512, 512))
    }
    return vgg, lin


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[dict, dict, dict]:
    """(torch vgg state, torch lin state, params loaded through files and the converter CLI)."""
    root = tmp_path_factory.mktemp("lpips")
    vgg, lin = random_torch_states(0)
    torch_pickle.save(root / "vgg16-397923af.pth", vgg)
    torch_pickle.save(root / "vgg.pth", lin)
    out = root / "lpips_vgg.npz"
    argv = [f"--vgg={root / 'vgg16-397923af.pth'}", f"--lin={root / 'vgg.pth'}", f"--out={out}"]
    assert convert_lpips.main(argv) == 0
    return vgg, lin, lpips.load_lpips_params(out)


# ----------------------------------------------------------------------------------------------
# Independent numpy float64 reference (NHWC activations, torch-layout weights)


class NumpyLPIPS:
    """LPIPS v0.1 written from the lpips 0.1.4 source, float64: conv by im2col, pool by reshape.

    Weights are converted once from torch layout (OIHW) to im2col matrices; call with
    x, y [N, H, W, 3] in [0, 1] -> [N].
    """

    def __init__(self, vgg: dict, lin: dict):
        self.layers = []  # ("M",) or ("C", wmat [9 * Ci, Co], bias [Co], is_tap)
        index = 0
        for item in VGG16_CFG:
            if item == "M":
                self.layers.append(("M",))
                index += 1
                continue
            w = vgg[f"features.{index}.weight"].astype(np.float64)  # [Co, Ci, 3, 3]
            wmat = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])  # rows (i, j, ci) as im2col
            bias = vgg[f"features.{index}.bias"].astype(np.float64)
            self.layers.append(("C", wmat, bias, index + 1 in TAPS))
            index += 2
        self.lin = [lin[f"lin{l}.model.1.weight"].reshape(-1).astype(np.float64) for l in range(5)]

    @staticmethod
    def conv3x3_relu(x: np.ndarray, wmat: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Cross-correlation, zero padding 1, x [N, H, W, Ci]."""
        n, h, w, ci = x.shape
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = np.stack([xp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=3)
        return np.maximum(cols.reshape(n, h, w, 9 * ci) @ wmat + bias, 0.0)

    @staticmethod
    def max_pool(x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        x = x[:, : h // 2 * 2, : w // 2 * 2]
        return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    def taps(self, img: np.ndarray) -> list[np.ndarray]:
        shift = np.array([-0.030, -0.088, -0.188])
        scale = np.array([0.458, 0.448, 0.450])
        h = ((2 * img.astype(np.float64) - 1) - shift) / scale
        out = []
        for layer in self.layers:
            if layer[0] == "M":
                h = self.max_pool(h)
                continue
            h = self.conv3x3_relu(h, layer[1], layer[2])
            if layer[3]:
                out.append(h)
        return out

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        total = np.zeros(x.shape[0])
        for w, fx, fy in zip(self.lin, self.taps(x), self.taps(y)):
            fx = fx / (np.sqrt((fx**2).sum(-1, keepdims=True)) + 1e-10)
            fy = fy / (np.sqrt((fy**2).sum(-1, keepdims=True)) + 1e-10)
            total += (((fx - fy) ** 2) @ w).mean(axis=(1, 2))
        return total


def test_reference_tap_sizes_match():
    # Guards the reference itself: 5 taps with the documented channels and floored sizes.
    ref = NumpyLPIPS(*random_torch_states(1))
    shapes = [t.shape for t in ref.taps(np.random.default_rng(0).uniform(size=(1, 32, 40, 3)))]
    assert shapes == [(1, 32, 40, 64), (1, 16, 20, 128), (1, 8, 10, 256), (1, 4, 5, 512),
                      (1, 2, 2, 512)]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Forward


def test_matches_numpy_reference(weights):
    vgg, lin, params = weights
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(2, 32, 40, 3)).astype(np.float32)
    y = np.clip(x + 0.2 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    got = np.asarray(jax.jit(lambda *a: lpips.lpips_distance(*a, precision=HIGHEST))(params, x, y))
    want = NumpyLPIPS(vgg, lin)(x, y)
    assert got.shape == (2,) and got.dtype == np.float32
    # Measured max relative error (float32 vs float64): 3.5e-8 on CPU, 2.8e-7 on an H100.
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert (want > 1e-3).all()  # the comparison is not between two near-zero numbers


def test_zero_on_equal_inputs_symmetric_and_batched(weights):
    _, _, params = weights
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(2, 3, 16, 24, 3)).astype(np.float32)
    y = rng.uniform(size=(2, 3, 16, 24, 3)).astype(np.float32)
    f = jax.jit(lpips.lpips_distance)
    d_xy, d_yx = np.asarray(f(params, x, y)), np.asarray(f(params, y, x))
    assert d_xy.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(f(params, x, x)), 0.0)
    np.testing.assert_allclose(d_xy, d_yx, rtol=1e-6)  # measured: equal or ~1e-9 apart
    assert (d_xy > 0).all()
    # Leading dims are only a batch: each entry equals the unbatched call, and y broadcasts.
    np.testing.assert_allclose(np.asarray(f(params, x[1, 2], y[1, 2])), d_xy[1, 2], rtol=1e-6)
    d_bcast = np.asarray(f(params, x, y[0, 0]))
    np.testing.assert_allclose(d_bcast[0, 0], d_xy[0, 0], rtol=1e-6)


def test_rejects_bad_shapes(weights):
    _, _, params = weights
    with pytest.raises(ValueError, match=r"at least 16x16"):
        lpips.lpips_distance(params, jnp.zeros((8, 32, 3)), jnp.zeros((8, 32, 3)))
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 3\]"):
        lpips.lpips_distance(params, jnp.zeros((16, 16, 4)), jnp.zeros((16, 16, 4)))


# ----------------------------------------------------------------------------------------------
# Gradients


def test_gradient_matches_float64_finite_differences(weights):
    vgg, lin, params = weights
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 0.9, size=(1, 16, 16, 3))
    y = rng.uniform(0.1, 0.9, size=(1, 16, 16, 3))
    grad_x, grad_y = jax.jit(
        jax.grad(lambda a, b: lpips.lpips_distance(params, a, b, precision=HIGHEST).sum(), (0, 1))
    )(x.astype(np.float32), y.astype(np.float32))
    assert np.isfinite(grad_x).all() and np.isfinite(grad_y).all()
    # Directional derivatives along random directions, central differences on the float64
    # reference. The step must be tiny: thousands of ReLU/max-pool kinks sit near any input and
    # a crossed kink biases the difference (by ~1% at h = 1e-5, and still at h = 1e-6 for one
    # of these directions). At h = 1e-7 all six agree with a float64 JAX gradient to ~1e-8
    # (float64 roundoff ~1e-11 / 1e-7 relative).
    h = 1e-7
    np_lpips = NumpyLPIPS(vgg, lin)
    for seed in range(3):
        v = np.random.default_rng(10 + seed).normal(size=x.shape)
        fd_x = (np_lpips(x + h * v, y) - np_lpips(x - h * v, y))[0] / (2 * h)
        fd_y = (np_lpips(x, y + h * v) - np_lpips(x, y - h * v))[0] / (2 * h)
        # Measured: the float32 gradient is within 5e-6 relative of the differences.
        np.testing.assert_allclose(np.sum(np.asarray(grad_x) * v), fd_x, rtol=1e-4)
        np.testing.assert_allclose(np.sum(np.asarray(grad_y) * v), fd_y, rtol=1e-4)


def test_gradient_finite_with_dead_features_and_zero_at_equal_inputs(weights):
    _, _, params = weights
    # A very negative bias kills every relu5_3 unit: its features are exactly zero, where a
    # naive sqrt-norm would make the gradient NaN.
    dead = jax.tree.map(lambda a: a, params)
    dead["vgg"]["conv5_3"] = dict(params["vgg"]["conv5_3"], bias=jnp.full((512,), -1e4))
    x = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 16, 16, 3)), jnp.float32)
    y = jnp.flip(x, axis=1)
    grad_fn = jax.jit(jax.grad(lambda p, a, b: lpips.lpips_distance(p, a, b).sum(), (0, 1)))
    g_params, g_x = grad_fn(dead, x, y)
    assert np.isfinite(np.asarray(g_x)).all()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(g_params))
    assert np.abs(np.asarray(g_x)).max() > 0
    # At x == y the distance is at its minimum (0): the gradient vanishes.
    _, g_equal = grad_fn(params, x, x)
    np.testing.assert_array_equal(np.asarray(g_equal), 0.0)


# ----------------------------------------------------------------------------------------------
# Weight files


def test_converted_layout(weights):
    vgg, lin, params = weights
    np.testing.assert_array_equal(
        params["vgg"]["conv2_1"]["kernel"], vgg["features.5.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(params["vgg"]["conv5_3"]["bias"], vgg["features.28.bias"])
    np.testing.assert_array_equal(params["lin"]["lin3"], lin["lin3.model.1.weight"].reshape(512))
    flat = {f"{a}/{b}": v for a, d in params.items() for b, v in d.items()}
    assert len(flat) == 13 + 5 and len(lpips.param_shapes()) == 2 * 13 + 5


def test_random_params_work_without_files():
    params = lpips.random_lpips_params(jax.random.key(0))
    x = jnp.linspace(0, 1, 16 * 16 * 3).reshape(16, 16, 3)
    d = jax.jit(lpips.lpips_distance)(params, x, 1 - x)
    assert d.shape == () and float(d) > 0


def test_load_errors_name_the_file_key_and_shape(weights, tmp_path: Path):
    missing = tmp_path / "absent" / "lpips_vgg.npz"
    with pytest.raises(FileNotFoundError) as info:
        lpips.load_lpips_params(missing)
    assert str(missing) in str(info.value) and "python -m launch.convert_lpips" in str(info.value)

    _, _, params = weights
    flat = {f"vgg/{n}/{k}": v for n, d in params["vgg"].items() for k, v in d.items()}
    flat.update({f"lin/{n}": v for n, v in params["lin"].items()})
    save = functools.partial(lpips.save_lpips_params, tmp_path / "bad.npz")

    save({k: v for k, v in flat.items() if k != "vgg/conv3_2/bias"})
    with pytest.raises(ValueError, match=r"bad\.npz: key 'vgg/conv3_2/bias' is missing.*\(256,\)"):
        lpips.load_lpips_params(tmp_path / "bad.npz")
    save(dict(flat, **{"lin/lin1": np.zeros((1, 128, 1, 1))}))
    with pytest.raises(
        ValueError, match=r"'lin/lin1' has shape \(1, 128, 1, 1\), expected \(128,\)"
    ):
        lpips.load_lpips_params(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable npz"):
        lpips.load_lpips_params(tmp_path / "junk.npz")


def test_converter_errors_name_the_torch_file_and_key(tmp_path: Path):
    vgg, lin = random_torch_states(6)
    del vgg["features.12.weight"]
    torch_pickle.save(tmp_path / "vgg16.pth", vgg)
    torch_pickle.save(tmp_path / "lin.pth", lin)
    argv = [
        f"--vgg={tmp_path / 'vgg16.pth'}",
        f"--lin={tmp_path / 'lin.pth'}",
        f"--out={tmp_path / 'x.npz'}",
    ]
    with pytest.raises(ValueError, match=r"vgg16\.pth: key 'features\.12\.weight' is missing; "
                       r"expected shape \(256, 256, 3, 3\)"):  # fmt: skip
        convert_lpips.main(argv)
    assert not (tmp_path / "x.npz").exists()
    lin["lin2.model.1.weight"] = -lin["lin2.model.1.weight"]
    vgg, _ = random_torch_states(6)
    torch_pickle.save(tmp_path / "vgg16.pth", vgg)
    torch_pickle.save(tmp_path / "lin.pth", lin)
    with pytest.raises(ValueError, match=r"lin\.pth: 'lin2\.model\.1\.weight' has negative"):
        convert_lpips.main(argv)
