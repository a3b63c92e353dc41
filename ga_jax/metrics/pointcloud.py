"""Point-cloud metrics: Chamfer distance, F-score, nearest-class judgement, and the generative
set measures COV, MMD and 1-NNA (DESIGN.md section 7), in JAX, float32, jit-able.

Nearest distances. For clouds a [N, 3] and b [M, 3], d_ab[i] = min_j |a_i - b_j|^2 and
d_ba[j] = min_i |a_i - b_j|^2. The differences are taken explicitly (not through
|a|^2 + |b|^2 - 2 a.b, which cancels catastrophically for near points), so identical clouds
give exactly 0. Memory: a's points are processed `chunk_size` at a time against all of b,
about chunk_size * M * 12 bytes per step (1024 x 4096 points: 50 MB), and banks of clouds are
compared one pair (or `pair_batch` pairs) at a time, so two 4,096-point clouds or a bank of
hundreds of them fit in memory on any device. Results do not depend on chunk_size or
pair_batch (a minimum is exact whatever the order).

Chamfer variants: papers disagree, so every function takes the variant by name, with no
default. With D_ab = mean_i d_ab[i] and D_ba = mean_j d_ba[j] (squared distances) and
L_ab, L_ba the same means of the unsquared distances sqrt(d):

  "squared_sum"   D_ab + D_ba. PyTorch3D `chamfer_distance` (point and batch reduction
                  "mean"); the CD of the PointFlow evaluation (Yang et al. 2019), which
                  ShapeGF, PVD, LION and later 3D generation papers reuse for COV, MMD and
                  1-NNA, MMD usually reported x 10^3.
  "squared_mean"  (D_ab + D_ba) / 2.
  "l2_sum"        L_ab + L_ba.
  "l2_mean"       (L_ab + L_ba) / 2: the "L1 Chamfer" of surface reconstruction and
                  completion (mean of accuracy and completeness, Occupancy Networks, PCN).

F-score at threshold t (Tatarchenko et al. 2019, "What do single-view 3D reconstruction
networks learn?"): precision = fraction of predicted points whose nearest target point is
closer than t (strictly), recall = the same from the target to the prediction,
F = 2 P R / (P + R), 0 when P = R = 0. t is a distance (not squared), in the clouds' units.

Set measures (Achlioptas et al. 2018, "Learning representations and generative models for 3D
point clouds"; Yang et al. 2019, PointFlow, for 1-NNA), from a distance matrix
D [G, R] between G generated and R reference clouds:
  MMD   = mean over reference clouds r of min_g D[g, r] (lower is better);
  COV   = fraction of reference clouds that are the nearest reference of at least one
          generated cloud (argmin_r D[g, r]; higher is better);
  1-NNA = leave-one-out 1-nearest-neighbour accuracy of telling generated from reference in
          the union of both sets (50% is ideal; 0% means every sample's nearest neighbour
          is in the other set, e.g. a copied reference set; 100% means the sets separate).
          Ties go to the lower index of [generated; reference], the order of PointFlow's
          combined matrix.
The distance is the Chamfer variant the caller names; the matrices are inputs too, so other
distances (EMD) plug into the same code.

Inputs are float [..., N, 3] clouds; non-finite coordinates are not checked here (they are
data errors caught by the readers) and propagate as NaN/inf.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "CHAMFER_VARIANTS",
    "DEFAULT_CHUNK_SIZE",
    "FScore",
    "NearestCloud",
    "chamfer_distance",
    "coverage_mmd",
    "f_score",
    "generation_metrics",
    "nearest_class",
    "nearest_squared_distances",
    "one_nna",
    "pairwise_chamfer",
]

CHAMFER_VARIANTS = ("squared_sum", "squared_mean", "l2_sum", "l2_mean")

# Points of the first cloud per step: 1024 x 4096 x 3 float32 differences = 50 MB.
DEFAULT_CHUNK_SIZE = 1024


class FScore(NamedTuple):
    """F-score at one threshold and its two halves, each [...] (one per cloud pair)."""

    f: jax.Array
    precision: jax.Array
    recall: jax.Array


class NearestCloud(NamedTuple):
    """The nearest bank cloud of each query [Q]: its label, its index in the bank, and the
    Chamfer distance to it."""

    label: jax.Array
    index: jax.Array
    distance: jax.Array


# --------------------------------------------------------------------------------------------
# Argument checks (shapes are static, so these also run under an outer jit)


def _check_cloud(where: str, name: str, x: jax.Array, spec: str, ndim: int | None = None):
    bad_ndim = x.ndim < 2 if ndim is None else x.ndim != ndim
    if bad_ndim or x.shape[-1] != 3 or x.shape[-2] < 1:
        raise ValueError(
            f"{where}: {name}: expected shape {spec} (at least one point of 3 coordinates), "
            f"got {tuple(x.shape)}"
        )


def _check_pair(where: str, a: jax.Array, b: jax.Array, names=("a", "b")) -> None:
    _check_cloud(where, names[0], a, "[..., N, 3]")
    _check_cloud(where, names[1], b, "[..., M, 3]")
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            f"{where}: {names[1]}: expected shape {tuple(a.shape[:-2]) + ('M', 3)} (the leading "
            f"dims of {names[0]} {tuple(a.shape)}), got {tuple(b.shape)}"
        )


def _check_variant(where: str, variant: str) -> None:
    if variant not in CHAMFER_VARIANTS:
        raise ValueError(
            f"{where}: variant: expected one of {', '.join(CHAMFER_VARIANTS)} (see "
            f"ga_jax.metrics.pointcloud), got {variant!r}"
        )


def _check_positive_int(where: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: {name}: expected an int >= 1, got {value!r}")


def _check_matrix(where: str, name: str, x: jax.Array, shape: tuple) -> None:
    if x.ndim != 2 or any(s is not None and got != s for got, s in zip(x.shape, shape)):
        spec = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{where}: {name}: expected shape {spec}, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# Nearest distances of one pair of clouds


def _pair_nearest(
    a: jax.Array, b: jax.Array, chunk_size: int, expanded: bool = False
) -> tuple[jax.Array, jax.Array]:
    """d_ab [N], d_ba [M] of one pair; a is cut into chunks of chunk_size points.

    The last chunk is padded with copies of a's first point: repeats change no minimum over a,
    and their own rows are dropped. expanded: squared distances as |a|^2 + |b|^2 - 2 a.b (one
    matmul; see pairwise_chamfer).
    """
    n = a.shape[0]
    size = min(chunk_size, n)
    steps = math.ceil(n / size)
    padded = jnp.concatenate([a, jnp.broadcast_to(a[:1], (steps * size - n, 3))], axis=0)

    def step(col_min, a_chunk):
        if expanded:
            d = jnp.sum(jnp.square(a_chunk), axis=-1)[:, None] + jnp.sum(jnp.square(b), -1)
            d = jnp.maximum(d - 2.0 * (a_chunk @ b.T), 0.0)  # [size, M]
        else:
            d = jnp.sum(jnp.square(a_chunk[:, None, :] - b[None, :, :]), axis=-1)  # [size, M]
        return jnp.minimum(col_min, jnp.min(d, axis=0)), jnp.min(d, axis=1)

    init = jnp.full((b.shape[0],), jnp.inf, jnp.float32)
    d_ba, d_ab = jax.lax.scan(step, init, padded.reshape(steps, size, 3))
    return d_ab.reshape(-1)[:n], d_ba


def _chamfer_from_nearest(d_ab: jax.Array, d_ba: jax.Array, variant: str) -> jax.Array:
    if variant.startswith("l2"):
        d_ab, d_ba = jnp.sqrt(d_ab), jnp.sqrt(d_ba)
    total = jnp.mean(d_ab, axis=-1) + jnp.mean(d_ba, axis=-1)
    return total if variant.endswith("_sum") else 0.5 * total


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _nearest(a: jax.Array, b: jax.Array, chunk_size: int) -> tuple[jax.Array, jax.Array]:
    lead = a.shape[:-2]
    a32 = a.astype(jnp.float32).reshape((-1,) + a.shape[-2:])
    b32 = b.astype(jnp.float32).reshape((-1,) + b.shape[-2:])
    d_ab, d_ba = jax.lax.map(lambda ab: _pair_nearest(*ab, chunk_size), (a32, b32))
    return d_ab.reshape(lead + d_ab.shape[-1:]), d_ba.reshape(lead + d_ba.shape[-1:])


def nearest_squared_distances(
    a: jax.Array, b: jax.Array, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[jax.Array, jax.Array]:
    """Squared nearest distances both ways of clouds a [..., N, 3] and b [..., M, 3] (same
    leading dims, one pair per leading index): (d_ab [..., N], d_ba [..., M]), float32."""
    _check_pair("nearest_squared_distances", a, b)
    _check_positive_int("nearest_squared_distances", "chunk_size", chunk_size)
    return _nearest(a, b, chunk_size)


def chamfer_distance(
    a: jax.Array, b: jax.Array, variant: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> jax.Array:
    """Chamfer distance [...] of clouds a [..., N, 3] and b [..., M, 3] (same leading dims);
    variant: one of CHAMFER_VARIANTS (module docstring), no default on purpose."""
    _check_variant("chamfer_distance", variant)
    _check_pair("chamfer_distance", a, b)
    _check_positive_int("chamfer_distance", "chunk_size", chunk_size)
    return _chamfer_from_nearest(*_nearest(a, b, chunk_size), variant)


def f_score(
    pred: jax.Array,
    target: jax.Array,
    threshold: float,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> FScore:
    """F-score [...] at distance `threshold` (> 0, not squared) of predicted clouds
    pred [..., N, 3] against target clouds target [..., M, 3] (module docstring)."""
    _check_pair("f_score", pred, target, names=("pred", "target"))
    _check_positive_int("f_score", "chunk_size", chunk_size)
    if not threshold > 0:
        raise ValueError(f"f_score: threshold: expected a distance > 0, got {threshold!r}")
    d_pt, d_tp = _nearest(pred, target, chunk_size)
    t2 = jnp.float32(threshold) ** 2
    precision = jnp.mean((d_pt < t2).astype(jnp.float32), axis=-1)
    recall = jnp.mean((d_tp < t2).astype(jnp.float32), axis=-1)
    denom = precision + recall
    f = jnp.where(denom > 0, 2 * precision * recall / jnp.where(denom > 0, denom, 1.0), 0.0)
    return FScore(f, precision, recall)


# --------------------------------------------------------------------------------------------
# Banks of clouds


@functools.partial(jax.jit, static_argnames=("variant", "chunk_size", "pair_batch", "expanded"))
def _pairwise(x, y, variant: str, chunk_size: int, pair_batch: int, expanded: bool) -> jax.Array:
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)

    def pair(yj, xi):
        return _chamfer_from_nearest(*_pair_nearest(xi, yj, chunk_size, expanded), variant)

    def row(xi):
        batch = pair_batch if pair_batch > 1 else None
        return jax.lax.map(functools.partial(pair, xi=xi), y, batch_size=batch)

    return jax.lax.map(row, x)


def pairwise_chamfer(
    x: jax.Array,
    y: jax.Array,
    variant: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    pair_batch: int = 1,
    expanded: bool = False,
) -> jax.Array:
    """Chamfer distances [A, B] between every cloud of x [A, N, 3] and every cloud of
    y [B, M, 3]; entry [i, j] is chamfer_distance(x[i], y[j], variant).

    Pairs run one after another, pair_batch at a time (vmapped), each chunked over x's points:
    memory about pair_batch * chunk_size * M * 12 bytes, whatever A and B. On an accelerator
    raise pair_batch (e.g. 8-64) to fill it; the values do not change.

    expanded=True takes squared distances as |a|^2 + |b|^2 - 2 a.b, one matmul per chunk
    (several times faster on the CPU, benchmarks/judges.py). It cancels for near points: each
    squared distance is off by up to ~1e-7 x the clouds' squared radius, so identical clouds
    give small positive values, not 0. Use it to rank clouds (the shape judge), not to report
    distances near zero.
    """
    where = "pairwise_chamfer"
    _check_variant(where, variant)
    _check_cloud(where, "x", x, "[A, N, 3]", ndim=3)
    _check_cloud(where, "y", y, "[B, M, 3]", ndim=3)
    _check_positive_int(where, "chunk_size", chunk_size)
    _check_positive_int(where, "pair_batch", pair_batch)
    return _pairwise(x, y, variant, chunk_size, pair_batch, expanded)


def nearest_class(
    queries: jax.Array,
    bank: jax.Array,
    labels: jax.Array,
    variant: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    pair_batch: int = 1,
) -> NearestCloud:
    """Judge each query cloud [Q, N, 3] by the labelled bank [B, M, 3] (labels [B], ints):
    the label of the bank cloud with the smallest Chamfer distance (ties: the lowest index)."""
    where = "nearest_class"
    _check_cloud(where, "queries", queries, "[Q, N, 3]", ndim=3)
    _check_cloud(where, "bank", bank, "[B, M, 3]", ndim=3)
    labels = jnp.asarray(labels)
    if labels.shape != bank.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{where}: labels: expected ints of shape [{bank.shape[0]}] (one per bank cloud), "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    distances = pairwise_chamfer(
        queries, bank, variant, chunk_size=chunk_size, pair_batch=pair_batch
    )  # [Q, B]
    index = jnp.argmin(distances, axis=1)
    nearest = jnp.take_along_axis(distances, index[:, None], axis=1)[:, 0]
    return NearestCloud(labels[index], index, nearest)


# --------------------------------------------------------------------------------------------
# Generative set measures


def coverage_mmd(distances: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(COV, MMD) from distances [G, R] between G generated and R reference clouds (module
    docstring): COV in [0, 1], MMD in the distance's units."""
    _check_matrix("coverage_mmd", "distances", distances, (None, None))
    num_reference = distances.shape[1]
    mmd = jnp.mean(jnp.min(distances, axis=0))
    matched = jnp.argmin(distances, axis=1)  # [G]: each generated cloud's nearest reference
    covered = jnp.zeros((num_reference,), bool).at[matched].set(True)
    return jnp.mean(covered.astype(jnp.float32)), mmd


def one_nna(d_gg: jax.Array, d_rr: jax.Array, d_gr: jax.Array) -> jax.Array:
    """1-NNA accuracy in [0, 1] from distances among generated [G, G], among reference
    [R, R] and between them [G, R] (module docstring; needs G + R >= 3 so that every sample
    has a neighbour other than itself)."""
    where = "one_nna"
    _check_matrix(where, "d_gr", d_gr, (None, None))
    g, r = d_gr.shape
    _check_matrix(where, "d_gg", d_gg, (g, g))
    _check_matrix(where, "d_rr", d_rr, (r, r))
    if g + r < 3:
        raise ValueError(f"{where}: expected G + R >= 3 clouds in all, got G = {g}, R = {r}")
    full = jnp.concatenate(
        [jnp.concatenate([d_gg, d_gr], axis=1), jnp.concatenate([d_gr.T, d_rr], axis=1)], axis=0
    )
    full = jnp.where(jnp.eye(g + r, dtype=bool), jnp.inf, full)  # leave one out
    is_generated = jnp.arange(g + r) < g
    neighbour = jnp.argmin(full, axis=1)
    return jnp.mean((is_generated[neighbour] == is_generated).astype(jnp.float32))


def generation_metrics(
    generated: jax.Array,
    reference: jax.Array,
    variant: str,
    *,
    with_one_nna: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    pair_batch: int = 1,
) -> dict[str, jax.Array]:
    """{"coverage", "mmd"[, "one_nna"]} of generated clouds [G, N, 3] against reference clouds
    [R, M, 3] under the named Chamfer variant. 1-NNA also needs the G x G and R x R
    distances (about (G + R)^2 / (G R) times the work of COV/MMD): with_one_nna=False skips
    it. Align and normalise the clouds first as the compared papers do (conventions differ:
    unit bounding box or unit sphere per shape, or a data set's mean and std); this function
    measures what it is given."""
    where = "generation_metrics"
    _check_cloud(where, "generated", generated, "[G, N, 3]", ndim=3)
    _check_cloud(where, "reference", reference, "[R, M, 3]", ndim=3)
    pairwise = functools.partial(
        pairwise_chamfer, variant=variant, chunk_size=chunk_size, pair_batch=pair_batch
    )
    d_gr = pairwise(generated, reference)
    coverage, mmd = coverage_mmd(d_gr)
    out = {"coverage": coverage, "mmd": mmd}
    if with_one_nna:
        d_gg, d_rr = pairwise(generated, generated), pairwise(reference, reference)
        out["one_nna"] = one_nna(d_gg, d_rr, d_gr)
    return out
