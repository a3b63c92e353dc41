"""Point-cloud metrics against independent computations: scipy's cKDTree for nearest
distances and F-scores, brute-force float64 numpy for Chamfer matrices, and plain-loop numpy
re-implementations of COV, MMD and 1-NNA written from their definitions; plus hand cases
whose answer is known in closed form, chunking invariance and argument errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from ga_jax.metrics.pointcloud import (
    CHAMFER_VARIANTS,
    chamfer_distance,
    coverage_mmd,
    f_score,
    generation_metrics,
    nearest_class,
    nearest_squared_distances,
    one_nna,
    pairwise_chamfer,
)

# float32 sums of squares vs float64 references: relative error ~1e-6 measured; 1e-5 leaves room.
RTOL = 1e-5


def random_cloud(rng, n, scale=0.45):
    return rng.uniform(-scale, scale, (n, 3)).astype(np.float32)


def nearest_kdtree(a, b):
    """Unsquared nearest distances both ways, float64, via scipy.spatial.cKDTree."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return cKDTree(b64).query(a64)[0], cKDTree(a64).query(b64)[0]


def chamfer_numpy(a, b, variant):
    """All pair distances in float64, then the variant as the module docstring states it."""
    d = np.sum((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2, axis=-1)
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    if variant.startswith("l2"):
        d_ab, d_ba = np.sqrt(d_ab), np.sqrt(d_ba)
    total = d_ab.mean() + d_ba.mean()
    return total if variant.endswith("_sum") else total / 2


def coverage_mmd_numpy(d):
    nearest_reference = {int(np.argmin(row)) for row in d}
    return len(nearest_reference) / d.shape[1], float(np.mean(d.min(axis=0)))


def one_nna_numpy(d_gg, d_rr, d_gr):
    g, r = d_gr.shape
    full = np.block([[d_gg, d_gr], [d_gr.T, d_rr]]).astype(np.float64)
    correct = 0
    for i in range(g + r):
        row = full[i].copy()
        row[i] = np.inf
        correct += (int(np.argmin(row)) < g) == (i < g)
    return correct / (g + r)


# --------------------------------------------------------------------------------------------
# One pair


def test_nearest_distances_match_kdtree():
    rng = np.random.default_rng(0)
    a, b = random_cloud(rng, 1000), random_cloud(rng, 777)
    d_ab, d_ba = nearest_squared_distances(jnp.asarray(a), jnp.asarray(b), chunk_size=300)
    ref_ab, ref_ba = nearest_kdtree(a, b)
    np.testing.assert_allclose(np.sqrt(d_ab), ref_ab, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(np.sqrt(d_ba), ref_ba, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("variant", CHAMFER_VARIANTS)
def test_chamfer_variants_match_kdtree_and_brute_force(variant):
    rng = np.random.default_rng(1)
    a, b = random_cloud(rng, 512), random_cloud(rng, 300)
    got = float(chamfer_distance(jnp.asarray(a), jnp.asarray(b), variant))
    np.testing.assert_allclose(got, chamfer_numpy(a, b, variant), rtol=RTOL)
    ab, ba = nearest_kdtree(a, b)
    power = 1 if variant.startswith("l2") else 2
    total = np.mean(ab**power) + np.mean(ba**power)
    np.testing.assert_allclose(got, total if variant.endswith("sum") else total / 2, rtol=RTOL)


def test_identical_clouds_give_zero_and_a_translated_grid_its_shift():
    grid = np.stack(np.meshgrid(*[np.arange(6) * 0.1] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = jnp.asarray(grid, jnp.float32)
    for variant in CHAMFER_VARIANTS:
        assert float(chamfer_distance(grid, grid, variant)) == 0.0
    # Shifted by t, |t| < spacing / 2: every point's nearest is its own copy, at |t|.
    t = np.array([0.03, -0.02, 0.01])
    shift = float(np.linalg.norm(t))
    moved = grid + jnp.asarray(t, jnp.float32)
    expected = {
        "squared_sum": 2 * shift**2,
        "squared_mean": shift**2,
        "l2_sum": 2 * shift,
        "l2_mean": shift,
    }
    for variant, value in expected.items():
        np.testing.assert_allclose(float(chamfer_distance(grid, moved, variant)), value, rtol=1e-4)


def test_chunking_and_batching_do_not_change_the_result():
    rng = np.random.default_rng(2)
    a = jnp.asarray(np.stack([random_cloud(rng, 200) for _ in range(6)]).reshape(2, 3, 200, 3))
    b = jnp.asarray(np.stack([random_cloud(rng, 150) for _ in range(6)]).reshape(2, 3, 150, 3))
    results = [chamfer_distance(a, b, "squared_sum", chunk_size=c) for c in (1, 7, 64, 200, 4096)]
    assert results[0].shape == (2, 3)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-6)
    loop = [
        chamfer_numpy(np.asarray(x), np.asarray(y), "squared_sum")
        for x, y in zip(a.reshape(6, 200, 3), b.reshape(6, 150, 3))
    ]
    np.testing.assert_allclose(np.asarray(results[0]).ravel(), loop, rtol=RTOL)


def test_jit_and_float32_output():
    rng = np.random.default_rng(3)
    a, b = jnp.asarray(random_cloud(rng, 64)), jnp.asarray(random_cloud(rng, 50))
    jitted = jax.jit(lambda x, y: chamfer_distance(x, y, "l2_mean", chunk_size=16))
    np.testing.assert_allclose(jitted(a, b), chamfer_distance(a, b, "l2_mean"), rtol=1e-6)
    assert jitted(a, b).dtype == jnp.float32


def test_f_score_matches_kdtree():
    rng = np.random.default_rng(4)
    pred, target = random_cloud(rng, 600), random_cloud(rng, 500)
    pred[:100] += 0.3  # some predicted points far from the target: precision < recall
    for threshold in (0.01, 0.05, 0.2):
        got = f_score(jnp.asarray(pred), jnp.asarray(target), threshold, chunk_size=128)
        ab, ba = nearest_kdtree(pred, target)
        precision, recall = np.mean(ab < threshold), np.mean(ba < threshold)
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        np.testing.assert_allclose(got.precision, precision, rtol=1e-6)
        np.testing.assert_allclose(got.recall, recall, rtol=1e-6)
        np.testing.assert_allclose(got.f, f, rtol=1e-6)
    far = f_score(jnp.zeros((4, 3)), jnp.ones((5, 3)), 0.1)
    assert float(far.f) == 0.0 and float(far.precision) == 0.0  # no NaN when P = R = 0
    same = f_score(jnp.ones((4, 3)), jnp.ones((5, 3)), 1e-3)
    assert float(same.f) == float(same.precision) == float(same.recall) == 1.0


# --------------------------------------------------------------------------------------------
# Banks


def make_bank(rng, count, n):
    return np.stack([random_cloud(rng, n) for _ in range(count)])


def test_pairwise_matches_brute_force_and_pair_batch_does_not_matter():
    rng = np.random.default_rng(5)
    x, y = make_bank(rng, 5, 96), make_bank(rng, 7, 80)
    got = pairwise_chamfer(jnp.asarray(x), jnp.asarray(y), "squared_sum", chunk_size=40)
    assert got.shape == (5, 7)
    expected = [[chamfer_numpy(a, b, "squared_sum") for b in y] for a in x]
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    batched = pairwise_chamfer(
        jnp.asarray(x), jnp.asarray(y), "squared_sum", chunk_size=96, pair_batch=3
    )
    np.testing.assert_allclose(batched, got, rtol=1e-6)


def test_pairwise_expanded_form_is_close_to_the_exact_one():
    # |a|^2 + |b|^2 - 2 a.b cancels for near points: close, not exact; identical clouds give
    # small positive values where the exact form gives 0.
    rng = np.random.default_rng(7)
    x, y = make_bank(rng, 4, 96), make_bank(rng, 3, 80)
    y[0] = x[2, :80]
    expected = [[chamfer_numpy(a, b, "l2_mean") for b in y] for a in x]
    got = pairwise_chamfer(jnp.asarray(x), jnp.asarray(y), "l2_mean", expanded=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    same = pairwise_chamfer(jnp.asarray(y[:1]), jnp.asarray(y[:1]), "l2_mean", expanded=True)
    assert 0.0 <= float(same[0, 0]) < 1e-3


def test_nearest_class_recovers_the_labels_of_noisy_copies():
    rng = np.random.default_rng(6)
    bank = make_bank(rng, 12, 128)
    labels = np.arange(12) % 4
    picks = np.array([3, 0, 11, 7, 5])
    queries = bank[picks] + rng.normal(0, 0.005, (5, 128, 3)).astype(np.float32)
    queries = queries[:, rng.permutation(128)[:100]]  # fewer points, shuffled
    got = nearest_class(jnp.asarray(queries), jnp.asarray(bank), jnp.asarray(labels), "l2_mean")
    np.testing.assert_array_equal(got.index, picks)
    np.testing.assert_array_equal(got.label, labels[picks])
    expected = [chamfer_numpy(queries[i], bank[picks[i]], "l2_mean") for i in range(5)]
    np.testing.assert_allclose(got.distance, expected, rtol=RTOL)


def test_coverage_mmd_and_one_nna_match_numpy_on_random_matrices():
    rng = np.random.default_rng(7)
    for g, r in ((9, 6), (4, 11), (1, 2)):
        d_gr = rng.uniform(size=(g, r)).astype(np.float32)
        d_gg = rng.uniform(size=(g, g)).astype(np.float32)
        d_rr = rng.uniform(size=(r, r)).astype(np.float32)
        d_gg, d_rr = (d_gg + d_gg.T) / 2, (d_rr + d_rr.T) / 2
        cov, mmd = coverage_mmd(jnp.asarray(d_gr))
        ref_cov, ref_mmd = coverage_mmd_numpy(d_gr)
        np.testing.assert_allclose([cov, mmd], [ref_cov, ref_mmd], rtol=1e-6)
        nna = one_nna(jnp.asarray(d_gg), jnp.asarray(d_rr), jnp.asarray(d_gr))
        np.testing.assert_allclose(nna, one_nna_numpy(d_gg, d_rr, d_gr), rtol=1e-6)


def test_set_measures_hand_cases():
    rng = np.random.default_rng(8)
    reference = make_bank(rng, 6, 64)
    # The reference set itself: every cloud covered at distance 0, and every sample's nearest
    # neighbour is its twin in the other set, so 1-NNA is 0.
    same = generation_metrics(jnp.asarray(reference), jnp.asarray(reference), "squared_sum")
    assert float(same["coverage"]) == 1.0 and float(same["mmd"]) == 0.0
    assert float(same["one_nna"]) == 0.0
    # Mode collapse: 5 copies of reference cloud 2 cover 1 of 6 references.
    collapsed = np.repeat(reference[2:3], 5, axis=0)
    got = generation_metrics(
        jnp.asarray(collapsed), jnp.asarray(reference), "squared_sum", with_one_nna=False
    )
    assert set(got) == {"coverage", "mmd"}
    np.testing.assert_allclose(got["coverage"], 1 / 6)
    d = np.array([chamfer_numpy(reference[2], ref, "squared_sum") for ref in reference])
    np.testing.assert_allclose(got["mmd"], d.mean(), rtol=RTOL)
    # Far away generated clouds: the sets separate perfectly, 1-NNA = 1.
    far = generation_metrics(jnp.asarray(reference[:4] + 5.0), jnp.asarray(reference), "l2_sum")
    assert float(far["one_nna"]) == 1.0


def test_generation_metrics_match_numpy_end_to_end():
    rng = np.random.default_rng(9)
    generated, reference = make_bank(rng, 7, 48), make_bank(rng, 5, 40)
    got = generation_metrics(
        jnp.asarray(generated), jnp.asarray(reference), "squared_sum", chunk_size=16, pair_batch=2
    )
    cd = lambda xs, ys: np.array([[chamfer_numpy(x, y, "squared_sum") for y in ys] for x in xs])
    d_gr = cd(generated, reference)
    cov, mmd = coverage_mmd_numpy(d_gr)
    np.testing.assert_allclose([got["coverage"], got["mmd"]], [cov, mmd], rtol=RTOL)
    nna = one_nna_numpy(cd(generated, generated), cd(reference, reference), d_gr)
    np.testing.assert_allclose(got["one_nna"], nna)


# --------------------------------------------------------------------------------------------
# Errors name the argument and the expected shape


def test_bad_arguments_name_the_argument_and_shape():
    c = jnp.zeros((10, 3))
    cases = [
        (
            lambda: chamfer_distance(jnp.zeros((10, 2)), c, "squared_sum"),
            r"a: expected shape \[\.\.\., N, 3\]",
        ),
        (
            lambda: chamfer_distance(c, jnp.zeros((0, 3)), "squared_sum"),
            r"b: expected shape \[\.\.\., M, 3\]",
        ),
        (
            lambda: chamfer_distance(jnp.zeros((2, 10, 3)), jnp.zeros((3, 10, 3)), "l2_sum"),
            r"b: expected shape \(2, 'M', 3\)",
        ),
        (lambda: chamfer_distance(c, c, "chamfer"), "variant: expected one of squared_sum"),
        (lambda: chamfer_distance(c, c, "l2_sum", chunk_size=0), "chunk_size: expected an int"),
        (lambda: f_score(c, jnp.zeros((3,)), 0.1), r"target: expected shape \[\.\.\., M, 3\]"),
        (lambda: f_score(c, c, 0.0), "threshold: expected a distance > 0"),
        (
            lambda: pairwise_chamfer(c, jnp.zeros((2, 10, 3)), "l2_sum"),
            r"x: expected shape \[A, N, 3\]",
        ),
        (
            lambda: pairwise_chamfer(
                jnp.zeros((2, 10, 3)), jnp.zeros((2, 10, 3)), "l2_sum", pair_batch=0
            ),
            "pair_batch",
        ),
        (
            lambda: nearest_class(
                jnp.zeros((2, 10, 3)), jnp.zeros((3, 10, 3)), jnp.zeros(2, int), "l2_sum"
            ),
            r"labels: expected ints of shape \[3\]",
        ),
        (
            lambda: nearest_class(
                jnp.zeros((2, 10, 3)), jnp.zeros((3, 10, 3)), jnp.zeros(3), "l2_sum"
            ),
            r"labels: expected ints",
        ),
        (lambda: coverage_mmd(jnp.zeros(4)), r"distances: expected shape \[\?, \?\]"),
        (
            lambda: one_nna(jnp.zeros((2, 2)), jnp.zeros((3, 3)), jnp.zeros((2, 4))),
            r"d_rr: expected shape \[4, 4\]",
        ),
        (
            lambda: generation_metrics(c, jnp.zeros((2, 10, 3)), "l2_sum"),
            r"generated: expected shape \[G, N, 3\]",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
