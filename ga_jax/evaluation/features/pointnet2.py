"""Point-E's PointNet++ classifier (the P-FID / P-KID / P-IS network) as a Linen module, loaded
from Point-E's own ``pointnet.pt`` without torch.

P-FID and P-KID are only comparable with Point-E's and later papers' numbers when the features
come from this exact network with Point-E's preprocessing, so the module reproduces
``point_e.evals`` (openai/point-e, commit fc8a607) rather than a generic PointNet++: the SSG
classifier ``get_model(num_class=40, normal_channel=False, width_mult=2)`` in eval mode, fed by
``PointNetClassifier.features_and_preds`` (../shared/notes/pretrained_weights_and_samplers.md
section 4).

* Input: clouds [B, N, 3] (xyz only, N >= 512, any N) are normalised one by one: minus their
  centroid, divided by their largest point radius (``normalize_point_clouds``).
* sa1: 512 centroids by farthest point sampling (FPS), ball radius 0.2, 32 neighbours, shared
  MLP 128-128-256 on the neighbours' xyz relative to the centroid, max over neighbours.
  sa2: 128 centroids, radius 0.4, 64 neighbours, input [relative xyz, sa1 features] (259),
  MLP 256-256-512. sa3: every sa2 point, input [*absolute* xyz, features] (515),
  MLP 512-1024-2048, max over the 128 points. Each MLP layer is a 1x1 conv + BatchNorm + ReLU.
* Head: fc1 2048 -> 1024, bn1, ReLU, fc2 1024 -> 512, bn2, ReLU, fc3 512 -> 40, log_softmax
  (dropout is off in eval mode). BatchNorm eps 1e-5, running statistics.
* Outputs: the P-FID/P-KID feature is ``bn2(fc2(.))`` *before* its ReLU, 512-d (Point-E's
  ``feature_dim`` property says 256, which is stale); P-IS uses exp of the 40 log-probabilities.

Grouping details that move the features and are therefore copied exactly:

* FPS is deterministic in eval mode, and its first index is the cloud's *position within its
  device batch* (Point-E streams clouds in order in device batches of 64), not 0 and not random;
  sa1 and sa2 both start there. The same cloud in another batch slot gets other features, so
  ``pointnet_features`` takes ``fps_start`` and defaults to ``arange(B) % 64``: right for a
  batch that begins at a multiple of 64 in the evaluated set. FPS keeps the running minimum of
  squared distances (initialised at 1e10) and takes the first maximum.
* Ball query: squared distances as -2 a.b + |a|^2 + |b|^2 (in that order, float32), neighbours
  are the points with distance^2 <= r^2 taken in *index* order (not by distance), the first 32
  (64) of them, and empty slots repeat the first neighbour found (the centroid always is one).

Weights: ``pointnet.pt`` from Point-E's public blob store (``WEIGHTS_URL``), a torch pickle of
a dict whose ``"model_state_dict"`` entry holds the 79 tensors (68 + 11 BatchNorm
``num_batches_tracked`` counters), read by ``load_pointe_pointnet`` through
ga_jax.weights.torch_pickle. Nothing is ever downloaded here. Parameters mirror torch's names:
``sa2.mlp_convs.1.weight`` [O, I, 1, 1] becomes ``params["sa2"]["mlp_convs_1"]["kernel"]``
[I, O], ``sa2.mlp_bns.1.{weight, bias, running_mean, running_var}`` become
``mlp_bns_1/{scale, bias, mean, var}``, ``fc1.weight`` [1024, 2048] becomes ``fc1/kernel``
[2048, 1024] and ``bn1.*`` ``bn1/*``.

    params = load_pointe_pointnet("weights/pointnet.pt")
    features, log_probs = jax.jit(pointnet_features)(params, clouds)  # clouds [B, N, 3]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ga_jax.evaluation.features.inception import FrozenBatchNorm
from ga_jax.weights import torch_pickle
from ga_jax.weights.state_dict import convert_state_dict, some_keys

FEATURE_DIM = 512  # bn2's output, the P-FID/P-KID feature
POOL_DIM = 2048  # sa3's global max pool
NUM_CLASSES = 40  # ModelNet40
WIDTH_MULT = 2
MIN_POINTS = 512  # sa1 picks 512 centroids by FPS; fewer points would repeat centroids
DEVICE_BATCH_SIZE = 64  # PointNetClassifier's default: the period of the FPS start index
BN_EPS = 1e-5

WEIGHTS_FILE = "pointnet.pt"
WEIGHTS_URL = "https://openaipublic.azureedge.net/main/point-e/" + WEIGHTS_FILE
WEIGHTS_HINT = (
    f"Download it once by hand from {WEIGHTS_URL} (Point-E's PointNet++ evaluator weights, the "
    "file point_e.models.download.load_checkpoint('pointnet') fetches) and pass its path; "
    "ga_jax never downloads weights."
)

Params = dict[str, Any]

# ----------------------------------------------------------------------------------------------
# Point operations (Point-E's conventions; batched over the leading axis)


def normalize_point_clouds(clouds: jax.Array) -> jax.Array:
    """Point-E's per-cloud normalisation: clouds [B, N, 3] -> float32 [B, N, 3], each centred
    on its centroid and scaled so that its farthest point has radius 1.

    The radii 0.2 and 0.4 of the ball queries are meant for this unit-sphere scale, so skipping
    it changes every neighbourhood.
    """
    clouds = jnp.asarray(clouds)
    if clouds.ndim != 3 or clouds.shape[-1] != 3:
        raise ValueError(
            f"normalize_point_clouds: clouds: expected [B, N, 3] xyz, got shape {clouds.shape}"
        )
    if not jnp.issubdtype(clouds.dtype, jnp.floating):
        raise TypeError(f"normalize_point_clouds: clouds: expected floats, got {clouds.dtype}")
    x = clouds.astype(jnp.float32)
    x = x - jnp.mean(x, axis=1, keepdims=True)
    radius = jnp.max(jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)), axis=1, keepdims=True)
    return x / radius


def farthest_point_sample(xyz: jax.Array, npoint: int, start: jax.Array) -> jax.Array:
    """int32 [B, npoint] indices into xyz [B, N, 3] picked by FPS from index start [B].

    Point-E's loop: the running minimum squared distance starts at 1e10 (not inf) and each
    step takes the first index of its maximum. The squared distance is summed x, y, z left to
    right (the order assumed for torch's 3-term sum; only exact near-ties could tell).
    """
    b, n, _ = xyz.shape

    def step(i, carry):
        chosen, nearest, current = carry
        chosen = chosen.at[:, i].set(current)
        d = xyz - jnp.take_along_axis(xyz, current[:, None, None], axis=1)  # [B, N, 3]
        dist = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]
        nearest = jnp.where(dist < nearest, dist, nearest)
        return chosen, nearest, jnp.argmax(nearest, axis=-1).astype(jnp.int32)

    init = (
        jnp.zeros((b, npoint), jnp.int32),
        jnp.full((b, n), 1e10, jnp.float32),
        jnp.asarray(start, jnp.int32),
    )
    return lax.fori_loop(0, npoint, step, init)[0]


def ball_query(xyz: jax.Array, centers: jax.Array, radius: float, nsample: int) -> jax.Array:
    """int32 [B, S, nsample] indices into xyz [B, N, 3] of the neighbours of centers [B, S, 3].

    Point-E's rule: the points whose squared distance (-2 a.b + |a|^2 + |b|^2, float32) is not
    above radius^2, in increasing index order, the first nsample of them; missing slots repeat
    the first. Which points fall inside depends on that rounding, hence the formula.
    """
    n = xyz.shape[1]
    sq = -2.0 * jnp.einsum("bsc,bnc->bsn", centers, xyz, precision=lax.Precision.HIGHEST)
    sq = sq + jnp.sum(centers * centers, axis=-1)[:, :, None]
    sq = sq + jnp.sum(xyz * xyz, axis=-1)[:, None, :]
    idx = jnp.where(sq > radius**2, n, jnp.arange(n, dtype=jnp.int32))
    idx = jnp.sort(idx, axis=-1)[..., :nsample]
    return jnp.where(idx == n, idx[..., :1], idx)


def _gather(points: jax.Array, idx: jax.Array) -> jax.Array:
    """points [B, N, C] at idx [B, ...] -> [B, ..., C]."""
    return jax.vmap(lambda p, i: p[i])(points, idx)


# ----------------------------------------------------------------------------------------------
# The network


class SetAbstraction(nn.Module):
    """One PointNet++ set-abstraction level: group, shared MLP (1x1 conv + BN + ReLU), max.

    ``npoint=None`` groups all points into one set, with absolute xyz (Point-E's
    ``group_all``); otherwise FPS picks ``npoint`` centroids and each takes ``nsample``
    neighbours within ``radius``, with xyz relative to the centroid. Returns (centroid xyz
    [B, npoint, 3] or None, features [B, npoint or 1, mlp[-1]]).
    """

    mlp: Sequence[int]
    npoint: int | None = None
    radius: float | None = None
    nsample: int | None = None
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(
        self, xyz: jax.Array, features: jax.Array | None, fps_start: jax.Array | None
    ) -> tuple[jax.Array | None, jax.Array]:
        if self.npoint is None:
            centers = None
            grouped = xyz if features is None else jnp.concatenate([xyz, features], axis=-1)
            grouped = grouped[:, None]  # [B, 1, N, 3 + D]
        else:
            centers = _gather(xyz, farthest_point_sample(xyz, self.npoint, fps_start))
            neighbours = ball_query(xyz, centers, self.radius, self.nsample)
            grouped = _gather(xyz, neighbours) - centers[:, :, None]  # [B, S, K, 3]
            if features is not None:
                grouped = jnp.concatenate([grouped, _gather(features, neighbours)], axis=-1)
        for i, width in enumerate(self.mlp):
            grouped = nn.Dense(width, precision=self.precision, name=f"mlp_convs_{i}")(grouped)
            grouped = jax.nn.relu(FrozenBatchNorm(BN_EPS, name=f"mlp_bns_{i}")(grouped))
        return centers, jnp.max(grouped, axis=2)


class PointNet2Classifier(nn.Module):
    """Normalised clouds [B, N, 3] (N >= 512; ``normalize_point_clouds``' output) and FPS start
    indices fps_start int [B] in [0, 512) -> (features [B, 512], log-probabilities [B, 40]).

    The features are bn2's output before its ReLU (P-FID/P-KID); the global pool [B, 2048] is
    sown as ``intermediates/pool``. ``precision`` defaults to HIGHEST so that features do not
    depend on the backend's default matmul precision (TF32 on NVIDIA GPUs); on CPU it changes
    nothing. Everything runs in float32.
    """

    num_classes: int = NUM_CLASSES
    width_mult: int = WIDTH_MULT
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, xyz: jax.Array, fps_start: jax.Array) -> tuple[jax.Array, jax.Array]:
        if xyz.ndim != 3 or xyz.shape[-1] != 3 or xyz.shape[1] < MIN_POINTS:
            raise ValueError(
                f"PointNet2Classifier: clouds: expected [B, N, 3] with N >= {MIN_POINTS} points "
                f"(sa1 takes {MIN_POINTS} FPS centroids), got shape {xyz.shape}"
            )
        if jnp.shape(fps_start) != xyz.shape[:1]:
            raise ValueError(
                f"PointNet2Classifier: fps_start: expected shape ({xyz.shape[0]},), one start "
                f"index per cloud, got {jnp.shape(fps_start)}"
            )
        w = self.width_mult
        sa = functools.partial(SetAbstraction, precision=self.precision)
        dense = functools.partial(nn.Dense, precision=self.precision)
        xyz = xyz.astype(jnp.float32)
        xyz1, f1 = sa((64 * w, 64 * w, 128 * w), MIN_POINTS, 0.2, 32, name="sa1")(
            xyz, None, fps_start
        )
        xyz2, f2 = sa((128 * w, 128 * w, 256 * w), 128, 0.4, 64, name="sa2")(xyz1, f1, fps_start)
        _, f3 = sa((256 * w, 512 * w, 1024 * w), name="sa3")(xyz2, f2, None)
        pool = f3[:, 0]
        self.sow("intermediates", "pool", pool)
        x = jax.nn.relu(FrozenBatchNorm(BN_EPS, name="bn1")(dense(512 * w, name="fc1")(pool)))
        features = FrozenBatchNorm(BN_EPS, name="bn2")(dense(256 * w, name="fc2")(x))
        logits = dense(self.num_classes, name="fc3")(jax.nn.relu(features))
        return features, jax.nn.log_softmax(logits, axis=-1)


def default_fps_start(batch: int, offset: int = 0) -> jax.Array:
    """The FPS start index Point-E's evaluator gives clouds offset .. offset + batch - 1 of a set:
    their position within its device batch of 64."""
    return (offset + jnp.arange(batch, dtype=jnp.int32)) % DEVICE_BATCH_SIZE


def pointnet_features(
    params: Params,
    clouds: jax.Array,
    fps_start: jax.Array | None = None,
    precision: lax.PrecisionLike = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """(P-FID features [B, 512], log-probabilities [B, 40]) of raw clouds [B, N, 3] (N >= 512),
    as Point-E's ``PointNetClassifier.features_and_preds`` computes them (its predictions are
    the exp of the log-probabilities).

    ``fps_start`` int [B]: FPS start indices, default ``default_fps_start(B)`` (positions in a
    device batch of 64; pass ``default_fps_start(B, offset)`` for a batch that begins at
    ``offset`` in the evaluated set). Jit-able with ``precision`` static; ``params`` from
    ``load_pointe_pointnet``.
    """
    x = normalize_point_clouds(clouds)
    if fps_start is None:
        fps_start = default_fps_start(x.shape[0])
    elif not isinstance(fps_start, jax.core.Tracer):
        start = np.asarray(fps_start)
        if start.size and (start.min() < 0 or start.max() >= MIN_POINTS):
            raise ValueError(
                f"pointnet_features: fps_start: expected indices in [0, {MIN_POINTS}) (sa2 "
                f"samples the {MIN_POINTS} sa1 centroids from them), got {start.tolist()}"
            )
    model = PointNet2Classifier(precision=precision)
    return model.apply({"params": params}, x, fps_start)


# ----------------------------------------------------------------------------------------------
# Weights


_TORCH_LEAF = {
    "kernel": "weight",
    "bias": "bias",
    "scale": "weight",
    "mean": "running_mean",
    "var": "running_var",
}


def _torch_layout(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """(torch key, torch shape) of our parameter at ``path`` with ``shape``."""
    # mlp_convs_1 -> mlp_convs.1 (torch's ModuleList index)
    names = [n.replace("mlp_convs_", "mlp_convs.").replace("mlp_bns_", "mlp_bns.") for n in path]
    key = ".".join((*names[:-1], _TORCH_LEAF[path[-1]]))
    if path[-1] == "kernel":
        shape = shape[::-1]  # Dense [in, out] -> Linear [out, in]
        if path[-2].startswith("mlp_convs_"):
            shape = (*shape, 1, 1)  # 1 x 1 Conv2d [out, in, 1, 1]
    return key, shape


@functools.cache
def _param_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """torch key -> (our param path, torch shape), for every tensor but num_batches_tracked."""
    dummy = jax.ShapeDtypeStruct((1, MIN_POINTS, 3), jnp.float32)
    start = jax.ShapeDtypeStruct((1,), jnp.int32)
    shapes = jax.eval_shape(PointNet2Classifier().init, jax.random.key(0), dummy, start)
    layout = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(shapes["params"])[0]:
        path = tuple(k.key for k in key_path)
        torch_key, torch_shape = _torch_layout(path, tuple(leaf.shape))
        layout[torch_key] = (path, torch_shape)
    return layout


def torch_state_shapes() -> dict[str, tuple[int, ...]]:
    """Point-E's ``model_state_dict`` key -> shape for every tensor the network uses (the 11
    BatchNorm ``num_batches_tracked`` counters the file also holds are left out): 68 tensors,
    5,872,808 numbers (5,859,496 trainable, the rest BN running statistics)."""
    return {k: shape for k, (_, shape) in _param_layout().items()}


def convert_pointe_pointnet_state(state: Mapping[str, Any], source: str = "state dict") -> Params:
    """Our params (jnp float32) from Point-E's PointNet++ ``model_state_dict`` (numpy values).

    BatchNorm ``num_batches_tracked`` counters are ignored (they do not affect inference).
    Raises ValueError naming ``source`` and the keys for missing, unexpected or mis-shaped
    tensors, so another width, class count or normal-channel variant is refused, not
    half-loaded.
    """
    return convert_state_dict(
        state,
        _param_layout(),
        source=source,
        expected=(
            f"Point-E's PointNet++ classifier (width_mult={WIDTH_MULT}, {NUM_CLASSES} classes, "
            f"xyz only; {WEIGHTS_FILE})"
        ),
        transform=_to_linen,
    )


def _to_linen(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """1x1 conv and linear weights [out, in(, 1, 1)] -> [in, out]."""
    return value.reshape(value.shape[:2]).T if path[-1] == "kernel" else value


def load_pointe_pointnet(path: str | os.PathLike) -> Params:
    """Params for ``PointNet2Classifier``/``pointnet_features`` from Point-E's ``pointnet.pt``
    (a torch pickle of a dict; the network is its ``"model_state_dict"`` entry, other entries
    are ignored), read without torch.

    Raises FileNotFoundError naming the path and where to get the file when it is absent
    (nothing is downloaded), and ValueError naming the file and what is wrong when it is not
    that checkpoint (no ``model_state_dict``; missing, unexpected or mis-shaped keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Point-E PointNet++ weights not found. {WEIGHTS_HINT}")
    checkpoint = torch_pickle.load(path)
    state = checkpoint.get("model_state_dict")
    if not isinstance(state, Mapping):
        found = some_keys(sorted(str(k) for k in checkpoint))
        raise ValueError(
            f"{path}: expected Point-E's checkpoint, a dict with a 'model_state_dict' entry "
            f"holding the network's state dict ({WEIGHTS_FILE}); its top-level keys are {found}"
        )
    return convert_pointe_pointnet_state(state, f"{path} ['model_state_dict']")
