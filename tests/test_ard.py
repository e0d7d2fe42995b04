"""Tests for ARD NMF as a rank estimate: relevances, effective rank, pruning."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import bayesnmf as bn
from bayesnmf.datasets import load_cosmic
from bayesnmf.selection import ARDResult, fit_ard, relevance_table

SIGNATURES = ["SBS1", "SBS2", "SBS5", "SBS13"]


def planted_catalog(seed, n_samples=60):
    """Poisson catalogs 96 x n from four COSMIC v3.4 signatures."""
    rng = np.random.default_rng(seed)
    S = load_cosmic("3.4")[SIGNATURES].to_numpy()
    totals = rng.lognormal(np.log(3000.0), 0.5, size=n_samples)
    P = rng.dirichlet(np.full(len(SIGNATURES), 0.5), size=n_samples).T
    return rng.poisson(S @ (P * totals)).astype(float)


@pytest.fixture(scope="module")
def catalog():
    return planted_catalog(0)


@pytest.fixture(scope="module")
def ard(catalog):
    return fit_ard(catalog, 8, n_restarts=5, seed=0)


def test_planted_rank_found(ard):
    assert isinstance(ard, ARDResult)
    assert ard.effective_rank == 4
    assert len(ard.active_components) == 4
    assert not ard.all_pruned
    assert "kept 4 of 8" in ard.message and "4 pruned" in ard.message


def test_relevance_table(ard, catalog):
    table = ard.relevance
    assert list(table.columns) == ["relevance", "lambda", "active", "share"]
    assert len(table) == 8 and table.index.name == "component"
    assert set(table.index) == {f"C{k}" for k in range(1, 9)}
    # Sorted, active ones first, far apart from the pruned ones.
    assert (np.diff(table["relevance"]) <= 0).all()
    assert table["active"].tolist() == [True] * 4 + [False] * 4
    assert table["relevance"].iloc[3] > 10.0
    assert table["relevance"].iloc[4:].max() < 1e-6
    # Shares of the fitted total: the active components carry all of it.
    assert_allclose(table["share"].sum(), 1.0, rtol=1e-12)
    assert table.loc[table["active"], "share"].min() > 0.1
    # relevance = (λ - B) / B with B the prior's floor (λ from the MAP fit).
    prior = ard.prior
    B = prior.relevance_floor(*catalog.shape)
    lam = ard.fit.extra["relevance"]
    names = ard.fit.component_names
    assert_allclose(table.loc[names, "lambda"], lam, rtol=1e-10)
    assert_allclose(table.loc[names, "relevance"], (lam - B) / B, rtol=1e-6,
                    atol=1e-8)
    assert_allclose(table["lambda"].iloc[4:], B, rtol=1e-6)


def test_prior_is_data_scaled(ard, catalog):
    expected = bn.ard_defaults(catalog, 8)
    assert ard.prior == expected
    assert ard.fit.model.prior_W is ard.fit.model.prior_H or (
        ard.fit.model.prior_W == ard.fit.model.prior_H)
    assert ard.prior.shape == pytest.approx(np.log(96 + 60))


def test_summary_and_repr(ard):
    text = ard.summary()
    assert "ARD NMF" in text and ard.message in text and "relevance" in text
    assert repr(ard) == "ARDResult(effective_rank=4, max_rank=8, threshold=0.001)"


def test_same_seed_same_result(ard, catalog):
    again = fit_ard(catalog, 8, n_restarts=5, seed=0)
    pd.testing.assert_frame_equal(again.relevance, ard.relevance)


def test_halfnormal_penalty_shrinks_to_planted_rank(catalog):
    # The L2 penalty shrinks the surplus components to a sliver of the data
    # without switching them off (see fit_ard's notes): the relevance and the
    # share show the planted four.
    ard = fit_ard(catalog, 8, penalty="halfnormal", n_restarts=5, seed=1)
    assert ard.prior.penalty == "halfnormal"
    table = ard.relevance
    assert table["share"].iloc[:4].sum() > 0.99
    assert table["relevance"].iloc[4] < 0.05 * table["relevance"].iloc[3]


def test_every_component_pruned_gives_rank_zero():
    # Noise far larger than the data: nothing is worth a component.
    X = np.random.default_rng(0).gamma(2.0, 1.0, size=(20, 15))
    ard = fit_ard(X, 4, likelihood=bn.Gaussian(1e3), n_restarts=2, seed=0)
    assert ard.effective_rank == 0
    assert ard.all_pruned and ard.active_components == []
    assert "pruned every component" in ard.message
    assert "effective rank 0" in ard.message
    assert not ard.relevance["active"].any()
    # Every factor entry is exactly 0: there is no fitted total to share.
    assert (ard.fit.W_raw == 0).all() and (ard.relevance["share"] == 0).all()


def test_too_small_max_rank_said_so():
    rng = np.random.default_rng(2)
    X = rng.poisson(rng.gamma(1.0, 1.0, (30, 3)) @ rng.gamma(1.0, 50.0, (3, 25)))
    ard = fit_ard(X, 2, n_restarts=2, seed=0)
    assert ard.effective_rank == 2
    assert "No component was pruned" in ard.message
    assert "larger max_rank" in ard.message


def test_masked_entries_accepted(catalog):
    mask = np.ones_like(catalog)
    mask[::9, ::7] = 0
    ard = fit_ard(catalog, 6, mask=mask, n_restarts=3, seed=0)
    assert ard.effective_rank == 4


def test_explicit_hyperparameters(catalog):
    ard = fit_ard(catalog, 6, shape=10.0, rate=5.0, n_restarts=2, seed=0)
    assert ard.prior == bn.ARD("exponential", 10.0, 5.0)


def test_relevance_table_needs_an_ard_fit(catalog):
    fit = bn.fit_map(catalog, 2, n_restarts=1)
    with pytest.raises(ValueError, match="fit: expected a fit of a model with an ARD"):
        relevance_table(fit)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_rank": 0}, ValueError, "rank"),
        ({"penalty": "l3"}, ValueError, "penalty"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"shape": 1.5}, ValueError, "shape"),
        ({"rate": -1.0}, ValueError, "rate"),
        ({"n_restarts": 0}, ValueError, "n_restarts"),
        ({"likelihood": "poisson"}, TypeError, "likelihood"),
        ({"seed": -2}, TypeError, "seed"),
    ],
    ids=["max-rank", "penalty", "threshold", "shape", "rate", "restarts",
         "likelihood", "seed"],
)
def test_bad_arguments_named(catalog, kwargs, error, match):
    kwargs = {"max_rank": 4, **kwargs}
    with pytest.raises(error, match=match):
        fit_ard(catalog, kwargs.pop("max_rank"), **kwargs)
