"""Comparing likelihoods by held-out predictive log probability."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import bayesnmf as bn
from bayesnmf._precision import precision_scope
from bayesnmf.selection._compare import (
    VI_CONCENTRATION_PRIOR,
    LikelihoodComparison,
    _check_scores,
    _engine_options,
    _vi_model,
    compare_likelihoods,
    discretized_log_prob,
)

M, N, RANK, FOLDS = 30, 20, 3, 3


def poisson_counts(seed=0):
    rng = np.random.default_rng(seed)
    W = rng.gamma(1.0, 1.0, (M, RANK))
    H = rng.gamma(1.0, 20.0, (RANK, N))
    return rng.poisson(W @ H).astype(float)


def gaussian_counts(seed=0):
    """Constant noise sd 3 around means from about 50 to 1700, rounded, >= 0.

    Poisson's variance grows with the mean, so at these means it is far too
    wide for noise of constant size.
    """
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.2, 2.0, (M, RANK))
    H = rng.uniform(20.0, 400.0, (RANK, N))
    X = W @ H + rng.normal(0.0, 3.0, (M, N))
    return np.clip(np.round(X), 0.0, None)


@pytest.fixture(scope="module")
def poisson_comparison():
    return compare_likelihoods(poisson_counts(), ["poisson", "gaussian"],
                               rank=RANK, n_folds=FOLDS)


def _margin(table):
    """Lead of the best model over the second, in standard errors."""
    second = table.iloc[1]
    return -second["diff"] / second["diff_se"]


# -- the verdict -------------------------------------------------------------------
def test_poisson_counts_prefer_poisson(poisson_comparison):
    cmp = poisson_comparison
    assert isinstance(cmp, LikelihoodComparison)
    assert cmp.best == "poisson"
    table = cmp.table
    assert list(table.index) == ["poisson", "gaussian"]
    assert table.loc["poisson", "scored_as"] == "mass"
    assert table.loc["gaussian", "scored_as"] == "discretised density"
    assert table.loc["gaussian", "diff_se"] > 0
    assert _margin(table) > 2
    # Paired: diff is the sum of pointwise differences over every entry.
    diff = cmp.pointwise["gaussian"] - cmp.pointwise["poisson"]
    assert_allclose(table.loc["gaussian", "diff"], diff.sum(), rtol=1e-12)
    assert cmp.settings["n_scored"] == M * N


def test_gaussian_counts_prefer_gaussian():
    cmp = compare_likelihoods(gaussian_counts(), ["poisson", "gaussian"],
                              rank=RANK, n_folds=FOLDS)
    assert cmp.best == "gaussian"
    assert cmp.table.loc["poisson", "diff_se"] > 0
    assert _margin(cmp.table) > 2


def test_same_seed_same_table(poisson_comparison):
    again = compare_likelihoods(poisson_counts(), ["poisson", "gaussian"],
                                rank=RANK, n_folds=FOLDS)
    pd.testing.assert_frame_equal(again.table, poisson_comparison.table)
    other = compare_likelihoods(poisson_counts(), ["poisson", "gaussian"],
                                rank=RANK, n_folds=FOLDS, seed=1)
    assert not other.table["heldout_lpd"].equals(again.table["heldout_lpd"])


def test_output_for_reports(poisson_comparison):
    cmp = poisson_comparison
    text = cmp.summary()
    assert "rank 3" in text and "Best: poisson, ahead of gaussian" in text
    out = json.loads(json.dumps(cmp.to_dict()))
    assert out["best"] == "poisson"
    assert [row["model"] for row in out["table"]] == ["poisson", "gaussian"]
    assert out["settings"]["models"]["poisson"].startswith("rank 3, poisson")
    assert len(out["fold_params"]["gaussian"]) == FOLDS
    assert "noise_var" in out["fold_params"]["gaussian"][0]


# -- discretised densities -----------------------------------------------------------
def test_discretized_gaussian_matches_scipy():
    X = np.array([0.0, 0.0, 1.0, 3.0, 7.0, 12.0, 20.0])
    WH = np.array([0.3, 4.0, 2.5, 3.0, 5.5, 9.0, 18.0])
    sd = 2.5
    lik = bn.Gaussian(noise_scale=None)
    with precision_scope(np.float64):
        got = np.asarray(discretized_log_prob(lik, X, WH, {"noise_var": sd**2}))
    lower = np.where(X == 0, 0.0, stats.norm.cdf(X - 0.5, WH, sd))
    expected = np.log(stats.norm.cdf(X + 0.5, WH, sd) - lower)
    assert_allclose(got, expected, rtol=1e-10)


def test_discretized_gaussian_far_tails_stay_finite():
    # Far above the mean the cdf difference underflows; the upper tail does not.
    X, WH = np.array([60.0]), np.array([2.0])
    lik = bn.Gaussian(noise_scale=2.0)
    with precision_scope(np.float64):
        got = float(discretized_log_prob(lik, X, WH, {})[0])
    expected = np.log(stats.norm.sf(59.5, 2.0, 2.0) - stats.norm.sf(60.5, 2.0, 2.0))
    assert_allclose(got, expected, rtol=1e-8)


def test_discretized_gamma_matches_scipy():
    X = np.array([0.0, 1.0, 2.0, 5.0, 10.0, 30.0])
    WH = np.array([0.8, 1.5, 2.0, 4.0, 12.0, 25.0])
    shape = 2.5
    lik = bn.GammaLikelihood(shape=shape)
    with precision_scope(np.float64):
        got = np.asarray(discretized_log_prob(lik, X, WH, {}))
    # Mean WH, shape a: scale WH / a; the first bin is [0, 1/2].
    cdf = stats.gamma(shape, scale=WH / shape).cdf
    expected = np.log(cdf(X + 0.5) - cdf(np.maximum(X - 0.5, 0.0)))
    assert_allclose(got, expected, rtol=1e-10)


# -- which models can score the data -------------------------------------------
def test_count_likelihoods_left_out_on_continuous_data(rng):
    X = rng.gamma(2.0, 1.0, (M, RANK)) @ rng.gamma(2.0, 1.0, (RANK, N))
    cmp = compare_likelihoods(X, ["poisson", "negbinomial", "gaussian", "gamma"],
                              rank=RANK, n_folds=FOLDS)
    assert set(cmp.table.index) == {"gaussian", "gamma"}
    assert set(cmp.table["scored_as"]) == {"density"}
    assert not cmp.settings["discretize"]
    notes = " ".join(cmp.notes)
    assert "poisson: a count likelihood needs integer data" in notes
    assert "negbinomial: a count likelihood needs integer data" in notes
    assert "Note: poisson" in cmp.summary()


def test_fewer_than_two_usable_models_raise(rng):
    X = rng.gamma(2.0, 1.0, (M, N))
    with pytest.raises(ValueError, match="fewer than two models can score"):
        compare_likelihoods(X, ["poisson", "gaussian"], rank=RANK)
    with pytest.raises(ValueError, match="expected at least two models, got 1"):
        compare_likelihoods(X, ["gaussian"], rank=RANK)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vi_options": {"num_stepz": 10}}, r"\['num_stepz'\] are not arguments"),
        ({"vi_options": {"mask": None}}, r"\['mask'\] are set by"),
        ({"method": "nuts"}, "method: expected 'map' or 'vi'"),
        ({"discretize": "yes"}, "discretize: expected"),
    ],
    ids=["unknown-option", "fixed-option", "method", "discretize"],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare_likelihoods(poisson_counts(), ["poisson", "gaussian"], rank=RANK,
                            **kwargs)


def test_invalid_scores_are_caught():
    held = np.ones((2, 2), bool)
    notes = []
    assert _check_scores("ok", np.full((2, 2), -1.0), held, "mass", notes)
    # A log mass above 0, or NaN, is a numerical failure.
    assert not _check_scores("nb", np.array([[-1.0, 3.0], [-2.0, -1.0]]), held,
                             "mass", notes)
    assert not _check_scores("g", np.array([[np.nan, 1.0], [1.0, 1.0]]), held,
                             "density", notes)
    # A density may exceed 1.
    assert _check_scores("g", np.full((2, 2), 2.0), held, "density", notes)
    assert len(notes) == 2 and notes[0].startswith("nb: 1 held-out entries")


def test_vi_gets_proper_dispersion_priors_and_its_own_options():
    # Under a flat prior SVI lets the NB concentration of Poisson-like counts run
    # off to infinity, where its log probabilities lose every digit.
    flat = bn.NMFModel(RANK, bn.NegativeBinomial())
    vmodel = _vi_model(flat, poisson_counts())
    assert vmodel.likelihood.concentration_prior == VI_CONCENTRATION_PRIOR
    assert vmodel.proper
    options = {"num_steps": 100, "max_iter": 50, "num_draws": 20}
    assert _engine_options(vmodel, options) == {"num_steps": 100, "num_draws": 20}
    poisson = _vi_model(bn.NMFModel(RANK, bn.Poisson()), poisson_counts())
    assert _engine_options(poisson, options) == {"max_iter": 50, "num_draws": 20}


# -- PSIS-LOO ------------------------------------------------------------------------
def test_loo_adds_arviz_compare_table():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compare_likelihoods(poisson_counts(), ["poisson", "gaussian"],
                                  rank=RANK, n_folds=FOLDS, loo=True,
                                  vi_options={"num_draws": 200})
    table = cmp.table
    assert {"elpd_loo", "loo_se", "p_loo", "khat_bad"} <= set(table.columns)
    assert np.isfinite(table["elpd_loo"]).all()
    assert isinstance(cmp.loo_table, pd.DataFrame)
    assert set(cmp.loo_table.index) == {"poisson", "gaussian"}
    assert {"elpd", "elpd_diff", "dse", "weight"} <= set(cmp.loo_table.columns)
    # The Pareto k warning comes exactly when some k is above the threshold.
    pareto = [w for w in caught if issubclass(w.category, bn.ConvergenceWarning)
              and "Pareto k" in str(w.message)]
    assert len(pareto) == int((table["khat_bad"] > 0).any())
