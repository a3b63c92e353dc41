"""The FID Inception-v3 (pytorch-fid's variant of TF's 2015-12-05 graph) as a Linen module,
loaded from pytorch-fid's own weights file without torch.

FID and KID are only comparable with published numbers when the features come from this exact
network, so it reproduces pytorch-fid 0.3.0's ``InceptionV3(use_fid_inception=True)`` block by
block (../shared/notes/pretrained_weights_and_samplers.md section 5) rather than torchvision's
Inception3, from which it differs in four places:

* every conv is conv (no bias) -> BatchNorm with eps 1e-3 (TF's value) -> ReLU;
* the 3x3 stride-1 average pools in front of the pool branch of Mixed_5b..5d, 6b..6e and 7b
  divide by the number of *unpadded* pixels under the window (TF's avg_pool; torch's default
  counts the zero padding);
* Mixed_7c's pool branch uses a 3x3 stride-1 *max* pool (padding never wins it), a quirk of the
  TF graph that the released weights were trained with;
* the classifier has 1008 outputs (TF's label set), not 1000.

Input conventions (pytorch-fid's, which we follow; ``preprocess_fid_images``): float images in
[0, 1] of any size, resized to 299 x 299 by bilinear interpolation with half-pixel centres
(torch's align_corners=False) and no antialiasing even when shrinking -- in JAX
``jax.image.resize(..., "linear", antialias=False)``, equal to torch's to ~1e-7 -- then mapped to
[-1, 1] by 2x - 1. torch-fidelity feeds the same network differently: uint8 images, a TF1-style
bilinear resize without the half-pixel offset (up to 0.12 apart from torch's at 256 -> 299)
and (v - 128) / 128, so its FID is not interchangeable with pytorch-fid's at the third digit;
numbers from this module are to be compared with pytorch-fid's.

Weights: ``pt_inception-2015-12-05-6726825d.pth`` from pytorch-fid's release (``WEIGHTS_URL``;
torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` holds the same keys), read by
``load_fid_inception`` through ga_jax.weights.torch_pickle. Nothing is ever downloaded here:
the file must be on disk. Parameters mirror torch's module names, so the key
``Mixed_6b.branch7x7_2.conv.weight`` [O, I, kh, kw] becomes
``params["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]`` [kh, kw, I, O] and
``....bn.{weight, bias, running_mean, running_var}`` become ``bn/{scale, bias, mean, var}``;
``fc.weight`` [1008, 2048] becomes ``fc/kernel`` [2048, 1008].

    params = load_fid_inception("weights/pt_inception-2015-12-05-6726825d.pth")
    feats = jax.jit(fid_features)(params, images)  # images [N, H, W, 3] in [0, 1] -> [N, 2048]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ga_jax.weights import torch_pickle
from ga_jax.weights.state_dict import (
    convert_state_dict,
    torch_kernel_shape,
    torch_kernel_to_linen,
)

FEATURE_DIM = 2048  # the global average pool, the FID/KID feature
NUM_LOGITS = 1008
INPUT_SIZE = 299
# Smallest input the valid-padded stem and the stride-2 reductions leave >= 1 pixel for.
MIN_SIZE = 75
BN_EPS = 1e-3

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
)
WEIGHTS_HINT = (
    f"Download it once by hand from {WEIGHTS_URL} (pytorch-fid's FID weights, 95 MB; "
    "torch-fidelity's weights-inception-2015-12-05-6726825d.pth is the same network) and pass "
    "its path; ga_jax never downloads weights."
)

Params = dict[str, Any]
PadPair = tuple[int, int]

# ----------------------------------------------------------------------------------------------
# Layers


class FrozenBatchNorm(nn.Module):
    """Inference BatchNorm with its running statistics held as ordinary parameters.

    The network is never trained here, so keeping mean/var in ``params`` (rather than Linen's
    ``batch_stats`` collection) lets one plain dict carry the whole file.
    """

    epsilon: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
        mean = self.param("mean", nn.initializers.zeros_init(), (c,), jnp.float32)
        var = self.param("var", nn.initializers.ones_init(), (c,), jnp.float32)
        return (x - mean) * (scale * lax.rsqrt(var + self.epsilon)) + bias


class BasicConv(nn.Module):
    """conv (no bias) -> FrozenBatchNorm -> ReLU; torch's ``BasicConv2d``."""

    features: int
    kernel: PadPair = (1, 1)
    strides: PadPair = (1, 1)
    padding: PadPair = (0, 0)  # symmetric zero padding per spatial axis
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.strides,
            padding=[(p, p) for p in self.padding],
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        return jax.nn.relu(FrozenBatchNorm(name="bn")(x))


def _max_pool_3x3(x: jax.Array, stride: int, padding: int) -> jax.Array:
    """3x3 max-pool of [N, H, W, C]; padding acts as -inf (torch's max_pool2d), sizes floor."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def _window_counts(n: int) -> np.ndarray:
    """How many of the 3 taps centred on each of n positions fall inside [0, n)."""
    i = np.arange(n)
    return np.minimum(i + 1, n - 1) - np.maximum(i - 1, 0) + 1


def _avg_pool_3x3_valid_only(x: jax.Array) -> jax.Array:
    """3x3 stride-1 'same' average pool dividing by the unpadded pixel count (TF's avg_pool,
    torch's count_include_pad=False); at a corner that is 4, not 9."""
    _, h, w, _ = x.shape
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    sums = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
    counts = np.outer(_window_counts(h), _window_counts(w)).astype(np.float32)
    return sums / counts[None, :, :, None]


def _concat(branches: list[jax.Array]) -> jax.Array:
    return jnp.concatenate(branches, axis=-1)  # channels in torch's torch.cat(..., 1) order


# ----------------------------------------------------------------------------------------------
# Blocks (torchvision's InceptionA..E layouts with the FID pool branches)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool (valid only) -> 1x1."""

    pool_features: int
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b1 = conv(64, name="branch1x1")(x)
        b5 = conv(48, name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, name="branch_pool")(_avg_pool_3x3_valid_only(x))
        return _concat([b1, b5, b3, bp])


class InceptionB(nn.Module):
    """Mixed_6a (grid 35 -> 17): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        bd = conv(64, name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
        return _concat([b3, bd, _max_pool_3x3(x, 2, 0)])


class InceptionC(nn.Module):
    """Mixed_6b..6e: 1x1 | 1x7/7x1 factorised 7x7 (once, twice) | avg-pool (valid only) -> 1x1."""

    channels_7x7: int
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        c7 = self.channels_7x7
        row = dict(kernel=(1, 7), padding=(0, 3))  # 1 x 7 along the width
        col = dict(kernel=(7, 1), padding=(3, 0))  # 7 x 1 along the height
        b1 = conv(192, name="branch1x1")(x)
        b7 = conv(c7, name="branch7x7_1")(x)
        b7 = conv(c7, **row, name="branch7x7_2")(b7)
        b7 = conv(192, **col, name="branch7x7_3")(b7)
        bd = conv(c7, name="branch7x7dbl_1")(x)
        bd = conv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = conv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = conv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = conv(192, **row, name="branch7x7dbl_5")(bd)
        bp = conv(192, name="branch_pool")(_avg_pool_3x3_valid_only(x))
        return _concat([b1, b7, bd, bp])


class InceptionD(nn.Module):
    """Mixed_7a (grid 17 -> 8): 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool 3x3/2."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        b3 = conv(192, name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
        b7 = conv(192, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
        return _concat([b3, b7, _max_pool_3x3(x, 2, 0)])


class InceptionE(nn.Module):
    """Mixed_7b ('avg', valid only) and Mixed_7c ('max'): 1x1 | 1x1 -> (1x3, 3x1) |
    1x1 -> 3x3 -> (1x3, 3x1) | 3x3 stride-1 pool -> 1x1."""

    pool: str  # "avg" or "max"
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        row = dict(kernel=(1, 3), padding=(0, 1))
        col = dict(kernel=(3, 1), padding=(1, 0))
        b1 = conv(320, name="branch1x1")(x)
        b3 = conv(384, name="branch3x3_1")(x)
        b3 = [conv(384, **row, name="branch3x3_2a")(b3), conv(384, **col, name="branch3x3_2b")(b3)]
        bd = conv(448, name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = [
            conv(384, **row, name="branch3x3dbl_3a")(bd),
            conv(384, **col, name="branch3x3dbl_3b")(bd),
        ]
        if self.pool == "avg":
            pooled = _avg_pool_3x3_valid_only(x)
        elif self.pool == "max":
            pooled = _max_pool_3x3(x, 1, 1)
        else:
            raise ValueError(f"InceptionE.pool: expected 'avg' or 'max', got {self.pool!r}")
        bp = conv(192, name="branch_pool")(pooled)
        return _concat([b1, *b3, *bd, bp])


# ----------------------------------------------------------------------------------------------
# The network


class FIDInceptionV3(nn.Module):
    """Network input [N, H, W, 3] in [-1, 1] (``preprocess_fid_images``' output; H, W >= 75,
    299 for FID) -> (pool features [N, 2048], logits [N, 1008] or None).

    The features are pytorch-fid's block-3 output (after the global average pool); the logits,
    computed only when ``with_logits``, are torchvision's ``fc(pool)`` with its bias
    (torch-fidelity's Inception Score uses them without the bias, "logits_unbiased").
    ``precision`` defaults to HIGHEST so that features do not depend on the backend's default
    matmul precision (TF32 on NVIDIA GPUs, one bf16 pass on TPUs); on CPU it changes nothing.
    Everything runs in float32.
    """

    with_logits: bool = False
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"FIDInceptionV3: expected images [N, H, W, 3] with H, W >= {MIN_SIZE} "
                f"({INPUT_SIZE} for FID; see preprocess_fid_images), got {x.shape}"
            )
        conv = functools.partial(BasicConv, precision=self.precision)
        p = dict(precision=self.precision)
        x = x.astype(jnp.float32)
        x = conv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)  # 299 -> 149
        x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)  # -> 147
        x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2, 0)  # -> 73
        x = conv(80, name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)  # -> 71
        x = _max_pool_3x3(x, 2, 0)  # -> 35
        x = InceptionA(32, **p, name="Mixed_5b")(x)  # 256 channels
        x = InceptionA(64, **p, name="Mixed_5c")(x)  # 288
        x = InceptionA(64, **p, name="Mixed_5d")(x)  # 288
        x = InceptionB(**p, name="Mixed_6a")(x)  # 17 x 17 x 768
        x = InceptionC(128, **p, name="Mixed_6b")(x)  # channels_7x7 128, 160, 160, 192
        x = InceptionC(160, **p, name="Mixed_6c")(x)
        x = InceptionC(160, **p, name="Mixed_6d")(x)
        x = InceptionC(192, **p, name="Mixed_6e")(x)
        x = InceptionD(**p, name="Mixed_7a")(x)  # 8 x 8 x 1280
        x = InceptionE("avg", **p, name="Mixed_7b")(x)  # 2048
        x = InceptionE("max", **p, name="Mixed_7c")(x)
        features = jnp.mean(x, axis=(1, 2))
        if not self.with_logits:
            return features, None
        dense = nn.Dense(NUM_LOGITS, precision=self.precision, name="fc")
        return features, dense(features)


def preprocess_fid_images(images: jax.Array) -> jax.Array:
    """pytorch-fid's input transform: images [N, H, W, 3] float in [0, 1], any size ->
    [N, 299, 299, 3] in [-1, 1].

    Bilinear resize to 299 with half-pixel centres and no antialiasing (torch's
    ``F.interpolate(mode="bilinear", align_corners=False)``; shrinking large images therefore
    aliases, exactly as in pytorch-fid), skipped when already 299 (torch copies then too), then
    2x - 1. Integer images are refused rather than silently mis-scaled: divide uint8 by 255.
    """
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"preprocess_fid_images: images: expected [N, H, W, 3] floats in [0, 1], "
            f"got shape {images.shape}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(
            f"preprocess_fid_images: images: expected floats in [0, 1], got {images.dtype} "
            "(divide 8-bit images by 255 first)"
        )
    x = images.astype(jnp.float32)
    n, h, w, c = x.shape
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        x = jax.image.resize(x, (n, INPUT_SIZE, INPUT_SIZE, c), "linear", antialias=False)
    return 2.0 * x - 1.0


def fid_features(
    params: Params,
    images: jax.Array,
    with_logits: bool = False,
    precision: lax.PrecisionLike = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array | None]:
    """(pool features [N, 2048], logits [N, 1008] or None) of images [N, H, W, 3] in [0, 1],
    as pytorch-fid computes them (``preprocess_fid_images`` then ``FIDInceptionV3``).
    Jit-able with ``with_logits`` and ``precision`` static (``static_argnames`` or
    functools.partial); ``params`` from ``load_fid_inception``."""
    model = FIDInceptionV3(with_logits=with_logits, precision=precision)
    return model.apply({"params": params}, preprocess_fid_images(images))


# ----------------------------------------------------------------------------------------------
# Weights


_TORCH_LEAF = {
    ("conv", "kernel"): "weight",
    ("bn", "scale"): "weight",
    ("bn", "bias"): "bias",
    ("bn", "mean"): "running_mean",
    ("bn", "var"): "running_var",
    ("fc", "kernel"): "weight",
    ("fc", "bias"): "bias",
}


def _torch_layout(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """(torch key, torch shape) of our parameter at ``path`` with ``shape``."""
    key = ".".join((*path[:-1], _TORCH_LEAF[path[-2:]]))
    return key, torch_kernel_shape(path, shape)


@functools.cache
def _param_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """torch key -> (our param path, torch shape), for every tensor but num_batches_tracked."""
    model = FIDInceptionV3(with_logits=True)
    dummy = jax.ShapeDtypeStruct((1, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy)["params"]
    layout = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        path = tuple(k.key for k in key_path)
        torch_key, torch_shape = _torch_layout(path, tuple(leaf.shape))
        layout[torch_key] = (path, torch_shape)
    return layout


def torch_state_shapes() -> dict[str, tuple[int, ...]]:
    """pytorch-fid's state-dict key -> shape for every tensor the network uses (the BN
    ``num_batches_tracked`` counters, which the file also holds, are left out): the layout
    ``load_fid_inception`` expects, 472 tensors, 23.9M numbers."""
    return {k: shape for k, (_, shape) in _param_layout().items()}


def convert_fid_inception_state(state: Mapping[str, Any], source: str = "state dict") -> Params:
    """Our params (jnp float32) from pytorch-fid's Inception state dict (numpy values).

    BatchNorm ``num_batches_tracked`` counters are ignored (they do not affect inference).
    Raises ValueError naming ``source`` and the keys for missing, unexpected or mis-shaped
    tensors, so a torchvision (1000-class) or a truncated file is refused, not half-loaded.
    """
    return convert_state_dict(
        state,
        _param_layout(),
        source=source,
        expected=f"pytorch-fid's FID Inception state dict ({WEIGHTS_FILE})",
        transform=torch_kernel_to_linen,
    )


def load_fid_inception(path: str | os.PathLike) -> Params:
    """Params for ``FIDInceptionV3``/``fid_features`` from pytorch-fid's weights file
    (``pt_inception-2015-12-05-6726825d.pth``; zip or legacy torch format), read without torch.

    Raises FileNotFoundError naming the path and where to get the file when it is absent
    (nothing is downloaded), and ValueError naming the file and the keys when it is not the
    FID Inception state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FID Inception weights not found. {WEIGHTS_HINT}")
    return convert_fid_inception_state(torch_pickle.load(path), str(path))
