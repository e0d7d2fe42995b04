"""Tests of cosine similarity, component matching and SBS96 channel order."""

import itertools

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls

from bayesnmf.datasets import load_breast21, load_cosmic
from bayesnmf.signatures import (
    SBS96_CONTEXTS,
    cosine_similarity,
    match_components,
    sbs96_order,
)


@pytest.fixture(scope="module")
def cosmic_v2():
    return load_cosmic("2")


@pytest.fixture(scope="module")
def breast():
    return load_breast21()


def _cosine_loop(A, B):
    """Slow reference: one pair of columns at a time."""
    out = np.zeros((A.shape[1], B.shape[1]))
    for j in range(A.shape[1]):
        for k in range(B.shape[1]):
            a, b = A[:, j], B[:, k]
            norm = np.sqrt(a @ a) * np.sqrt(b @ b)
            out[j, k] = 0.0 if norm == 0 else (a @ b) / norm
    return out


# ---------------------------------------------------------------------------
# cosine_similarity


@pytest.mark.parametrize("shape", [(96, 5, 7), (3, 1, 4), (10, 6, 1)], ids=str)
def test_cosine_similarity_matches_loop(shape):
    n_features, p, q = shape
    rng = np.random.default_rng(0)
    A = rng.gamma(0.5, size=(n_features, p))
    B = rng.normal(size=(n_features, q))
    A[:, 0] = 0.0  # a zero column gives 0, not NaN
    similarity = cosine_similarity(A, B)
    assert similarity.shape == (p, q)
    assert_allclose(similarity, _cosine_loop(A, B), rtol=1e-12, atol=1e-12)
    assert_array_equal(similarity[0], 0.0)


def test_cosine_similarity_scale_invariant_and_bounded():
    rng = np.random.default_rng(1)
    A = rng.gamma(1.0, size=(20, 4))
    similarity = cosine_similarity(A, 3.0 * A)
    assert_allclose(np.diag(similarity), 1.0, rtol=1e-12)
    assert (similarity <= 1.0).all() and (similarity >= 0.0).all()


def test_cosine_similarity_accepts_frames_and_vectors(cosmic_v2):
    similarity = cosine_similarity(cosmic_v2, cosmic_v2["Signature_2"])
    assert similarity.shape == (30, 1)
    assert similarity[1, 0] == pytest.approx(1.0)


def test_cosine_similarity_errors():
    with pytest.raises(ValueError, match="same number of rows"):
        cosine_similarity(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        cosine_similarity(np.array([[np.nan]]), np.ones((1, 1)))
    with pytest.raises(ValueError, match="A must be 2-D"):
        cosine_similarity(np.ones((2, 2, 2)), np.ones((2, 2)))


# ---------------------------------------------------------------------------
# match_components


@pytest.mark.parametrize("version", ["2", "3.4"])
def test_match_recovers_permutation(version):
    reference = load_cosmic(version)
    rng = np.random.default_rng(2)
    perm = rng.permutation(reference.shape[1])
    W = reference.to_numpy()[:, perm]

    table = match_components(W, reference)
    assert list(table.columns) == ["component", "match", "cosine"]
    assert list(table["component"]) == list(range(reference.shape[1]))
    assert list(table["match"]) == list(reference.columns[perm])
    assert_allclose(table["cosine"], 1.0, rtol=1e-12)


def test_match_scaled_noisy_copy(cosmic_v2):
    rng = np.random.default_rng(3)
    chosen = [f"Signature_{k}" for k in (13, 1, 3, 2, 8)]
    scale = rng.uniform(10.0, 1000.0, size=len(chosen))
    # Multiplicative noise of about 10% per entry keeps each copy far closer to its
    # own signature than to any other (v2 signatures are at most 0.92 alike).
    noise = rng.lognormal(sigma=0.1, size=(96, len(chosen)))
    W = pd.DataFrame(
        cosmic_v2[chosen].to_numpy() * scale * noise,
        index=cosmic_v2.index,
        columns=[f"k{i}" for i in range(len(chosen))],
    )

    for one_to_one in (True, False):
        table = match_components(W, cosmic_v2, one_to_one=one_to_one)
        assert list(table["component"]) == list(W.columns)
        assert list(table["match"]) == chosen
        assert (table["cosine"] > 0.97).all()


def test_match_second_best(cosmic_v2):
    W = cosmic_v2[["Signature_2", "Signature_13"]].to_numpy()
    table = match_components(W, cosmic_v2, one_to_one=False)
    assert list(table.columns) == [
        "component",
        "match",
        "cosine",
        "second_match",
        "second_cosine",
    ]
    assert list(table["match"]) == ["Signature_2", "Signature_13"]
    assert (table["second_match"] != table["match"]).all()
    assert (table["second_cosine"] <= table["cosine"]).all()

    # Brute force: the second best is the largest cosine among the others.
    similarity = _cosine_loop(W, cosmic_v2.to_numpy())
    for j, row in table.iterrows():
        others = similarity[j].copy()
        others[list(cosmic_v2.columns).index(row["match"])] = -np.inf
        assert row["second_cosine"] == pytest.approx(others.max(), rel=1e-12)
        assert row["second_match"] == cosmic_v2.columns[np.argmax(others)]


def test_one_to_one_differs_from_greedy():
    # Both components prefer "a"; the assignment gives "a" to the closer one.
    reference = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    W = np.array([[1.0, 1.0], [0.1, 0.5]])
    greedy = match_components(W, reference, one_to_one=False)
    assigned = match_components(W, reference)
    assert list(greedy["match"]) == ["a", "a"]
    assert list(assigned["match"]) == ["a", "b"]


def test_more_components_than_reference():
    reference = pd.DataFrame({"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0]})
    W = np.eye(3)
    table = match_components(W, reference)
    assert list(table["match"]) == ["a", "b", None]
    assert_allclose(table["cosine"], [1.0, 1.0, np.nan])

    table = match_components(W, reference[["a"]], one_to_one=False)
    assert table["second_match"].isna().all()
    assert table["second_cosine"].isna().all()


def test_match_aligns_rows_by_label(cosmic_v2):
    rng = np.random.default_rng(4)
    chosen = ["Signature_5", "Signature_2", "Signature_17"]
    W = cosmic_v2[chosen] * 50.0
    shuffled = W.iloc[rng.permutation(96)]

    table = match_components(shuffled, cosmic_v2)
    assert list(table["match"]) == chosen
    assert_allclose(table["cosine"], 1.0, rtol=1e-12)
    pd.testing.assert_frame_equal(table, match_components(W, cosmic_v2))

    # Matched by position instead, the shuffled rows do not find their signatures.
    by_position = match_components(shuffled.to_numpy(), cosmic_v2)
    assert (by_position["cosine"] < 0.99).all()


def test_match_reference_in_other_channel_order(breast, cosmic_v2):
    # Same signatures, rows in the conventional plotting order instead of sorted.
    reordered = cosmic_v2.iloc[sbs96_order(cosmic_v2.index)]
    W = breast.to_frame()
    pd.testing.assert_frame_equal(
        match_components(W, reordered, one_to_one=False),
        match_components(W, cosmic_v2, one_to_one=False),
    )


def test_match_mismatched_labels_raise(cosmic_v2):
    W = cosmic_v2[["Signature_1"]].rename(index={"A[C>A]A": "A[C>A]X"})
    with pytest.raises(ValueError, match="row labels of W and reference"):
        match_components(W, cosmic_v2)
    with pytest.raises(ValueError, match="row labels of W and reference"):
        match_components(cosmic_v2[["Signature_1"]].reset_index(drop=True), cosmic_v2)
    duplicated = cosmic_v2.iloc[[0] * 96]
    with pytest.raises(ValueError, match="row labels of W must be unique"):
        match_components(duplicated, cosmic_v2)


def test_match_shape_errors(cosmic_v2):
    with pytest.raises(ValueError, match="same number of rows"):
        match_components(np.ones((95, 2)), cosmic_v2)
    with pytest.raises(ValueError, match="W must contain only finite values"):
        match_components(np.full((96, 2), np.nan), cosmic_v2)


# ---------------------------------------------------------------------------
# SBS96 channel order


def test_sbs96_contexts():
    assert len(SBS96_CONTEXTS) == 96
    assert len(set(SBS96_CONTEXTS)) == 96
    assert SBS96_CONTEXTS[:5] == ("A[C>A]A", "A[C>A]C", "A[C>A]G", "A[C>A]T", "C[C>A]A")
    assert SBS96_CONTEXTS[15] == "T[C>A]T"
    assert SBS96_CONTEXTS[16] == "A[C>G]A"
    assert SBS96_CONTEXTS[-1] == "T[T>G]T"
    substitutions = [label[2:5] for label in SBS96_CONTEXTS]
    assert substitutions == sorted(substitutions)  # grouped, in C>A ... T>G order


def test_sbs96_order_of_sigprofiler_labels(breast):
    order = sbs96_order(breast.feature_names)
    assert [breast.feature_names[i] for i in order] == list(SBS96_CONTEXTS)
    frame = breast.to_frame().iloc[order]
    assert tuple(frame.index) == SBS96_CONTEXTS


def test_sbs96_order_random_permutation():
    rng = np.random.default_rng(5)
    labels = pd.Index(np.array(SBS96_CONTEXTS)[rng.permutation(96)])
    order = sbs96_order(labels)
    assert order.dtype.kind == "i"
    assert tuple(labels[order]) == SBS96_CONTEXTS


def test_sbs96_order_errors():
    labels = list(SBS96_CONTEXTS)
    with pytest.raises(ValueError, match="got 95 labels"):
        sbs96_order(labels[:-1])
    with pytest.raises(ValueError, match="duplicated"):
        sbs96_order(labels[:-1] + labels[:1])
    with pytest.raises(ValueError, match="not recognised"):
        sbs96_order(labels[:-1] + ["T[T>G]N"])


# ---------------------------------------------------------------------------
# Real data


def test_pd4120a_is_apobec_dominated(breast, cosmic_v2):
    """The most mutated genome is explained by the APOBEC signatures 2 and 13.

    Nik-Zainal et al. (2012): PD4120a carries most of its mutations in TpCpW context
    (COSMIC v2 signatures 2 and 13). A non-negative combination of these two
    signatures fits it almost exactly, and no pair of the other 28 comes close.
    """
    x = breast.to_frame()["PD4120a"].to_numpy()

    def fitted_cosine(names):
        basis = cosmic_v2[list(names)].to_numpy()
        weights, _ = nnls(basis, x)
        return cosine_similarity(x, basis @ weights)[0, 0]

    assert fitted_cosine(["Signature_2", "Signature_13"]) > 0.99
    others = [s for s in cosmic_v2.columns if s not in ("Signature_2", "Signature_13")]
    best_other = max(fitted_cosine(pair) for pair in itertools.combinations(others, 2))
    assert best_other < 0.8

    catalog = breast.to_frame()[["PD4120a"]]
    table = match_components(catalog, cosmic_v2, one_to_one=False)
    assert {table.loc[0, "match"], table.loc[0, "second_match"]} == {
        "Signature_2",
        "Signature_13",
    }
