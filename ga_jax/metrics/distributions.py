"""Distances between distributions of samples: the Frechet distance (FID and its feature
variants such as P-FID), KID, and the exact Earth Mover's distance between two point clouds
(whose matrices feed COV / MMD / 1-NNA in ga_jax.metrics.pointcloud). Host-side numpy and
scipy in float64: the inputs are a few thousand feature vectors or small clouds, already
pulled off the device, and float64 keeps the cancellations below harmless.

Frechet distance (Heusel et al. 2017) between Gaussians N(mu1, S1) and N(mu2, S2):

  FD = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

feature_statistics gives mu = the mean and S = np.cov(features, rowvar=False), the sample
covariance with ddof = 1, as pytorch-fid (`calculate_activation_statistics`), torch-fidelity
(`fid_features_to_statistics`) and Point-E's P-FID (`evals/fid_is.py`) compute them, so
their stored statistics plug in unchanged.

The trace of the square root is not taken through scipy.linalg.sqrtm of the non-symmetric
product S1 S2 (slow, and on rank-deficient covariances, e.g. fewer samples than dimensions,
it can return complex or non-finite values; pytorch-fid then adds 1e-6 to both diagonals
and retries). Instead: with R = S1^(1/2) (symmetric, from np.linalg.eigh of S1),
S1 S2 = R (R S2) and M = R S2 R = (R S2) R are products of the same two square factors in
both orders, so they have the same eigenvalues; M is symmetric positive semi-definite, so
they are real and >= 0, and Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(M)). Eigenvalues that
rounding makes slightly negative are clipped to 0. This holds for singular covariances too,
with no offset, so where pytorch-fid needed its 1e-6 fallback the two differ by that
offset's effect.

KID (Binkowski et al. 2018), as torch-fidelity computes it (torch_fidelity/metric_kid.py,
`kid_features_to_metric`, checked at commit 5e211a9, version 0.4.0):
  kernel   k(x, y) = (x.y / d + 1)^3 for d-dimensional features (polynomial, degree 3,
           gamma = 1/d, coef0 = 1);
  subsets  rng = np.random.RandomState(seed); for each of `subsets` subsets, in this order,
           the generated rows rng.choice(n_generated, subset_size, replace=False), then the
           reference rows rng.choice(n_reference, subset_size, replace=False) (torch-fidelity's
           input 1 then input 2): no repeats within a subset, independent across subsets;
  estimate per subset of m = subset_size rows from each set, the unbiased MMD^2
           sum_{i != j} K_XX / (m (m - 1)) + sum_{i != j} K_YY / (m (m - 1))
           - 2 sum_{i, j} K_XY / m^2 (the K_XY diagonal is kept, torch-fidelity's "unbiased"
           and not its "u-statistic" estimator);
  result   (mean, population std (ddof = 0)) over the subsets; the mean can be slightly
           negative when the sets match.
The default seed is torch-fidelity's (`rng_seed` = 2020), so that default numbers match.
torch-fidelity computes the kernels in the features' dtype (float32 from torch) and this
module in float64, so expect agreement to float32 rounding, not bit for bit (not run
against torch-fidelity itself here: tests/metrics/test_distributions.py checks these
definitions, draws included, with a plain loop).
Sets smaller than a subset: torch-fidelity refuses them (an assertion that asks to lower
`kid_subset_size`), and so does kid (a ValueError naming the set and its size): drawing with
replacement instead would put repeated rows into the "off-diagonal" sums and bias the
estimate upwards.

Earth Mover's distance between clouds a, b [N, 3] of equal size: the mean Euclidean (not
squared) distance over the optimal one-to-one matching,
  EMD(a, b) = min over permutations p of (1/N) sum_i |a_i - b_p(i)|,
solved exactly with scipy.optimize.linear_sum_assignment. This is the convention of the
PointFlow evaluation (Yang et al. 2019, metrics/evaluation_metrics.py, checked at commit
26e8c26): its CPU `emd_approx` runs linear_sum_assignment on the Euclidean distance matrix
and averages the matched distances, and its CUDA `match_cost` sums the same unsquared
distances (sqrtf in approxmatch.cu) under an approximate matching and divides by N.
Conventions differ elsewhere: PVD's evaluation (alexzhou907/PVD, metrics/PyTorchEMD, commit
2f6aa75) sums SQUARED distances over the approximate matching without dividing by N, a
different objective whose numbers do not convert into these. Point-E's evaluation has no EMD
(only P-FID and P-IS).
Cost: one assignment is O(N^3) (about 0.1 s at N = 1024 on one CPU core), and pairwise_emd
solves G x R of them, so subsample clouds (e.g. to a few hundred points) before building
large matrices. The CUDA approximation that papers used at 2048 points is not exact, so
their EMD numbers are not reproduced to the digit by this exact one.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "earth_movers_distance",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_of_features",
    "kid",
    "pairwise_emd",
]

# Largest |S - S^T| / max|S| accepted as rounding in a stored covariance (even float32
# storage rounds at ~1e-7); anything larger is not a covariance.
_SYMMETRY_RTOL = 1e-5


# --------------------------------------------------------------------------------------------
# Argument checks


def _as_float64(where: str, name: str, x, spec: str, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != ndim or not (
        np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
    ):
        raise ValueError(
            f"{where}: {name}: expected real numbers of shape {spec}, got {x.dtype} "
            f"{tuple(x.shape)}"
        )
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{where}: {name}: expected finite values, got {bad} NaN/inf entries")
    return x


def _check_positive_int(where: str, name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where}: {name}: expected an int >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Frechet distance


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) of features [N, D] (N >= 2): the mean and the sample covariance
    (ddof = 1, np.cov(rowvar=False)), float64, as pytorch-fid and torch-fidelity store them."""
    where = "feature_statistics"
    x = _as_float64(where, "features", features, "[N, D]", ndim=2)
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(
            f"{where}: features: expected shape [N, D] with N >= 2 samples (the covariance "
            f"divides by N - 1) and D >= 1, got {tuple(x.shape)}"
        )
    # atleast_2d: np.cov returns a 0-d array for one feature.
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _check_statistics(where: str, index: int, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    mu = _as_float64(where, f"mu{index}", mu, "[D]", ndim=1)
    d = mu.shape[0]
    if d < 1:
        raise ValueError(f"{where}: mu{index}: expected shape [D] with D >= 1, got (0,)")
    sigma = _as_float64(where, f"sigma{index}", sigma, f"[{d}, {d}] (D of mu{index})", ndim=2)
    if sigma.shape != (d, d):
        raise ValueError(
            f"{where}: sigma{index}: expected shape [{d}, {d}] (a square covariance of the "
            f"D = {d} features of mu{index}), got {tuple(sigma.shape)}"
        )
    scale = float(np.max(np.abs(sigma)))
    asymmetry = float(np.max(np.abs(sigma - sigma.T)))
    if asymmetry > _SYMMETRY_RTOL * scale:
        raise ValueError(
            f"{where}: sigma{index}: expected a symmetric covariance, got max |S - S^T| = "
            f"{asymmetry:.3g} against max |S| = {scale:.3g}"
        )
    return mu, 0.5 * (sigma + sigma.T)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (rounding negatives clipped to 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2): means [D], symmetric PSD
    covariances [D, D] (e.g. from feature_statistics). Float64; FID when the statistics are
    of Inception pool features. Module docstring: the formula and how Tr((S1 S2)^(1/2)) is
    taken without sqrtm."""
    where = "frechet_distance"
    mu1, sigma1 = _check_statistics(where, 1, mu1, sigma1)
    mu2, sigma2 = _check_statistics(where, 2, mu2, sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"{where}: mu2: expected shape [{mu1.shape[0]}] (the D of mu1, sigma1), got "
            f"{tuple(mu2.shape)}"
        )
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_of_features(features1, features2) -> float:
    """frechet_distance of the feature_statistics of features1 [N1, D] and features2 [N2, D]
    (N1, N2 >= 2), the same number computed another way when both sets have fewer rows than
    features: with X1, X2 the centred rows, the non-zero eigenvalues of S1 S2 are the squared
    singular values of X2 X1^T / sqrt((N1 - 1)(N2 - 1)), so Tr((S1 S2)^(1/2)) is that
    matrix's nuclear norm: an N2 x N1 SVD instead of two D x D eigendecompositions (768
    Inception rows: about 10^4 times faster than the D = 2048 route)."""
    where = "frechet_distance_of_features"
    x1 = _as_float64(where, "features1", features1, "[N1, D]", ndim=2)
    x2 = _as_float64(where, "features2", features2, "[N2, D]", ndim=2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"{where}: features2: expected shape [N2, {x1.shape[1]}] (the D of features1), "
            f"got {tuple(x2.shape)}"
        )
    n1, n2, d = x1.shape[0], x2.shape[0], x1.shape[1]
    if max(n1, n2) >= d or min(n1, n2) < 2:
        return frechet_distance(*feature_statistics(x1), *feature_statistics(x2))
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    c1, c2 = x1 - mu1, x2 - mu2
    trace1 = float(np.sum(c1 * c1)) / (n1 - 1)
    trace2 = float(np.sum(c2 * c2)) / (n2 - 1)
    singular = np.linalg.svd(c2 @ c1.T, compute_uv=False)
    trace_sqrt = float(np.sum(singular)) / np.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff @ diff + trace1 + trace2 - 2.0 * trace_sqrt)


# --------------------------------------------------------------------------------------------
# KID


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    m = x.shape[0]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.mean())


def kid(
    features_generated,
    features_reference,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over `subsets` random subsets of
    `subset_size` rows of features_generated [N, D] and of features_reference [M, D]
    (N, M >= subset_size >= 2), drawn as torch-fidelity draws them for the same seed
    (module docstring; the default seed is torch-fidelity's)."""
    where = "kid"
    gen = _as_float64(where, "features_generated", features_generated, "[N, D]", ndim=2)
    ref = _as_float64(where, "features_reference", features_reference, "[M, D]", ndim=2)
    if gen.shape[1] < 1 or ref.shape[1] != gen.shape[1]:
        raise ValueError(
            f"{where}: features_reference: expected shape [M, {gen.shape[1]}] (the feature "
            f"size D >= 1 of features_generated {tuple(gen.shape)}), got {tuple(ref.shape)}"
        )
    _check_positive_int(where, "subsets", subsets)
    # m >= 2: the off-diagonal means divide by m (m - 1).
    _check_positive_int(where, "subset_size", subset_size, minimum=2)
    _check_positive_int(where, "seed", seed, minimum=0)
    for name, x in (("features_generated", gen), ("features_reference", ref)):
        if x.shape[0] < subset_size:
            raise ValueError(
                f"{where}: {name}: has {x.shape[0]} samples, fewer than subset_size = "
                f"{subset_size} (subsets are drawn without replacement); pass subset_size <= "
                f"{min(gen.shape[0], ref.shape[0])} or more samples"
            )
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        # Two draws per subset, generated first: torch-fidelity's order, so seeds agree.
        x = gen[rng.choice(gen.shape[0], subset_size, replace=False)]
        y = ref[rng.choice(ref.shape[0], subset_size, replace=False)]
        mmds[i] = _unbiased_mmd2(x, y)
    return float(np.mean(mmds)), float(np.std(mmds))


# --------------------------------------------------------------------------------------------
# Earth Mover's distance


def _check_cloud(where: str, name: str, x, spec: str, ndim: int) -> np.ndarray:
    x = _as_float64(where, name, x, spec, ndim)
    if x.shape[-1] != 3 or x.shape[-2] < 1:
        raise ValueError(
            f"{where}: {name}: expected shape {spec} (at least one point of 3 coordinates), "
            f"got {tuple(x.shape)}"
        )
    return x


def _emd(a: np.ndarray, b: np.ndarray) -> float:
    # Explicit differences: identical points give exactly 0 (no |a|^2 + |b|^2 - 2 a.b).
    cost = np.sqrt(np.sum(np.square(a[:, None, :] - b[None, :, :]), axis=-1))  # [N, N]
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def earth_movers_distance(a, b) -> float:
    """Exact EMD of clouds a [N, 3] and b [N, 3] (equal N): the mean Euclidean distance over
    the optimal one-to-one matching (module docstring: PointFlow's convention), float64."""
    where = "earth_movers_distance"
    a = _check_cloud(where, "a", a, "[N, 3]", ndim=2)
    b = _check_cloud(where, "b", b, "[N, 3]", ndim=2)
    if b.shape != a.shape:
        raise ValueError(
            f"{where}: b: expected shape {tuple(a.shape)} (as many points as a: EMD matches "
            f"points one to one), got {tuple(b.shape)}"
        )
    return _emd(a, b)


def pairwise_emd(x, y) -> np.ndarray:
    """EMD [G, R] between every cloud of x [G, N, 3] and every cloud of y [R, N, 3] (one N);
    entry [g, r] is earth_movers_distance(x[g], y[r]). Float64 numpy, ready for
    ga_jax.metrics.pointcloud.coverage_mmd / one_nna. G x R assignments of O(N^3) each: see
    the module docstring for sizes."""
    where = "pairwise_emd"
    x = _check_cloud(where, "x", x, "[G, N, 3]", ndim=3)
    y = _check_cloud(where, "y", y, "[R, N, 3]", ndim=3)
    if y.shape[1] != x.shape[1]:
        raise ValueError(
            f"{where}: y: expected shape [R, {x.shape[1]}, 3] (the N of x {tuple(x.shape)}: "
            f"EMD matches points one to one), got {tuple(y.shape)}"
        )
    out = np.empty((x.shape[0], y.shape[0]))
    for g in range(x.shape[0]):
        for r in range(y.shape[0]):
            out[g, r] = _emd(x[g], y[r])
    return out
