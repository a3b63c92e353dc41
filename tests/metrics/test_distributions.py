"""Distribution distances against independent computations: FID against the
scipy.linalg.sqrtm formula of pytorch-fid and against the eigenvalues of S1 S2 (torch-fidelity's
route), closed forms for 1-D and diagonal Gaussians; KID against a plain double loop over
sample pairs; EMD against brute force over all permutations; plus invariances and argument
errors."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
from scipy import linalg

from ga_jax.metrics.distributions import (
    earth_movers_distance,
    feature_statistics,
    frechet_distance,
    frechet_distance_of_features,
    kid,
    pairwise_emd,
)


def correlated_features(rng, n, d, shift=0.0):
    """n samples of d correlated features: Gaussian noise through a random mixing matrix."""
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


def fid_sqrtm(mu1, s1, mu2, s2):
    """pytorch-fid's formula: scipy.linalg.sqrtm of the product S1 S2 (full-rank inputs)."""
    covmean = linalg.sqrtm(s1 @ s2)
    assert np.all(np.isfinite(covmean))
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real


def fid_product_eigenvalues(mu1, s1, mu2, s2):
    """torch-fidelity's route: complex square roots of the eigenvalues of S1 S2."""
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).astype(np.complex128)).real)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr


# --------------------------------------------------------------------------------------------
# Frechet distance


def test_feature_statistics_are_mean_and_sample_covariance():
    x = np.random.default_rng(0).normal(size=(50, 4))
    mu, sigma = feature_statistics(x)
    centred = x - x.sum(axis=0) / 50
    np.testing.assert_allclose(mu, x.sum(axis=0) / 50, rtol=1e-12)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-12)  # ddof = 1
    mu1, sigma1 = feature_statistics(x[:, :1])
    assert mu1.shape == (1,) and sigma1.shape == (1, 1)


def test_fid_matches_sqrtm_formula_on_random_features():
    rng = np.random.default_rng(1)
    stats1 = feature_statistics(correlated_features(rng, 200, 64))
    stats2 = feature_statistics(correlated_features(rng, 200, 64, shift=0.3))
    fid = frechet_distance(*stats1, *stats2)
    reference = fid_sqrtm(*stats1, *stats2)
    # Measured relative differences ~1e-14 (both references) on a FID of ~43.
    assert fid > 1.0
    np.testing.assert_allclose(fid, reference, rtol=1e-9)
    np.testing.assert_allclose(fid, fid_product_eigenvalues(*stats1, *stats2), rtol=1e-9)


def test_fid_on_rank_deficient_covariances_matches_product_eigenvalues():
    # 12 samples of 20 features: both covariances have rank 11, S1 S2 is singular (sqrtm
    # returns a complex matrix here, and pytorch-fid falls back to a 1e-6 diagonal offset when
    # sqrtm gives non-finite values); the eigenvalue route needs neither.
    rng = np.random.default_rng(2)
    stats1 = feature_statistics(correlated_features(rng, 12, 20))
    stats2 = feature_statistics(correlated_features(rng, 12, 20, shift=0.5))
    fid = frechet_distance(*stats1, *stats2)
    # The reference's error: the 9 zero eigenvalues of S1 S2 come out of eigvals as ~1e-15,
    # and their square roots add up to ~1e-7. Measured difference 1.6e-7 on a FID of ~25.
    np.testing.assert_allclose(fid, fid_product_eigenvalues(*stats1, *stats2), atol=1e-5)


def test_fid_of_features_through_the_gram_matrix_equals_the_covariance_route():
    rng = np.random.default_rng(7)
    for n1, n2, d in ((12, 9, 40), (30, 30, 64), (5, 70, 64)):  # the last: N >= D route
        x = correlated_features(rng, n1, d)
        y = correlated_features(rng, n2, d, shift=0.4)
        expected = frechet_distance(*feature_statistics(x), *feature_statistics(y))
        # Measured: 1.6e-8 relative at most, the covariance route's own error on rank-deficient
        # covariances (the square roots of its ~1e-15 zero eigenvalues add up; see above).
        np.testing.assert_allclose(frechet_distance_of_features(x, y), expected, rtol=1e-7)
    with pytest.raises(ValueError, match="features2: expected shape"):
        frechet_distance_of_features(np.zeros((3, 4)), np.zeros((3, 5)))


def test_fid_of_a_set_with_itself_is_zero_and_permutations_do_not_matter():
    rng = np.random.default_rng(3)
    x = correlated_features(rng, 200, 64)
    mu, sigma = feature_statistics(x)
    # Tr(2 S) - 2 Tr((S^2)^(1/2)) cancels to rounding: measured -2e-12 against Tr(S) ~ 62.
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)
    y = correlated_features(rng, 150, 64, shift=0.2)
    fid = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    permuted = frechet_distance(
        *feature_statistics(x[rng.permutation(200)]), *feature_statistics(y[rng.permutation(150)])
    )
    np.testing.assert_allclose(permuted, fid, rtol=1e-10)
    # Symmetric in its two distributions.
    np.testing.assert_allclose(
        frechet_distance(*feature_statistics(y), *feature_statistics(x)), fid, rtol=1e-10
    )


def test_fid_closed_forms_for_1d_and_diagonal_gaussians():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2 with standard deviations s.
    m1, s1, m2, s2 = 1.5, 0.7, -0.25, 2.0
    fid = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]), [[s2**2]])
    np.testing.assert_allclose(fid, (m1 - m2) ** 2 + (s1 - s2) ** 2, rtol=1e-12)
    # Diagonal (commuting) covariances, singular ones included: sum of (sqrt a - sqrt b)^2.
    a, b = np.array([0.0, 1.0, 4.0, 2.5]), np.array([1.0, 0.0, 9.0, 2.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 5 + 3
    fid = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    np.testing.assert_allclose(fid, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# KID


def kid_double_loop(gen, ref, subsets, subset_size, seed):
    """KID written from its definition, one kernel value at a time. The subset draws are
    torch-fidelity's (metric_kid.py): one RandomState, generated rows then reference rows."""
    rng = np.random.RandomState(seed)
    d = gen.shape[1]

    def k(u, v):
        return (sum(float(p) * float(q) for p, q in zip(u, v)) / d + 1.0) ** 3

    values = []
    for _ in range(subsets):
        x = gen[rng.choice(len(gen), subset_size, replace=False)]
        y = ref[rng.choice(len(ref), subset_size, replace=False)]
        m = subset_size
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        values.append(xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m))
    return statistics.fmean(values), statistics.pstdev(values)


def test_kid_matches_a_double_loop_over_sample_pairs():
    rng = np.random.default_rng(4)
    gen = rng.normal(size=(30, 8)) + 0.3
    ref = rng.uniform(-1.0, 1.0, size=(25, 8))
    for seed in (0, 2020):
        mean, std = kid(gen, ref, subsets=3, subset_size=20, seed=seed)
        ref_mean, ref_std = kid_double_loop(gen, ref, subsets=3, subset_size=20, seed=seed)
        # Sums of a few thousand terms in a different order: measured <= 8e-16 absolute.
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(std, ref_std, rtol=1e-8, atol=1e-14)
        assert std > 0  # the subsets differ
    # float32 inputs are computed in float64 all the same.
    gen32, ref32 = gen.astype(np.float32), ref.astype(np.float32)
    mean32, _ = kid(gen32, ref32, subsets=3, subset_size=20, seed=0)
    ref_mean32, _ = kid_double_loop(gen32, ref32, subsets=3, subset_size=20, seed=0)
    np.testing.assert_allclose(mean32, ref_mean32, rtol=1e-10)


def test_kid_with_whole_sets_as_subsets_has_no_spread_and_grows_with_a_shift():
    # subset_size = set size: every subset is a reordering of the whole sets, and the MMD
    # estimate does not depend on the order.
    rng = np.random.default_rng(5)
    gen, ref = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    mean, std = kid(gen, ref, subsets=4, subset_size=40, seed=7)
    assert std < 1e-12 * max(1.0, abs(mean))
    np.testing.assert_allclose(mean, kid_double_loop(gen, ref, 1, 40, 0)[0], rtol=1e-10)
    shifted, _ = kid(gen + 1.0, ref, subsets=4, subset_size=40, seed=7)
    assert shifted > mean + 0.1


def test_kid_refuses_sets_smaller_than_a_subset():
    gen, ref = np.zeros((30, 4)), np.zeros((25, 4))
    with pytest.raises(ValueError, match=r"features_reference: has 25 samples.*subset_size <= 25"):
        kid(gen, ref, subsets=2, subset_size=26)
    with pytest.raises(ValueError, match=r"features_generated: has 30 samples.*subset_size <= 30"):
        kid(gen, np.zeros((40, 4)), subsets=2, subset_size=31)


# --------------------------------------------------------------------------------------------
# EMD


def emd_brute_force(a, b):
    """Mean matched Euclidean distance, minimised over every permutation."""
    n = len(a)
    return min(
        sum(float(np.linalg.norm(a[i] - b[p[i]])) for i in range(n)) / n
        for p in itertools.permutations(range(n))
    )


def test_emd_matches_brute_force_over_permutations():
    rng = np.random.default_rng(6)
    for n in (1, 2, 3, 5, 6):
        a, b = rng.uniform(-0.5, 0.5, (n, 3)), rng.uniform(-0.5, 0.5, (n, 3))
        np.testing.assert_allclose(earth_movers_distance(a, b), emd_brute_force(a, b), rtol=1e-12)
    # Unsquared distances: two single points 3-4-0 apart are 5 apart, not 25.
    assert earth_movers_distance([[0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0]]) == 5.0


def test_emd_of_a_permuted_copy_is_zero_and_pairwise_matrices_agree():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(64, 3))
    assert earth_movers_distance(a, a[rng.permutation(64)]) == 0.0
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    y = rng.normal(size=(3, 6, 3))
    d = pairwise_emd(x, y)
    assert d.shape == (4, 3) and d.dtype == np.float64
    for g, r in itertools.product(range(4), range(3)):
        np.testing.assert_allclose(d[g, r], emd_brute_force(x[g].astype(np.float64), y[r]))
    np.testing.assert_allclose(pairwise_emd(y, x), d.T, rtol=1e-12)
    d_xx = pairwise_emd(x, x)
    np.testing.assert_allclose(d_xx, d_xx.T, rtol=1e-12)
    assert np.all(np.diag(d_xx) == 0.0)


def test_pairwise_emd_feeds_coverage_mmd():
    from ga_jax.metrics.pointcloud import coverage_mmd  # noqa: PLC0415 - imports jax

    rng = np.random.default_rng(8)
    reference = rng.normal(size=(3, 8, 3))
    # Noisy copies of reference clouds 0 and 2: they cover 2 of 3, and MMD is the mean over
    # the reference clouds of their nearest generated cloud's EMD.
    generated = reference[[0, 2]] + 0.01 * rng.normal(size=(2, 8, 3))
    d = pairwise_emd(generated, reference)
    coverage, mmd = coverage_mmd(d)
    np.testing.assert_allclose(float(coverage), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(mmd), d.min(axis=0).mean(), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Errors name the function, the argument and what was expected


def test_bad_arguments_name_the_argument_and_what_was_expected():
    mu, sigma = np.zeros(3), np.eye(3)
    nan_sigma = np.eye(3)
    nan_sigma[1, 2] = np.nan
    cloud = np.zeros((5, 3))
    cases = [
        (lambda: feature_statistics(np.zeros(5)), r"feature_statistics: features: .*\[N, D\]"),
        (lambda: feature_statistics(np.zeros((1, 5))), r"features: .*N >= 2"),
        (
            lambda: feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]])),
            "features: expected finite values, got 1 NaN",
        ),
        (
            lambda: frechet_distance(mu, sigma, np.zeros(4), np.eye(4)),
            r"frechet_distance: mu2: expected shape \[3\]",
        ),
        (
            lambda: frechet_distance(mu, np.eye(4), mu, sigma),
            r"sigma1: expected shape \[3, 3\]",
        ),
        (
            lambda: frechet_distance(mu, sigma, mu, np.zeros((3, 4))),
            r"sigma2: expected shape \[3, 3\]",
        ),
        (lambda: frechet_distance(mu, nan_sigma, mu, sigma), "sigma1: expected finite values"),
        (
            lambda: frechet_distance([0.0, np.inf, 0.0], sigma, mu, sigma),
            "mu1: expected finite values",
        ),
        (
            lambda: frechet_distance(mu, sigma, mu, np.triu(np.ones((3, 3)))),
            "sigma2: expected a symmetric covariance",
        ),
        (
            lambda: kid(np.zeros((10, 4)), np.zeros((10, 5)), subset_size=5),
            r"kid: features_reference: expected shape \[M, 4\]",
        ),
        (
            lambda: kid(np.full((10, 4), np.nan), np.zeros((10, 4)), subset_size=5),
            "features_generated: expected finite values",
        ),
        (lambda: kid(np.zeros((10, 4)), np.zeros((10, 4)), subset_size=1), "subset_size: .*>= 2"),
        (
            lambda: kid(np.zeros((10, 4)), np.zeros((10, 4)), subsets=0, subset_size=5),
            "subsets: expected an int >= 1",
        ),
        (
            lambda: earth_movers_distance(cloud, np.zeros((6, 3))),
            r"earth_movers_distance: b: expected shape \(5, 3\)",
        ),
        (
            lambda: earth_movers_distance(np.zeros((5, 2)), np.zeros((5, 2))),
            r"a: expected shape \[N, 3\]",
        ),
        (
            lambda: earth_movers_distance(cloud, np.full((5, 3), np.nan)),
            "b: expected finite values",
        ),
        (
            lambda: pairwise_emd(np.zeros((2, 5, 3)), np.zeros((2, 6, 3))),
            r"pairwise_emd: y: expected shape \[R, 5, 3\]",
        ),
        (lambda: pairwise_emd(cloud, np.zeros((2, 5, 3))), r"x: expected .*\[G, N, 3\]"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
