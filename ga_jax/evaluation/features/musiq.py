"""MUSIQ, the multi-scale image quality transformer (Ke et al., ICCV 2021), as a Linen module
fed the way pyiqa feeds it, loaded from pyiqa's ``.pth`` or the original ``.npz`` without torch.

No-reference image quality numbers (GaussianAnything's "MUSIQ 65.17") are only comparable when
they come from this network with the same preprocessing, and the number papers quote is, most
likely, pyiqa's ``create_metric("musiq")`` (KonIQ weights). So this module reproduces pyiqa
0.1.16's ``MUSIQ`` (chaofengc/IQA-PyTorch, ``pyiqa/archs/musiq_arch.py`` and
``pyiqa/data/multiscale_trans_util.py``) rather than google-research's original flax.nn code,
from which pyiqa differs in four places (../shared/notes/pretrained_weights_and_samplers.md
section 3). We follow pyiqa in all four:

* resizing: pyiqa resizes with torch's bicubic interpolation (align_corners=False, no
  antialiasing, Keys a = -0.75) -- in JAX ``jax.image.resize(..., "cubic-pytorch",
  antialias=False)``, equal to torch's to ~1e-6; the original uses TF's antialiased Gaussian
  resize (radius 1.5, sigma 0.5), which jax.image does not offer;
* GELU: exact (erf) in pyiqa, the tanh approximation (``jax.nn.gelu``'s default) in the
  original;
* attention mask: pyiqa *replaces* the logit of every (query, key) pair with a padding token
  in it by -1e3, the original adds -1e10 (the cls output, the only one read, is the same
  either way unless a valid logit is below about -900);
* weight standardisation: pyiqa divides by the unbiased (n - 1) standard deviation plus 1e-5,
  the original by the biased one plus 1e-5. GroupNorm follows every such conv, so only the
  epsilons feel it.

Input (``preprocess_musiq``, pyiqa's eval-mode forward): an image [H, W, 3], uint8 (divided by
255 in float32, torchvision's ``to_tensor``) or float in [0, 1], is mapped to [-1, 1] by
(x - 0.5) * 2 and represented at three scales: resized (aspect kept) so that its longer side is
224, then 384 (sides ``round(side * L / max(H, W))``, Python's round), and at its native
resolution. Each scale is cut into 32 x 32 patches with TF "SAME" zero padding (ceil(side / 32)
patches per side, zero = mid-grey, top/left get the smaller half). Every patch carries a hashed
spatial index ``row_hash * 10 + col_hash`` with ``row_hash(i) = floor(i * (10 / count_h))``
(torch's nearest interpolation of arange(10), float32), a scale id (0 for 224, 1 for 384, 2
native) and a mask. The 224 and 384 scales are padded with all-zero patches (index 0, scale 0,
mask 0) to ceil(L / 32)^2 = 49 and 144 patches; the native scale keeps all its patches, so the
sequence length grows with the image (263 for 300 x 200).

Network (``MUSIQ``): each patch goes through a ResNet stem -- StdConv 7x7/2 (64) -> GroupNorm
(32 groups, eps 1e-6) -> ReLU -> max-pool 3x3/2 SAME -> one bottleneck unit (StdConv 1x1 64,
3x3 64, 1x1 256 and a 1x1 256 projection, each followed by GroupNorm eps 1e-4; ReLU(branch +
projection)) -- whose 8 x 8 x 256 output, flattened (h, w, c), is embedded by a Dense
16384 -> 384. Position embedding (100 x 384, by hashed index) and scale embedding (3 x 384)
are added, a cls token is prepended (mask 1), then 14 pre-LayerNorm blocks (eps 1e-6; 6-head
self-attention with the mask above; MLP 384 -> 1152 -> 384), a final LayerNorm
(``encoder_norm``), and ``head`` on the cls token. One output (KonIQ, SPAQ, PaQ2PiQ) is the
MOS itself; ten (AVA) are softmaxed and the score is sum(p_i * i), i = 1..10. Everything runs
in float32 with HIGHEST matmul precision by default.

Weights, two formats, both read without torch and nothing downloaded (``load_musiq``):

* pyiqa's state dicts, e.g. ``musiq_koniq_ckpt-e95806b9.pth`` (``WEIGHTS_URL``; also
  ``musiq_spaq_ckpt-358bb6af.pth``, ``musiq_paq2piq_ckpt-364c0c84.pth`` and
  ``musiq_ava_ckpt-e8d3f067.pth``, whose 10-way head is ``head.0.*``), read through
  ga_jax.weights.torch_pickle. Parameters mirror pyiqa's module names:
  ``transformer_encoder.transformer.encoderblock_3.attention.query.weight`` [out, in] becomes
  ``params["transformer_encoder"]["transformer"]["encoderblock_3"]["attention"]["query"]
  ["kernel"]`` [in, out], conv weights OIHW become HWIO kernels, norm weights ``scale``.
* google-research's original ``koniq_ckpt.npz`` (``NPZ_URL``; likewise ``spaq_ckpt.npz``,
  ``paq2piq_ckpt.npz``, ``ava_ckpt.npz``): flat '/'-joined names whose parameters sit under
  ``opt/target/`` (the rest is optimiser state), flax layout already, so the mapping is names and
  reshapes only (attention kernels [384, 6, 64] -> [384, 384], out [6, 64, 384] -> [384, 384],
  scale_embedding [1, 3, 384] -> [3, 384]). The names outside the encoder blocks are confirmed
  by the original code and pyiqa's converter (``conv_root``, ``gn_root``,
  ``block1/unit1/{conv,gn}{1,2,3,_proj}``, ``embedding``, ``Transformer/posembed_input/
  pos_embedding``, ``Transformer/scaleembed_input/scale_embedding``, ``Transformer/cls``,
  ``Transformer/encoder_norm``, ``head``). Inside ``Transformer/encoderblock_{i}`` the children
  carry old flax.nn automatic names that no source we have lists -- *expected, check on the
  first real load*: by the numbering of the ViT checkpoints of the same flax.nn era
  (``LayerNorm_0``, ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``) we
  expect ``LayerNorm_0``, ``SelfAttention_1``, ``LayerNorm_2``, ``MlpBlock_3/Dense_{0,1}``.
  The loader does not rely on the numbers: like pyiqa's converter (which matched by substring
  and sorted order), it takes the block's two ``LayerNorm_*`` children in numeric order as
  norm1 and norm2, its one ``*Attention*`` child and its one ``MlpBlock_*`` child.

    params = load_musiq("weights/musiq_koniq_ckpt-e95806b9.pth")   # or koniq_ckpt.npz
    scores = musiq_scores(params, [image_a, image_b])  # [H, W, 3] uint8 each -> [2] MOS
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ga_jax.weights import torch_pickle
from ga_jax.weights.state_dict import (
    convert_state_dict,
    some_keys,
    torch_kernel_shape,
    torch_kernel_to_linen,
)

PATCH_SIZE = 32
LONGER_SIDES = (224, 384)  # scale ids 0 and 1; the native resolution is scale id 2
NUM_SCALES = 3
GRID_SIZE = 10  # hashed spatial position grid G: G * G position embeddings
HIDDEN_SIZE = 384
NUM_HEADS = 6
MLP_DIM = 1152
NUM_LAYERS = 14
STEM_WIDTH = 64  # the bottleneck unit outputs 4x this
TOKEN_DIM = (PATCH_SIZE // 4) ** 2 * STEM_WIDTH * 4  # 8 * 8 * 256 = 16384
HEAD_SIZES = {1: "MOS (KonIQ, SPAQ, PaQ2PiQ)", 10: "score distribution (AVA)"}
MASK_FILL = -1e3  # pyiqa's masked_fill value (the original adds -1e10)
WS_EPS = 1e-5
NPZ_PREFIX = "opt/target/"

WEIGHTS_FILE = "musiq_koniq_ckpt-e95806b9.pth"
WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/" + WEIGHTS_FILE
NPZ_FILE = "koniq_ckpt.npz"
NPZ_URL = "https://storage.googleapis.com/gresearch/musiq/" + NPZ_FILE
WEIGHTS_HINT = (
    f"Download it once by hand: pyiqa's KonIQ weights from {WEIGHTS_URL} (what "
    "pyiqa.create_metric('musiq') loads; also on github.com/chaofengc/IQA-PyTorch/releases, "
    f"v0.1-weights) or google-research's original {NPZ_URL}, and pass its path; "
    "ga_jax never downloads weights."
)

Params = dict[str, Any]


class MusiqInputs(NamedTuple):
    """A batch of multi-scale patch sequences (``preprocess_musiq``), padded to one length L
    with masked all-zero patches. A pytree, so it passes through jax.jit."""

    patches: jax.Array  # [B, L, 32, 32, 3] float32, pixels in [-1, 1] (bicubic may overshoot)
    spatial: jax.Array  # [B, L] int32 hashed spatial index in [0, 100)
    scale: jax.Array  # [B, L] int32 scale id: 0 (224), 1 (384), 2 (native)
    mask: jax.Array  # [B, L] bool, False for padding patches


# ----------------------------------------------------------------------------------------------
# Preprocessing (pyiqa's get_multiscale_patches, one image at a time, on the host)


def scaled_size(height: int, width: int, longer_side: int) -> tuple[int, int]:
    """(height, width) after the aspect-preserving resize to ``longer_side``; Python's round
    (ties to even) of the float product, as pyiqa computes it."""
    ratio = longer_side / max(height, width)
    return round(height * ratio), round(width * ratio)


def grid_index(count: int) -> np.ndarray:
    """int32 [count]: the hashed grid coordinate (0..9) of each of ``count`` patch rows (or
    columns): torch's nearest interpolation of arange(10) to ``count`` samples,
    floor(i * float32(10 / count)) in float32 (the original: TF1's nearest resize, the same
    rule)."""
    step = np.float32(GRID_SIZE) / np.float32(count)
    index = np.floor(np.arange(count, dtype=np.float32) * step).astype(np.int32)
    return np.minimum(index, GRID_SIZE - 1)


def hashed_positions(count_h: int, count_w: int) -> np.ndarray:
    """int32 [count_h * count_w]: row_hash * 10 + col_hash of the patches in row-major order."""
    return (grid_index(count_h)[:, None] * GRID_SIZE + grid_index(count_w)[None, :]).reshape(-1)


def extract_patches(image: np.ndarray) -> np.ndarray:
    """float32 [count_h * count_w, 32, 32, 3] non-overlapping patches of image [H, W, 3], in
    row-major patch order, after TF "SAME" zero padding to whole patches (pyiqa's
    ``extract_image_patches``: the top/left pad is the smaller half)."""
    h, w, c = image.shape
    count_h, count_w = math.ceil(h / PATCH_SIZE), math.ceil(w / PATCH_SIZE)
    pad_h, pad_w = count_h * PATCH_SIZE - h, count_w * PATCH_SIZE - w
    padded = np.pad(
        image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    patches = padded.reshape(count_h, PATCH_SIZE, count_w, PATCH_SIZE, c)
    return patches.transpose(0, 2, 1, 3, 4).reshape(-1, PATCH_SIZE, PATCH_SIZE, c)


def _as_unit_float(image: Any) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] from a uint8 or float [0, 1] image (checked)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"preprocess_musiq: image: expected [H, W, 3] (uint8, or floats in [0, 1]), "
            f"got shape {image.shape}"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)  # torchvision's to_tensor
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(
            f"preprocess_musiq: image: expected uint8 or floats in [0, 1], got {image.dtype}"
        )
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-6 or hi > 1 + 1e-6:  # pyiqa's own input check
        raise ValueError(
            f"preprocess_musiq: image: expected floats in [0, 1], got values in "
            f"[{lo:.4g}, {hi:.4g}] (divide 8-bit images by 255; do not pass [-1, 1] images)"
        )
    return image


def image_patches(image: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pyiqa's multi-scale patch sequence of one image [H, W, 3] (uint8, or floats in [0, 1]):
    (patches float32 [L, 32, 32, 3], spatial int32 [L], scale int32 [L], mask bool [L]) with
    L = 49 + 144 + ceil(H / 32) * ceil(W / 32). Row l of pyiqa's patch tensor is
    ``patches[l].transpose(2, 0, 1).ravel()`` (it stores (c, h, w)) followed by spatial[l],
    scale[l] and mask[l]."""
    x = (_as_unit_float(image) - np.float32(0.5)) * np.float32(2.0)
    h, w, _ = x.shape
    parts = []
    for scale_id, longer in enumerate(sorted(LONGER_SIDES)):
        rh, rw = scaled_size(h, w, longer)
        if min(rh, rw) < 1:
            raise ValueError(
                f"preprocess_musiq: image: {h} x {w} is too elongated, its shorter side "
                f"rounds to 0 at the {longer}-pixel scale"
            )
        resized = jax.image.resize(x, (rh, rw, 3), "cubic-pytorch", antialias=False)
        parts.append(
            (np.asarray(resized, np.float32), scale_id, math.ceil(longer / PATCH_SIZE) ** 2)
        )
    parts.append((x, len(LONGER_SIDES), None))  # native resolution: every patch
    out = []
    for img, scale_id, max_len in parts:
        rh, rw, _ = img.shape
        patches = extract_patches(img)
        n = len(patches)
        spatial = hashed_positions(math.ceil(rh / PATCH_SIZE), math.ceil(rw / PATCH_SIZE))
        scale = np.full(n, scale_id, np.int32)
        mask = np.ones(n, bool)
        if max_len is not None:  # pad (never cut: at most ceil(L / 32)^2 patches) with zeros
            pad = max_len - n
            patches = np.concatenate([patches, np.zeros((pad, *patches.shape[1:]), np.float32)])
            spatial, scale, mask = (np.pad(a, (0, pad)) for a in (spatial, scale, mask))
        out.append((patches, spatial, scale, mask))
    return tuple(np.concatenate(arrays) for arrays in zip(*out))  # type: ignore[return-value]


def preprocess_musiq(images: Sequence[Any], length_multiple: int = 1) -> MusiqInputs:
    """A batch for ``MUSIQ`` from images of any sizes (each [H, W, 3], uint8 or floats in
    [0, 1]; a sequence or an [N, H, W, 3] array), made by ``image_patches`` one by one.

    Sequences of different lengths are padded with masked zero patches to the longest, rounded
    up to a multiple of ``length_multiple`` (so that jit-compiled calls are shared between
    image sizes). A masked patch changes no valid token: its attention logits are replaced by
    -1e3, whose softmax weight underflows to exactly 0 in float32 (unless every valid logit of
    a row is below about -900).
    """
    if isinstance(images, np.ndarray | jax.Array) and np.ndim(images) == 3:
        raise ValueError(
            "preprocess_musiq: images: expected a sequence of [H, W, 3] images or an "
            f"[N, H, W, 3] array, got one array of shape {np.shape(images)} (wrap it in a list)"
        )
    if len(images) == 0:
        raise ValueError("preprocess_musiq: images: expected at least one image, got none")
    seqs = [image_patches(image) for image in images]
    longest = max(len(s[0]) for s in seqs)
    length = -(-longest // length_multiple) * length_multiple
    padded = [
        [np.concatenate([a, np.zeros((length - len(a), *a.shape[1:]), a.dtype)]) for a in s]
        for s in seqs
    ]
    patches, spatial, scale, mask = (np.stack(arrays) for arrays in zip(*padded))
    return MusiqInputs(
        jnp.asarray(patches), jnp.asarray(spatial), jnp.asarray(scale), jnp.asarray(mask)
    )


# ----------------------------------------------------------------------------------------------
# Layers


def standardize_weight(kernel: jax.Array) -> jax.Array:
    """pyiqa's weight standardisation of an HWIO kernel, per output channel over (H, W, I):
    (w - mean) / (std + 1e-5) with the unbiased (n - 1) std (the original: biased)."""
    centred = kernel - jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
    return centred / (jnp.std(centred, axis=(0, 1, 2), ddof=1, keepdims=True) + WS_EPS)


class StdConv(nn.Module):
    """Weight-standardised conv, no bias, TF "SAME" zero padding (pyiqa's ``StdConv``)."""

    features: int
    kernel_size: int
    strides: int = 1
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        return lax.conv_general_dilated(
            x,
            standardize_weight(kernel),
            (self.strides, self.strides),
            "SAME",  # lo = total // 2, as pyiqa's exact_padding_2d
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )


def _group_norm(epsilon: float, name: str) -> nn.GroupNorm:
    # Two-pass variance (torch's), not E[x^2] - E[x]^2.
    return nn.GroupNorm(num_groups=32, epsilon=epsilon, use_fast_variance=False, name=name)


def _layer_norm(name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name=name)


class Bottleneck(nn.Module):
    """The stem's one ResNet unit (``block1``; the original's ``block1/unit1``): 64 -> 256."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(StdConv, precision=self.precision)
        identity = _group_norm(1e-4, "gn_proj")(conv(STEM_WIDTH * 4, 1, name="conv_proj")(x))
        x = jax.nn.relu(_group_norm(1e-4, "gn1")(conv(STEM_WIDTH, 1, name="conv1")(x)))
        x = jax.nn.relu(_group_norm(1e-4, "gn2")(conv(STEM_WIDTH, 3, name="conv2")(x)))
        x = _group_norm(1e-4, "gn3")(conv(STEM_WIDTH * 4, 1, name="conv3")(x))
        return jax.nn.relu(x + identity)


class MultiHeadAttention(nn.Module):
    """pyiqa's attention: query/key/value/out Dense 384 -> 384 (6 heads of 64, head h in
    features h*64 .. h*64+63); a logit with a masked query or key is replaced by -1e3."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        b, n, c = x.shape
        dense = functools.partial(nn.Dense, c, precision=self.precision)
        heads = lambda t: t.reshape(b, n, NUM_HEADS, c // NUM_HEADS)  # noqa: E731
        q = heads(dense(name="query")(x))
        k = heads(dense(name="key")(x))
        v = heads(dense(name="value")(x))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision)
        logits = logits * (c // NUM_HEADS) ** -0.5  # scaled after the product, as pyiqa
        pair = mask[:, None, :, None] & mask[:, None, None, :]
        weights = jax.nn.softmax(jnp.where(pair, logits, MASK_FILL), axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=self.precision)
        return dense(name="out")(out.reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 384 -> 1152, exact GELU, fc2 1152 -> 384."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        x = nn.Dense(MLP_DIM, precision=self.precision, name="fc1")(x)
        x = jax.nn.gelu(x, approximate=False)  # pyiqa's nn.GELU(); the original: tanh
        return nn.Dense(dim, precision=self.precision, name="fc2")(x)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(norm1(x)), then + mlp(norm2(.))."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        p = dict(precision=self.precision)
        x = x + MultiHeadAttention(**p, name="attention")(_layer_norm("norm1")(x), mask)
        return x + Mlp(**p, name="mlp")(_layer_norm("norm2")(x))


class EncoderStack(nn.Module):
    """pyiqa's ``transformer`` ModuleDict: the 14 blocks ``encoderblock_{i}``."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        for i in range(NUM_LAYERS):
            x = EncoderBlock(self.precision, name=f"encoderblock_{i}")(x, mask)
        return x


class _Embedding(nn.Module):
    """One learned table (``param_name`` [*shape]) looked up by an int index and added."""

    param_name: str
    shape: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jax.Array, index: jax.Array) -> jax.Array:
        init = nn.initializers.normal(stddev=0.02)
        table = self.param(self.param_name, init, self.shape, jnp.float32)
        return x + jnp.take(table.reshape(-1, x.shape[-1]), index, axis=0)


class TransformerEncoder(nn.Module):
    """Embeddings, cls token, the block stack and ``encoder_norm``: tokens [B, L, 384] ->
    [B, 1 + L, 384] (token 0 is the cls token)."""

    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(
        self, x: jax.Array, spatial: jax.Array, scale: jax.Array, mask: jax.Array
    ) -> jax.Array:
        b, _, c = x.shape
        x = _Embedding("position_emb", (1, GRID_SIZE**2, c), name="posembed_input")(x, spatial)
        x = _Embedding("scale_emb", (NUM_SCALES, c), name="scaleembed_input")(x, scale)
        cls = self.param("cls", nn.initializers.zeros_init(), (1, 1, c), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c)), x], axis=1)
        mask = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
        x = EncoderStack(self.precision, name="transformer")(x, mask)
        return _layer_norm("encoder_norm")(x)


# ----------------------------------------------------------------------------------------------
# The network


class MUSIQ(nn.Module):
    """``MusiqInputs`` (B sequences of L patches; ``preprocess_musiq``) -> (scores [B],
    features [B, 384]).

    The features are ``encoder_norm``'s output at the cls token (what ``head`` reads); the
    score is ``head``'s single output (``num_classes`` 1: the MOS) or, for ``num_classes`` 10
    (AVA), the mean of the softmaxed distribution over 1..10. ``precision`` defaults to
    HIGHEST so that the scores do not depend on the backend's default matmul precision (TF32
    on NVIDIA GPUs, one bf16 pass on TPUs); on CPU it changes nothing. Float32 throughout.
    """

    num_classes: int = 1
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, inputs: MusiqInputs) -> tuple[jax.Array, jax.Array]:
        patches = jnp.asarray(inputs.patches, jnp.float32)
        if patches.ndim != 5 or patches.shape[2:] != (PATCH_SIZE, PATCH_SIZE, 3):
            raise ValueError(
                f"MUSIQ: inputs.patches: expected [B, L, {PATCH_SIZE}, {PATCH_SIZE}, 3] "
                f"(see preprocess_musiq), got {patches.shape}"
            )
        b, length = patches.shape[:2]
        x = patches.reshape(b * length, PATCH_SIZE, PATCH_SIZE, 3)
        x = StdConv(STEM_WIDTH, 7, 2, self.precision, name="conv_root")(x)  # 16 x 16
        x = jax.nn.relu(_group_norm(1e-6, "gn_root")(x))
        # pyiqa pads with zeros, -inf here: the same after the ReLU.
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")  # 8 x 8
        x = Bottleneck(self.precision, name="block1")(x)  # 8 x 8 x 256
        x = x.reshape(b, length, TOKEN_DIM)  # (h, w, c) order, as TF and pyiqa
        x = nn.Dense(HIDDEN_SIZE, precision=self.precision, name="embedding")(x)
        x = TransformerEncoder(self.precision, name="transformer_encoder")(
            x, inputs.spatial, inputs.scale, jnp.asarray(inputs.mask, bool)
        )
        features = x[:, 0]
        logits = nn.Dense(self.num_classes, precision=self.precision, name="head")(features)
        return score_from_logits(logits), features


def score_from_logits(logits: jax.Array) -> jax.Array:
    """Scores [B] from head outputs [B, C]: the output itself for C = 1 (a MOS), else the mean
    of softmax(logits) over the bins 1..C (AVA; pyiqa's ``dist_to_mos``)."""
    if logits.shape[-1] == 1:
        return logits[:, 0]
    bins = jnp.arange(1, logits.shape[-1] + 1, dtype=jnp.float32)
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * bins, axis=-1)


def num_classes_of(params: Params) -> int:
    """The head's output count: 1 (a MOS) or 10 (AVA's distribution)."""
    return int(params["head"]["kernel"].shape[-1])


@functools.partial(jax.jit, static_argnames="precision")
def musiq_forward(
    params: Params, inputs: MusiqInputs, precision: lax.PrecisionLike = lax.Precision.HIGHEST
) -> tuple[jax.Array, jax.Array]:
    """Jitted ``MUSIQ`` with its head size read from ``params``: (scores [B], features
    [B, 384]) of a ``preprocess_musiq`` batch. Compiled once per (B, L)."""
    return MUSIQ(num_classes_of(params), precision).apply({"params": params}, inputs)


def musiq_scores(
    params: Params,
    images: Sequence[Any],
    batch_size: int = 8,
    length_multiple: int = 64,
    precision: lax.PrecisionLike = lax.Precision.HIGHEST,
) -> np.ndarray:
    """float32 [N] MUSIQ scores of N images of any sizes ([H, W, 3] each, uint8 or floats in
    [0, 1]), as pyiqa's ``create_metric("musiq")`` scores them one by one (KonIQ MOS, about
    0..100, with the KonIQ weights). ``params`` from ``load_musiq``.

    Images go through ``preprocess_musiq`` on the host ``batch_size`` at a time, their
    sequences padded (masked) to a multiple of ``length_multiple`` so that the jit-compiled
    network is reused across image sizes; padding does not change a score beyond float32
    round-off.
    """
    scores = []
    for start in range(0, len(images), batch_size):
        inputs = preprocess_musiq(images[start : start + batch_size], length_multiple)
        scores.append(np.asarray(musiq_forward(params, inputs, precision)[0]))
    return np.concatenate(scores) if scores else np.zeros((0,), np.float32)


# ----------------------------------------------------------------------------------------------
# Weights: pyiqa's .pth


_TORCH_LEAF = {"kernel": "weight", "scale": "weight"}  # bias, position_emb, ... keep theirs


def _param_shapes(num_classes: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    dummy = MusiqInputs(
        jax.ShapeDtypeStruct((1, 1, PATCH_SIZE, PATCH_SIZE, 3), jnp.float32),
        jax.ShapeDtypeStruct((1, 1), jnp.int32),
        jax.ShapeDtypeStruct((1, 1), jnp.int32),
        jax.ShapeDtypeStruct((1, 1), jnp.bool_),
    )
    shapes = jax.eval_shape(MUSIQ(num_classes).init, jax.random.key(0), dummy)["params"]
    return {
        tuple(k.key for k in key_path): tuple(leaf.shape)
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }


def _torch_layout(
    path: tuple[str, ...], shape: tuple[int, ...], num_classes: int
) -> tuple[str, tuple[int, ...]]:
    """(pyiqa key, torch shape) of our parameter at ``path`` with ``shape``."""
    names = list(path[:-1])
    if names == ["head"] and num_classes > 1:
        names.append("0")  # AVA: head = Sequential(Linear, Softmax)
    key = ".".join((*names, _TORCH_LEAF.get(path[-1], path[-1])))
    return key, torch_kernel_shape(path, shape)


@functools.cache
def _param_layout(num_classes: int = 1) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """pyiqa key -> (our param path, torch shape)."""
    layout = {}
    for path, shape in _param_shapes(num_classes).items():
        key, torch_shape = _torch_layout(path, shape, num_classes)
        layout[key] = (path, torch_shape)
    return layout


def torch_state_shapes(num_classes: int = 1) -> dict[str, tuple[int, ...]]:
    """pyiqa's MUSIQ state-dict key -> shape: the layout ``load_musiq`` expects of a ``.pth``,
    248 tensors, 27,125,825 numbers for the 1-class (KonIQ/SPAQ/PaQ2PiQ) model."""
    return {k: shape for k, (_, shape) in _param_layout(num_classes).items()}


def _check_head(num_classes: int, source: str, found: str) -> None:
    if num_classes not in HEAD_SIZES:
        raise ValueError(
            f"{source}: {found} has {num_classes} outputs; expected one of "
            + ", ".join(f"{n} ({what})" for n, what in HEAD_SIZES.items())
            + " (imagenet_pretrain is a backbone, not a quality model)"
        )


def convert_musiq_state(state: Mapping[str, Any], source: str = "state dict") -> Params:
    """Our params (jnp float32) from a pyiqa MUSIQ state dict (numpy values): 1-class
    (``head.weight``) or AVA's 10-class (``head.0.weight``) head.

    Raises ValueError naming ``source`` and the keys for missing, unexpected or mis-shaped
    tensors (e.g. the imagenet_pretrain file's extra ``imagenet_head.*``).
    """
    if "head.0.weight" in state:
        num_classes = int(np.shape(state["head.0.weight"])[0])
        _check_head(num_classes, source, "'head.0.weight'")
    else:
        num_classes = 1
    return convert_state_dict(
        state,
        _param_layout(num_classes),
        source=source,
        expected=f"pyiqa's MUSIQ state dict ({num_classes}-output head; {WEIGHTS_FILE})",
        transform=torch_kernel_to_linen,
    )


# ----------------------------------------------------------------------------------------------
# Weights: the original .npz


# Our block children -> the original's expected auto names (see the module docstring).
NPZ_BLOCK_NAMES = {
    "norm1": "LayerNorm_0",
    "attention": "SelfAttention_1",
    "norm2": "LayerNorm_2",
    "mlp": "MlpBlock_3",
}


def _npz_block_names(keys: Sequence[str]) -> dict[str, str]:
    """The children of ``Transformer/encoderblock_0`` in a checkpoint's keys, matched to ours
    by kind (two LayerNorms in numeric order, one attention, one MLP block); the expected
    names where the file does not show them unambiguously."""
    prefix = NPZ_PREFIX + "Transformer/encoderblock_0/"
    children = {k[len(prefix) :].split("/", 1)[0] for k in keys if k.startswith(prefix)}

    def number(name: str) -> int:
        found = re.search(r"_(\d+)$", name)
        return int(found.group(1)) if found else -1

    norms = sorted((c for c in children if c.startswith("LayerNorm")), key=number)
    attention = [c for c in children if "Attention" in c]
    mlp = [c for c in children if c.startswith("MlpBlock")]
    names = dict(NPZ_BLOCK_NAMES)
    if len(norms) == 2:
        names["norm1"], names["norm2"] = norms
    if len(attention) == 1:
        names["attention"] = attention[0]
    if len(mlp) == 1:
        names["mlp"] = mlp[0]
    return names


def _npz_name(path: tuple[str, ...], block_names: Mapping[str, str]) -> str:
    """The original checkpoint's key (without ``opt/target/``) of our parameter ``path``."""
    top, *rest = path
    if top == "block1":
        return "/".join(("block1", "unit1", *rest))
    if top != "transformer_encoder":
        return "/".join(path)  # conv_root, gn_root, embedding, head: the same names
    fixed = {
        ("posembed_input", "position_emb"): "posembed_input/pos_embedding",
        ("scaleembed_input", "scale_emb"): "scaleembed_input/scale_embedding",
        ("cls",): "cls",
    }
    if tuple(rest) in fixed:
        return "Transformer/" + fixed[tuple(rest)]
    if rest[0] == "encoder_norm":
        return "/".join(("Transformer", *rest))
    _, block, child, *leaf = rest  # transformer/encoderblock_i/<child>/...
    if child == "mlp":
        leaf = [{"fc1": "Dense_0", "fc2": "Dense_1"}[leaf[0]], *leaf[1:]]
    return "/".join(("Transformer", block, block_names[child], *leaf))


def _npz_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The original's shape of our parameter: attention kernels split by head, scale and
    position tables with a leading 1."""
    if "attention" in path:
        heads = (NUM_HEADS, HIDDEN_SIZE // NUM_HEADS)
        if path[-2] == "out":
            return (*heads, HIDDEN_SIZE) if path[-1] == "kernel" else shape
        return (HIDDEN_SIZE, *heads) if path[-1] == "kernel" else heads
    if path[-1] == "scale_emb":
        return (1, *shape)
    return shape


def _npz_layout(
    num_classes: int, block_names: Mapping[str, str]
) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """npz key (with ``opt/target/``) -> (our param path, the original's shape)."""
    return {
        NPZ_PREFIX + _npz_name(path, block_names): (path, _npz_shape(path, shape))
        for path, shape in _param_shapes(num_classes).items()
    }


def convert_musiq_npz(arrays: Mapping[str, Any], source: str = "npz") -> Params:
    """Our params (jnp float32) from the original checkpoint's flat arrays (``np.load`` of
    e.g. ``koniq_ckpt.npz``): the entries under ``opt/target/``, reshaped; everything else
    (optimiser state) is ignored. Raises ValueError naming ``source`` and the keys when
    something is missing, unexpected or mis-shaped."""
    target = {k: v for k, v in arrays.items() if k.startswith(NPZ_PREFIX)}
    if not target:
        raise ValueError(
            f"{source}: expected the original MUSIQ checkpoint, whose parameters are the "
            f"entries named '{NPZ_PREFIX}...' ({NPZ_FILE}); it has none, its keys are "
            f"{some_keys(sorted(arrays))}"
        )
    head = target.get(NPZ_PREFIX + "head/kernel")
    num_classes = int(np.shape(head)[-1]) if head is not None else 1
    _check_head(num_classes, source, f"'{NPZ_PREFIX}head/kernel'")
    layout = _npz_layout(num_classes, _npz_block_names(list(target)))
    shapes = _param_shapes(num_classes)
    return convert_state_dict(
        target,
        layout,
        source=source,
        expected=f"the original MUSIQ checkpoint ({num_classes}-output head; {NPZ_FILE})",
        transform=lambda path, value: value.reshape(shapes[path]),
    )


# ----------------------------------------------------------------------------------------------
# Loading either


def load_musiq(path: str | os.PathLike) -> Params:
    """Params for ``MUSIQ``/``musiq_scores`` from pyiqa's weights (``.pth``/``.pt``, e.g.
    ``musiq_koniq_ckpt-e95806b9.pth``, zip or legacy torch format) or google-research's
    original checkpoint (``.npz``, e.g. ``koniq_ckpt.npz``), read without torch.

    Raises FileNotFoundError naming the path and where to get the weights when it is absent
    (nothing is downloaded), and ValueError naming the file and the keys when it is not a
    MUSIQ checkpoint of either layout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MUSIQ weights not found. {WEIGHTS_HINT}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return convert_musiq_npz({k: npz[k] for k in npz.files}, str(path))
    state = torch_pickle.load(path)
    if isinstance(state.get("params"), Mapping):  # pyiqa's training checkpoints nest it
        return convert_musiq_state(state["params"], f"{path} ['params']")
    return convert_musiq_state(state, str(path))
