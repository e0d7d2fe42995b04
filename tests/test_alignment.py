"""Tests for normalising and aligning components across restarts and chains."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesnmf.alignment import (
    AlignmentResult,
    align_components,
    align_to_reference,
    normalize_factors,
)


def planted_factors(n_features=30, rank=4, n_samples=12, seed=0):
    """Non-negative W with distinct, sparse-ish columns and a matching H."""
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.3, size=(n_features, rank)) + 1e-3
    H = rng.gamma(1.0, size=(rank, n_samples))
    return W, H


def permuted_stack(W, H, n_members, seed=1):
    """Copies of (W, H) with a random column permutation and positive scale each."""
    rng = np.random.default_rng(seed)
    rank = W.shape[1]
    orders = np.stack([rng.permutation(rank) for _ in range(n_members)])
    scales = rng.uniform(0.1, 10.0, size=(n_members, rank))
    W_stack = np.stack([W[:, o] * s for o, s in zip(orders, scales)])
    H_stack = np.stack([H[o] / s[:, None] for o, s in zip(orders, scales)])
    return W_stack, H_stack, orders


# ---------------------------------------------------------------- normalize


def test_normalize_single_and_stack():
    W, H = planted_factors()
    Wn, Hn = normalize_factors(W, H)
    assert_allclose(Wn.sum(axis=0), 1.0, rtol=1e-12)
    assert_allclose(Wn @ Hn, W @ H, rtol=1e-12)

    W_stack, H_stack, _ = permuted_stack(W, H, 5)
    Wn_stack, Hn_stack = normalize_factors(W_stack, H_stack)
    assert_allclose(Wn_stack.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(Wn_stack @ Hn_stack, W_stack @ H_stack, rtol=1e-12)
    for t in range(5):
        member = normalize_factors(W_stack[t], H_stack[t])
        assert_allclose(Wn_stack[t], member[0], rtol=1e-15)
        assert_allclose(Hn_stack[t], member[1], rtol=1e-15)


def test_normalize_keeps_zero_columns_zero():
    W, H = planted_factors(rank=3)
    W[:, 1] = 0.0
    Wn, Hn = normalize_factors(W, H)
    assert np.all(np.isfinite(Wn)) and np.all(np.isfinite(Hn))
    assert_array_equal(Wn[:, 1], 0.0)
    assert_array_equal(Hn[1], 0.0)
    assert_allclose(Wn @ Hn, W @ H, rtol=1e-12)


@pytest.mark.parametrize(
    "W, H, error, match",
    [
        (np.ones((4, 3)), np.ones((2, 5)), ValueError, "components"),
        (np.ones((2, 4, 3)), np.ones((3, 3, 5)), ValueError, "leading dimensions"),
        (-np.ones((4, 3)), np.ones((3, 5)), ValueError, "non-negative"),
        (np.ones(4), np.ones((3, 5)), ValueError, "at least 2 dimensions"),
        (np.full((4, 3), np.nan), np.ones((3, 5)), ValueError, "NaN"),
    ],
    ids=["rank", "batch", "negative", "ndim", "nan"],
)
def test_normalize_rejects_bad_input(W, H, error, match):
    with pytest.raises(error, match=match):
        normalize_factors(W, H)


# ---------------------------------------------------------------- align_to_reference


def test_align_to_reference_recovers_permutation():
    W, H = planted_factors()
    W_stack, H_stack, orders = permuted_stack(W, H, 6)

    aligned = align_to_reference(W_stack, H_stack, W)

    # W_stack[t][:, j] is W[:, orders[t, j]]: slot k must take column argsort(order)[k].
    assert_array_equal(aligned.permutation, np.argsort(orders, axis=1))
    assert_allclose(aligned.matched_cosine, 1.0, rtol=1e-12)
    assert_allclose(aligned.W @ aligned.H, W_stack @ H_stack, rtol=1e-12)
    assert_allclose(normalize_factors(aligned.W, aligned.H)[0],
                    np.broadcast_to(normalize_factors(W, H)[0], W_stack.shape),
                    rtol=1e-12)


def test_align_to_reference_batch_dims():
    W, H = planted_factors()
    W_stack, H_stack, orders = permuted_stack(W, H, 6)
    aligned = align_to_reference(
        W_stack.reshape(2, 3, *W.shape), H_stack.reshape(2, 3, *H.shape), W
    )
    assert aligned.W.shape == (2, 3, *W.shape)
    assert_array_equal(aligned.permutation.reshape(6, -1), np.argsort(orders, axis=1))


def test_align_to_reference_fewer_components():
    W, H = planted_factors(rank=4)
    keep = [3, 1]
    aligned = align_to_reference(W[:, keep], H[keep], W)

    # Reference slots 1 and 3 are filled, 0 and 2 are empty.
    assert_array_equal(aligned.permutation, [-1, 1, -1, 0])
    assert_allclose(aligned.matched_cosine[[1, 3]], 1.0, rtol=1e-12)
    assert np.all(np.isnan(aligned.matched_cosine[[0, 2]]))
    assert_array_equal(aligned.W[:, [0, 2]], 0.0)
    assert_array_equal(aligned.H[[0, 2]], 0.0)
    assert_allclose(aligned.W @ aligned.H, W[:, keep] @ H[keep], rtol=1e-12)


def test_align_to_reference_more_components():
    W, H = planted_factors(rank=4)
    order = [2, 0, 3, 1]
    aligned = align_to_reference(W[:, order], H[order], W[:, :2])

    # Reference components 0 and 1 sit at input columns 1 and 3; the rest follow.
    assert_array_equal(aligned.permutation, [1, 3, 0, 2])
    assert_allclose(aligned.matched_cosine[:2], 1.0, rtol=1e-12)
    assert np.all(np.isnan(aligned.matched_cosine[2:]))
    assert_allclose(aligned.W @ aligned.H, W @ H, rtol=1e-12)


def test_align_to_reference_with_H_reference():
    # Two identical W columns: only H tells them apart.
    W = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    H = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    order = [1, 0, 2]
    aligned = align_to_reference(W[:, order], H[order], W, H_ref=H)
    assert_array_equal(aligned.permutation, [1, 0, 2])
    assert_array_equal(aligned.H, H)


# ---------------------------------------------------------------- align_components


@pytest.mark.parametrize("reference", ["best", 0, 3, -1, "array"],
                         ids=["best", "first", "middle", "last", "array"])
def test_align_components_recovers_planted_factors(reference):
    W, H = planted_factors()
    W_stack, H_stack, orders = permuted_stack(W, H, 8)
    if reference == "array":
        reference = W * 3.0

    result = align_components(W_stack, H_stack, reference=reference)

    assert isinstance(result, AlignmentResult)
    assert result.converged
    # After normalisation and alignment every member is the same factorization.
    assert_allclose(result.W, np.broadcast_to(result.W[0], result.W.shape), rtol=1e-10)
    assert_allclose(result.H, np.broadcast_to(result.H[0], result.H.shape), rtol=1e-10)
    assert_allclose(result.W.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(result.W @ result.H, W_stack @ H_stack, rtol=1e-10)
    assert_allclose(result.cosine, 1.0, rtol=1e-12)
    assert_allclose(result.min_cosine, 1.0, rtol=1e-12)
    assert_allclose(result.mean_cosine, 1.0, rtol=1e-12)
    assert not result.unstable_components().any()
    assert_allclose(result.reference, result.W[0], rtol=1e-10)

    # The aligned order is that of some member's columns (or of W for an array):
    # member t's slot k holds its column argsort(orders[t])[pi[k]] for a common pi.
    planted = np.take_along_axis(orders, result.permutations, axis=1)
    assert_array_equal(planted, np.broadcast_to(planted[0], planted.shape))
    if isinstance(reference, np.ndarray):
        assert_array_equal(result.permutations, np.argsort(orders, axis=1))


def test_align_components_shapes_and_weights():
    W, H = planted_factors()
    W_stack, H_stack, orders = permuted_stack(W, H, 6)
    weights = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    result = align_components(W_stack, H_stack, weights=weights, n_iter=0)

    # "best" with weights picks the heaviest member (4): its columns keep their order.
    assert_array_equal(result.permutations[4], np.arange(4))
    assert result.W.shape == W_stack.shape and result.H.shape == H_stack.shape
    assert result.permutations.shape == result.cosine.shape == (6, 4)
    assert result.reference.shape == W.shape
    assert not result.converged  # n_iter=0 asks for no refinement


def test_align_components_noisy_restarts_flag_unstable_component():
    rng = np.random.default_rng(3)
    W, H = planted_factors(rank=3)
    W_stack, H_stack, orders = permuted_stack(W, H, 10)
    # Planted component 0 is replaced by noise in every member: not reproducible.
    for t in range(10):
        W_stack[t, :, np.flatnonzero(orders[t] == 0)[0]] = rng.uniform(size=W.shape[0])
    result = align_components(W_stack, H_stack)
    assert result.unstable_components().sum() == 1
    assert result.min_cosine.min() < 0.9


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reference": "worst"}, ValueError, "'best', an int or an array"),
        ({"reference": 8}, ValueError, "reference index"),
        ({"reference": np.ones((30, 3))}, ValueError, "align_to_reference"),
        ({"reference": 1.5}, TypeError, "reference must be"),
        ({"weights": -np.ones(8)}, ValueError, "non-negative"),
        ({"weights": np.ones(7)}, ValueError, "leading shape"),
        ({"n_iter": -1}, ValueError, "n_iter"),
    ],
    ids=["string", "index", "rank", "float", "negative-weights", "weights-shape",
         "n_iter"],
)
def test_align_components_rejects_bad_arguments(kwargs, error, match):
    W, H = planted_factors()
    W_stack, H_stack, _ = permuted_stack(W, H, 8)
    with pytest.raises(error, match=match):
        align_components(W_stack, H_stack, **kwargs)


def test_align_components_needs_a_stack():
    W, H = planted_factors()
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        align_components(W, H)


# ---------------------------------------------------------------- R-hat


def test_rhat_near_one_after_alignment():
    arviz_stats = pytest.importorskip("arviz_stats")
    rng = np.random.default_rng(11)
    n_chains, n_draws = 4, 250
    W, H = planted_factors(n_features=12, rank=3, n_samples=8, seed=11)

    # Each chain: its own permutation and scales; each draw: multiplicative noise.
    W_draws = np.empty((n_chains, n_draws, *W.shape))
    H_draws = np.empty((n_chains, n_draws, *H.shape))
    for c in range(n_chains):
        order = rng.permutation(3)
        scale = rng.uniform(0.2, 5.0, size=3)
        W_noise = np.exp(0.05 * rng.standard_normal((n_draws, *W.shape)))
        H_noise = np.exp(0.05 * rng.standard_normal((n_draws, *H.shape)))
        W_draws[c] = (W * W_noise)[:, :, order] * scale
        H_draws[c] = (H * H_noise)[:, order, :] / scale[:, None]

    result = align_components(W_draws, H_draws)

    raw = arviz_stats.rhat(W_draws, chain_axis=0, draw_axis=1)
    aligned = arviz_stats.rhat(result.W, chain_axis=0, draw_axis=1)
    aligned_H = arviz_stats.rhat(result.H, chain_axis=0, draw_axis=1)
    assert raw.max() > 1.5
    # iid draws: rank-normalised split R-hat of 36 quantities stays within ~1% of 1.
    assert aligned.max() < 1.02
    assert aligned_H.max() < 1.02
    assert result.cosine.shape == (n_chains, n_draws, 3)
    assert result.min_cosine.min() > 0.99
