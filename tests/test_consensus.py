"""Tests for consensus clustering measures and silhouette stability."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesnmf.selection import (
    SilhouetteStability,
    connectivity,
    consensus_clusters,
    consensus_matrix,
    consensus_order,
    cophenetic_correlation,
    dispersion,
    pac,
    silhouette_stability,
)

# Copied from shared/data/golub/reference_R_NMF/: R package NMF, method "brunet",
# nrun=50, seed=123456, on the Golub ALL/AML data (38 samples).
R_DIR = Path(__file__).parent / "data" / "reference_R_NMF"
R_PREFIX = "nmfR_brunet_nrun50_seed123456"


def read_r_consensus(rank):
    table = pd.read_csv(R_DIR / f"{R_PREFIX}_rank{rank}_consensus.csv", index_col=0)
    assert list(table.index) == list(table.columns)
    return table.to_numpy()


def read_r_measures():
    return pd.read_csv(R_DIR / f"{R_PREFIX}_measures_rank2to5.csv", index_col="rank")


def block_consensus(labels):
    labels = np.asarray(labels)
    return (labels[:, None] == labels[None, :]).astype(float)


def same_partition(a, b):
    """True when two label vectors define the same partition."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(a)) == len(set(b))


@pytest.fixture
def crisp():
    return block_consensus([0] * 6 + [1] * 5 + [2] * 7)


# ---------------------------------------------------------------- R NMF parity


@pytest.mark.parametrize("rank", [2, 3], ids=["rank2", "rank3"])
def test_matches_r_nmf_measures(rank):
    C = read_r_consensus(rank)
    measures = read_r_measures()

    # R stores the measures to 15 significant digits; ask for six decimals and more.
    assert_allclose(cophenetic_correlation(C), measures.loc[rank, "cophenetic"],
                    rtol=0, atol=5e-7)
    assert_allclose(dispersion(C), measures.loc[rank, "dispersion"], rtol=0, atol=5e-7)
    assert round(cophenetic_correlation(C), 6) == round(
        measures.loc[rank, "cophenetic"], 6
    )
    assert round(dispersion(C), 6) == round(measures.loc[rank, "dispersion"], 6)


@pytest.mark.parametrize("rank", [2, 3], ids=["rank2", "rank3"])
def test_consensus_clusters_match_r_membership(rank):
    C = read_r_consensus(rank)
    membership = pd.read_csv(R_DIR / f"{R_PREFIX}_rank{rank}_membership.csv")
    r_labels = membership["consensus_cluster"].to_numpy()

    labels = consensus_clusters(C, rank)

    assert_array_equal(np.sort(np.unique(labels)), np.arange(rank))
    assert same_partition(labels, r_labels)


def test_r_rank3_membership_recovers_classes():
    C = read_r_consensus(3)
    membership = pd.read_csv(R_DIR / f"{R_PREFIX}_rank3_membership.csv")
    # AML samples have no cell type (NA in the file).
    classes = membership["ALL.AML"] + "-" + membership["Cell"].fillna("")
    labels = consensus_clusters(C, 3)

    # The data README: the rank-3 consensus matches the three classes on 36 of 38.
    table = pd.crosstab(labels, classes.to_numpy())
    assert table.max(axis=1).sum() == 36


# ---------------------------------------------------------------- measures


def test_crisp_consensus_is_perfect(crisp):
    assert cophenetic_correlation(crisp) == pytest.approx(1.0, abs=1e-12)
    assert dispersion(crisp) == 1.0
    assert pac(crisp) == 0.0


def test_noise_lowers_cophenetic_and_dispersion(crisp):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 0.3, size=crisp.shape)
    noise = (noise + noise.T) / 2
    noisy = np.abs(crisp - noise)
    np.fill_diagonal(noisy, 1.0)

    assert cophenetic_correlation(noisy) < 1.0 - 1e-6
    assert dispersion(noisy) < 1.0 - 1e-3
    assert pac(noisy) > 0.0


def test_constant_consensus_gives_nan_with_warning():
    C = np.full((5, 5), 0.5)
    np.fill_diagonal(C, 1.0)
    with pytest.warns(RuntimeWarning, match="undefined"):
        value = cophenetic_correlation(C)
    assert np.isnan(value)

    # Rank 1: every restart puts every sample in one cluster.
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert np.isnan(cophenetic_correlation(np.ones((4, 4))))


def test_dispersion_is_normalised_mean():
    rng = np.random.default_rng(1)
    C = rng.uniform(size=(7, 7))
    C = (C + C.T) / 2
    slow = sum(4 * (C[i, j] - 0.5) ** 2 for i in range(7) for j in range(7)) / 49
    assert_allclose(dispersion(C), slow, rtol=1e-13)


def test_pac_counts_strictly_inside_off_diagonal():
    C = np.array([[1.0, 0.1, 0.5, 0.9],
                  [0.1, 1.0, 0.2, 0.0],
                  [0.5, 0.2, 1.0, 0.95],
                  [0.9, 0.0, 0.95, 1.0]])
    # Off-diagonal pairs: 0.1, 0.5, 0.9, 0.2, 0.0, 0.95 -> inside (0.1, 0.9): 0.5, 0.2.
    assert pac(C) == pytest.approx(2 / 6)
    assert pac(C, lower=0.0, upper=1.0) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="lower < upper"):
        pac(C, lower=0.9, upper=0.1)


def test_consensus_order_groups_blocks():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    order = consensus_order(block_consensus(labels))
    assert_array_equal(np.sort(order), np.arange(8))
    ordered = labels[order]
    # Each cluster forms one contiguous run.
    assert np.count_nonzero(np.diff(ordered)) == 2


def test_consensus_clusters_labels_in_first_appearance_order():
    labels = consensus_clusters(block_consensus([2, 2, 0, 1, 0, 1]), 3)
    assert_array_equal(labels, [0, 0, 1, 2, 1, 2])
    assert_array_equal(consensus_clusters(block_consensus([2, 2, 0]), 1), [0, 0, 0])
    with pytest.raises(ValueError, match="k must lie in"):
        consensus_clusters(np.eye(3), 4)


@pytest.mark.parametrize(
    "C, match",
    [
        (np.ones((3, 4)), "square"),
        (np.array([[1.0, 0.2], [0.3, 1.0]]), "symmetric"),
        (np.array([[1.0, 1.5], [1.5, 1.0]]), r"\[0, 1\]"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
    ],
    ids=["not-square", "asymmetric", "out-of-range", "nan"],
)
def test_invalid_consensus_raises(C, match):
    with pytest.raises(ValueError, match=match):
        dispersion(C)


# ---------------------------------------------------------------- connectivity


def test_connectivity_of_one_fit():
    H = np.array([[3.0, 0.0, 2.0, 0.1], [1.0, 5.0, 0.0, 0.2]])
    expected = block_consensus([0, 1, 0, 1])
    assert_array_equal(connectivity(H), expected)
    assert connectivity(H).dtype == np.float64


def test_consensus_of_identical_fits_is_connectivity():
    rng = np.random.default_rng(2)
    H = rng.gamma(1.0, size=(4, 15))
    H_stack = np.repeat(H[None], 6, axis=0)
    assert_array_equal(consensus_matrix(H_stack), connectivity(H))


def test_consensus_matrix_matches_loop():
    rng = np.random.default_rng(3)
    H_stack = rng.gamma(1.0, size=(9, 3, 20))
    slow = np.zeros((20, 20))
    for H in H_stack:
        labels = H.argmax(axis=0)
        for i in range(20):
            for j in range(20):
                slow[i, j] += labels[i] == labels[j]
    slow /= len(H_stack)

    C = consensus_matrix(H_stack)
    assert C.dtype == np.float64
    assert_allclose(C, slow, rtol=0, atol=1e-15)


def test_consensus_matrix_rejects_single_fit():
    with pytest.raises(ValueError, match=r"\(T, rank, n_samples\)"):
        consensus_matrix(np.ones((2, 5)))


# ---------------------------------------------------------------- silhouette


def planted_restarts(n_restarts=20, n_features=96, rank=4, noise=0.02, seed=0):
    """Restarts of well-separated signatures, columns permuted and noisy per restart."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n_features, rank))
    for k, block in enumerate(np.array_split(np.arange(n_features), rank)):
        W[block, k] = rng.uniform(0.5, 1.5, size=len(block))
    W += 0.01
    W /= W.sum(axis=0)

    permutations = np.stack([rng.permutation(rank) for _ in range(n_restarts)])
    W_stack = np.stack(
        [
            W[:, perm] * np.exp(noise * rng.standard_normal((n_features, rank)))
            * rng.uniform(0.5, 5.0, size=rank)
            for perm in permutations
        ]
    )
    return W, W_stack, permutations


def test_silhouette_stability_planted_signatures():
    W, W_stack, permutations = planted_restarts()

    result = silhouette_stability(W_stack, seed=0)

    assert isinstance(result, SilhouetteStability)
    assert result.average > 0.95
    assert result.minimum > 0.95
    assert result.silhouette.shape == (20, 4)
    assert result.cluster_silhouette.shape == (4,)
    assert_allclose(result.cluster_silhouette.mean(), result.average, rtol=1e-12)

    # Column j of restart t is planted signature permutations[t, j]; clusters are
    # numbered after restart 0, so cluster = position of that signature in restart 0.
    position_in_first = np.argsort(permutations[0])
    assert_array_equal(result.labels, position_in_first[permutations])

    # Centroids recover the planted signatures, in the order of restart 0's columns.
    assert_allclose(result.centroids.sum(axis=0), 1.0, rtol=1e-12)
    assert_allclose(result.centroids, W[:, permutations[0]], atol=2e-3)
    assert np.all(result.cluster_cosine > 0.99)


def test_silhouette_stability_is_deterministic():
    _, W_stack, _ = planted_restarts(noise=0.3, seed=4)
    first = silhouette_stability(W_stack, seed=7)
    second = silhouette_stability(W_stack, seed=7)
    assert first.average == second.average
    assert_array_equal(first.labels, second.labels)


def test_silhouette_drops_above_true_rank():
    # Four reproducible signatures plus a fifth that differs in every restart, as when
    # the rank is too large and the spare component fits noise.
    rng = np.random.default_rng(5)
    W, _, _ = planted_restarts(rank=4, n_restarts=1, seed=5)
    stack = []
    for _ in range(20):
        spare = rng.gamma(0.1, size=(W.shape[0], 1))
        stack.append(np.hstack([W, spare]))
    result = silhouette_stability(np.stack(stack), seed=0)
    assert result.minimum < 0.5
    assert result.average < 0.95


def test_silhouette_undefined_cases_are_nan():
    _, W_stack, _ = planted_restarts(rank=3)

    single_restart = silhouette_stability(W_stack[:1])
    assert np.isnan(single_restart.average) and np.isnan(single_restart.minimum)
    assert_array_equal(single_restart.labels, [[0, 1, 2]])
    assert_allclose(single_restart.cluster_cosine, 1.0, rtol=1e-12)

    single_component = silhouette_stability(W_stack[:, :, :1])
    assert np.isnan(single_component.average)
    assert np.all(np.isnan(single_component.silhouette))
    assert_array_equal(single_component.labels, np.zeros((20, 1), dtype=int))
    assert np.all(single_component.cluster_cosine > 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_sklearn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from bayesnmf.selection._consensus import _cosine_silhouette_samples

    rng = np.random.default_rng(seed)
    points = rng.normal(size=(60, 8)) + np.repeat(rng.normal(size=(4, 8)), 15, axis=0)
    points[3] = 0.0  # a zero row is at cosine distance 1 from everything
    labels = rng.integers(0, 4, size=60)
    labels[:4] = [0, 1, 2, 3]
    labels[59] = 9  # a singleton cluster gets silhouette 0

    expected = sklearn_metrics.silhouette_samples(points, labels, metric="cosine")
    assert_allclose(_cosine_silhouette_samples(points, labels), expected,
                    rtol=1e-10, atol=1e-12)


def test_silhouette_stability_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        silhouette_stability(-np.ones((3, 4, 2)))
    with pytest.raises(ValueError, match=r"\(T, n_features, rank\)"):
        silhouette_stability(np.ones((4, 2)))
    with pytest.raises(TypeError, match="n_starts"):
        silhouette_stability(np.ones((3, 4, 2)), n_starts=2.5)
