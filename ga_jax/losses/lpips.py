"""LPIPS-VGG (v0.1) perceptual distance in JAX, with weights converted from the public torch files.

Pure functions over a params pytree rather than a Linen module: the network is frozen, its
weights come from files, and a plain dict of arrays drops into ``jax.jit``/``jax.grad`` of the
VAE loss as a constant (close over it, or pass it as an argument that is not differentiated).

    params = load_lpips_params("weights/lpips_vgg.npz")
    d = lpips_distance(params, x, y)  # x, y: [..., H, W, 3] in [0, 1] -> d: [...]

The forward pass matches ``lpips.LPIPS(net='vgg', version='0.1')(x, y, normalize=True)`` of
the ``lpips`` 0.1.4 package (../shared/notes/pretrained_weights_and_samplers.md section 6):

1. Images in [0, 1] are mapped to [-1, 1] by 2x - 1 (lpips' ``normalize=True``), then the
   ScalingLayer (x - shift) / scale.
2. VGG16 ``features``: 3x3 convs (pad 1) + ReLU, 2x2 stride-2 max-pools between the 5 stages
   (odd sizes floor, as in torch). Taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
3. Per tap, unit-normalise along channels: f / (||f||_2 + 1e-10).
4. (f_x - f_y)^2, the 1x1 linear head (C_l non-negative weights, no bias), spatial mean.
5. Sum over the 5 taps.

Everything is float32; the convs use the backend's default matmul precision unless told
(see ``lpips_distance``). Images must be at least 16x16 (the 4 pools leave >= 1 pixel).

Weights: torchvision ``vgg16-397923af.pth`` (trunk) and lpips ``weights/v0.1/vgg.pth`` (heads),
converted once by ``python -m launch.convert_lpips`` (``convert_lpips_weights``) into one npz
with these keys (``param_shapes()``):

    vgg/conv{s}_{i}/kernel  [3, 3, C_in, C_out]  HWIO (torch's OIHW transposed)
    vgg/conv{s}_{i}/bias    [C_out]
    lin/lin{l}              [C_l]                torch's (1, C_l, 1, 1) squeezed
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ga_jax.weights import torch_pickle
from ga_jax.weights.model_files import flatten_params, unflatten_params

# Output channels of each conv of each VGG16 stage; a tap follows the last conv of each stage.
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
TAP_CHANNELS: tuple[int, ...] = tuple(stage[-1] for stage in VGG16_STAGES)
# lpips ScalingLayer: ImageNet mean/std re-expressed for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
MIN_SIZE = 16

CONV_NAMES: tuple[str, ...] = tuple(
    f"conv{s + 1}_{i + 1}" for s, stage in enumerate(VGG16_STAGES) for i in range(len(stage))
)
# Index of each conv in torchvision's vgg16().features (ReLUs and pools take the others).
TORCH_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

CONVERT_HINT = (
    "Make it once with\n"
    "  python -m launch.convert_lpips --vgg=vgg16-397923af.pth --lin=vgg.pth --out={path}\n"
    "where vgg16-397923af.pth is torchvision's VGG16 "
    "(https://download.pytorch.org/models/vgg16-397923af.pth) and vgg.pth is "
    "lpips/weights/v0.1/vgg.pth from the lpips 0.1.4 wheel "
    "(pip download lpips==0.1.4 --no-deps, then unzip the wheel)."
)

Params = dict[str, Any]  # {"vgg": {conv name: {"kernel", "bias"}}, "lin": {"lin{l}": [C_l]}}


def _conv_channels() -> list[tuple[str, int, int]]:
    """(name, C_in, C_out) of the 13 convs in order."""
    out, c_in = [], 3
    names = iter(CONV_NAMES)
    for stage in VGG16_STAGES:
        for c_out in stage:
            out.append((next(names), c_in, c_out))
            c_in = c_out
    return out


def param_shapes() -> dict[str, tuple[int, ...]]:
    """Flat npz key -> shape of every LPIPS-VGG parameter (the npz layout)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, c_in, c_out in _conv_channels():
        shapes[f"vgg/{name}/kernel"] = (3, 3, c_in, c_out)
        shapes[f"vgg/{name}/bias"] = (c_out,)
    for l, c in enumerate(TAP_CHANNELS):
        shapes[f"lin/lin{l}"] = (c,)
    return shapes


# ----------------------------------------------------------------------------------------------
# Weights


def _take(state: Mapping[str, Any], key: str, shape: tuple[int, ...], source: str) -> np.ndarray:
    if key not in state:
        raise ValueError(f"{source}: key '{key}' is missing; expected shape {shape}")
    value = np.asarray(state[key])
    if value.shape != shape:
        raise ValueError(f"{source}: key '{key}' has shape {value.shape}, expected {shape}")
    return value.astype(np.float32)


def torch_to_lpips_params(
    vgg_state: Mapping[str, Any],
    lin_state: Mapping[str, Any],
    vgg_source: str = "vgg state dict",
    lin_source: str = "lin state dict",
) -> dict[str, np.ndarray]:
    """Flat npz dict from torchvision VGG16 and lpips v0.1 head state dicts (numpy values).

    vgg_state: ``features.{0,2,...,28}.{weight [C_out, C_in, 3, 3], bias [C_out]}``; other keys
      (the classifier) are ignored. lin_state: ``lin{l}.model.1.weight [1, C_l, 1, 1]``.
    Errors name the source, the key and the expected shape.
    """
    flat: dict[str, np.ndarray] = {}
    for index, (name, c_in, c_out) in zip(TORCH_CONV_INDICES, _conv_channels()):
        w = _take(vgg_state, f"features.{index}.weight", (c_out, c_in, 3, 3), vgg_source)
        flat[f"vgg/{name}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # OIHW->HWIO
        flat[f"vgg/{name}/bias"] = _take(vgg_state, f"features.{index}.bias", (c_out,), vgg_source)
    for l, c in enumerate(TAP_CHANNELS):
        w = _take(lin_state, f"lin{l}.model.1.weight", (1, c, 1, 1), lin_source)
        if (w < 0).any():
            # lpips trains its heads clamped to >= 0; a negative weight means a wrong file.
            raise ValueError(f"{lin_source}: 'lin{l}.model.1.weight' has negative entries")
        flat[f"lin/lin{l}"] = w.reshape(c)
    return flat


def save_lpips_params(path: str | os.PathLike, params: Mapping[str, Any]) -> None:
    """Write params (nested or flat with npz keys) to ``path`` as an npz of float32 arrays."""
    flat = {k: np.asarray(v, np.float32) for k, v in flatten_params(params).items()}
    with open(path, "wb") as f:  # a file object stops np.savez from appending ".npz"
        np.savez(f, **flat)


def convert_lpips_weights(
    vgg_path: str | os.PathLike, lin_path: str | os.PathLike, out_path: str | os.PathLike
) -> dict[str, np.ndarray]:
    """Read the two public torch files (no torch needed), check them, write the npz; returns it."""
    vgg_state = torch_pickle.load(vgg_path)
    lin_state = torch_pickle.load(lin_path)
    flat = torch_to_lpips_params(vgg_state, lin_state, str(vgg_path), str(lin_path))
    save_lpips_params(out_path, flat)
    return flat


def load_lpips_params(path: str | os.PathLike) -> Params:
    """Nested params (jnp float32) from an npz written by ``convert_lpips_weights``.

    Raises FileNotFoundError (saying how to make the file) when ``path`` does not exist, and
    ValueError naming the key and the expected shape for a missing, extra or mis-shaped key.
    """
    path = Path(path)
    if not path.is_file():
        hint = CONVERT_HINT.format(path=path)
        raise FileNotFoundError(f"{path}: LPIPS-VGG weights not found. {hint}")
    try:
        with np.load(path) as npz:
            flat = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        hint = CONVERT_HINT.format(path=path)
        raise ValueError(f"{path}: not a readable npz ({e}). {hint}") from e
    shapes = param_shapes()
    for key, shape in shapes.items():
        if key not in flat:
            raise ValueError(f"{path}: key '{key}' is missing; expected shape {shape}")
        if flat[key].shape != shape:
            raise ValueError(f"{path}: key '{key}' has shape {flat[key].shape}, expected {shape}")
    extra = sorted(set(flat) - set(shapes))
    if extra:
        raise ValueError(f"{path}: unexpected keys {extra}; not an LPIPS-VGG npz")
    return unflatten_params({k: jnp.asarray(flat[k], jnp.float32) for k in shapes})


def random_lpips_params(key: jax.Array) -> Params:
    """Random params of the right shapes (He-normal kernels, small biases, |N(0,1)|/C heads).

    For tests and tiny configs that must run without the pretrained files; the distance is
    then a valid (symmetric, zero on equal inputs) but perceptually meaningless metric. The
    14.7M numbers are drawn by numpy from a seed taken from ``key``: jax.random took ~15 s for
    them on a 2-core CPU, numpy well under one.
    """
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    flat = {}
    for name, c_in, c_out in _conv_channels():
        std = np.sqrt(2.0 / (9 * c_in))  # He init keeps activations O(1) through 13 ReLU convs
        flat[f"vgg/{name}/kernel"] = std * rng.standard_normal((3, 3, c_in, c_out), np.float32)
        flat[f"vgg/{name}/bias"] = 0.01 * rng.standard_normal((c_out,), np.float32)
    for l, c in enumerate(TAP_CHANNELS):
        flat[f"lin/lin{l}"] = np.abs(rng.standard_normal((c,), np.float32)) / c
    return unflatten_params({k: jnp.asarray(v, jnp.float32) for k, v in flat.items()})


# ----------------------------------------------------------------------------------------------
# Forward


def _conv_relu(x: jax.Array, p: Mapping[str, jax.Array], precision: lax.PrecisionLike):
    y = lax.conv_general_dilated(
        x,
        p["kernel"],
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )
    return jax.nn.relu(y + p["bias"])


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max-pool of [N, H, W, C]; a trailing odd row/column is dropped (as torch).

    A reshape + max rather than lax.reduce_window: same values, and its gradient (an
    elementwise mask) beat select_and_scatter by ~12% in fwd+bwd on an H100. Exact ties share
    the gradient instead of torch's first-index pick; ties of non-zero ReLU outputs have
    probability zero, and zeros get no gradient through the ReLU anyway.
    """
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def lpips_features(
    params: Params, images: jax.Array, precision: lax.PrecisionLike = None
) -> list[jax.Array]:
    """The 5 VGG16 taps of images [N, H, W, 3] in [0, 1].

    Returns [N, H, W, 64], [N, H/2, W/2, 128], [N, H/4, W/4, 256], [N, H/8, W/8, 512],
    [N, H/16, W/16, 512] (sizes floored), in the params' dtype (float32 as loaded; float64
    params give a float64 pass, used by tests), before unit normalisation.
    """
    dtype = params["vgg"]["conv1_1"]["kernel"].dtype  # float32 as loaded
    x = 2.0 * images.astype(dtype) - 1.0
    x = (x - jnp.asarray(SHIFT, dtype)) / jnp.asarray(SCALE, dtype)
    names = iter(CONV_NAMES)
    taps = []
    for s, stage in enumerate(VGG16_STAGES):
        if s:
            x = _max_pool(x)
        for _ in stage:
            x = _conv_relu(x, params["vgg"][next(names)], precision)
        taps.append(x)
    return taps


def _unit_normalize(f: jax.Array) -> jax.Array:
    """f / (||f||_2 + eps) over channels [..., C].

    ReLU features are often exactly zero at a pixel; sqrt'(0) is infinite and would turn the
    gradient into NaN (inf * 0), so the norm is taken through a double where: same value,
    zero gradient at zero.
    """
    sq = jnp.sum(f * f, axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return f / (norm + EPS)


def lpips_distance(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """LPIPS-VGG v0.1 distance between images x, y [..., H, W, 3] in [0, 1] -> [...].

    x and y broadcast against each other. The result is float32 (the params' dtype), 0 for
    x == y (with a zero gradient) and symmetric up to round-off (~1e-9 relative measured).
    Jit-able and differentiable in x, y and params.
    ``precision`` is the convs' matmul precision. None (the backend default) is TF32 on an
    H100: 8x faster than ``lax.Precision.HIGHEST`` and within 2.4e-5 relative of the float64
    ``lpips`` package (HIGHEST: 2.8e-7), fine for the training loss and for LPIPS reported to
    3 decimals. On TPUs the default is a single bf16 pass (~1e-3); pass HIGHEST there for
    reported numbers. On CPU both are true float32.
    """
    x, y = jnp.broadcast_arrays(jnp.asarray(x), jnp.asarray(y))
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"lpips_distance: expected images [..., H, W, 3], got {x.shape}")
    if min(x.shape[-3:-1]) < MIN_SIZE:
        raise ValueError(
            f"lpips_distance: images must be at least {MIN_SIZE}x{MIN_SIZE}, got {x.shape}"
        )
    lead = x.shape[:-3]
    xb = x.reshape((-1,) + x.shape[-3:])
    yb = y.reshape((-1,) + y.shape[-3:])
    n = xb.shape[0]
    # One trunk pass over both sets: half the launches, same maths per image.
    taps = lpips_features(params, jnp.concatenate([xb, yb]), precision)
    total = 0.0
    for l, f in enumerate(taps):
        fx, fy = f[:n], f[n:]
        unit = _unit_normalize(f)
        # Where a pixel's features agree exactly, so do their unit vectors; say so explicitly.
        # Left to itself XLA:CPU fuses the normalisation into each half's consumer differently
        # (1 ulp apart), which made LPIPS(x, x) ~1e-18 with a ~1e-12 gradient instead of 0.
        # The true gradient there is 0 as well, so masking loses nothing.
        same = jnp.all(fx == fy, axis=-1, keepdims=True)
        diff = jnp.where(same, 0.0, unit[:n] - unit[n:]) ** 2  # [N, h, w, C_l]
        head = jnp.sum(diff * params["lin"][f"lin{l}"], axis=-1)  # the 1x1 conv, C_l -> 1
        total = total + jnp.mean(head, axis=(1, 2))
    return total.reshape(lead)
