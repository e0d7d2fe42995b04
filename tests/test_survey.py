"""Tests for the rank survey: fit, stability, held-out, BCV, ELBO, LOO and ARD."""

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import linear_sum_assignment

import bayesnmf as bn
from bayesnmf import ConvergenceWarning
from bayesnmf.datasets import load_cosmic, load_golub
from bayesnmf.map import _kernels
from bayesnmf.selection import (
    RankSurvey,
    bcv_folds,
    bcv_log_density,
    consensus_clusters,
    heldout_log_density,
    rank_survey,
)
from bayesnmf._api import vi_engine
from bayesnmf.selection._restarts import fit_restarts, random_starts
from bayesnmf.selection._survey import _evidence_model

PLANTED_RANK = 4
SIGNATURES = ["SBS1", "SBS2", "SBS5", "SBS13"]


def planted_catalog(seed, n_samples=60):
    """Poisson catalogs 96 x n from four COSMIC v3.4 signatures.

    Totals are lognormal around 3000 mutations, proportions Dirichlet(0.5).
    """
    rng = np.random.default_rng(seed)
    S = load_cosmic("3.4")[SIGNATURES].to_numpy()
    totals = rng.lognormal(np.log(3000.0), 0.5, size=n_samples)
    P = rng.dirichlet(np.full(len(SIGNATURES), 0.5), size=n_samples).T
    return rng.poisson(S @ (P * totals)).astype(float)


def small_poisson(seed=0, m=30, n=20, r=2, scale=40.0):
    rng = np.random.default_rng(seed)
    W = rng.gamma(1.0, 1.0, (m, r))
    H = rng.gamma(1.0, scale, (r, n))
    return rng.poisson(W @ H).astype(float)


def small_gaussian(seed=1, m=40, n=30, r=3, noise=0.3):
    rng = np.random.default_rng(seed)
    W = rng.gamma(1.0, 1.0, (m, r))
    H = rng.gamma(1.0, 2.0, (r, n))
    return np.maximum(W @ H + rng.normal(0.0, noise, (m, n)), 0.0)


# Shared fits: one survey per seed on the planted catalogs (the kernels compile
# once for the shape and every rank, then each seed takes about a second).
@pytest.fixture(scope="module")
def planted_surveys():
    return {
        seed: rank_survey(planted_catalog(seed), range(2, 7), n_restarts=20, seed=seed,
                          criteria=("stability", "heldout"), heldout_restarts=3)
        for seed in range(5)
    }


@pytest.fixture(scope="module")
def dense_surveys():
    surveys = {}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        W = rng.gamma(0.5, 1.0, (60, 3))
        H = rng.gamma(1.0, 20.0, (3, 40))
        X = rng.poisson(W @ H).astype(float)
        surveys[seed] = rank_survey(X, range(1, 6), n_restarts=10, seed=seed,
                                    criteria=("heldout", "bcv"), heldout_restarts=3)
    return surveys


@pytest.fixture(scope="module")
def poisson_small():
    return small_poisson()


@pytest.fixture(scope="module")
def evidence_survey(poisson_small):
    """ELBO and PSIS-LOO share one variational fit per rank."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        survey = rank_survey(poisson_small, [1, 2, 3], n_restarts=3,
                             criteria=("elbo", "loo"), evidence_restarts=3,
                             loo_draws=100)
    return survey, caught


# ------------------------------------------------------------ planted catalogs


def test_planted_rank_recovered(planted_surveys):
    chosen = [s.recommended_rank for s in planted_surveys.values()]
    assert sum(r == PLANTED_RANK for r in chosen) >= 4, chosen
    for s in planted_surveys.values():
        assert s.rule.startswith(f"Rank {s.recommended_rank}:")


def test_same_seed_gives_the_same_table(planted_surveys):
    again = rank_survey(planted_catalog(0), range(2, 7), n_restarts=20, seed=0,
                        criteria=("stability", "heldout"), heldout_restarts=3)
    pd.testing.assert_frame_equal(again.table, planted_surveys[0].table)
    assert again.recommended_rank == planted_surveys[0].recommended_rank
    assert_array_equal(again.consensus[4], planted_surveys[0].consensus[4])


def test_train_loss_never_rises_with_rank(planted_surveys):
    for s in planted_surveys.values():
        for column in ("neg_loglik", "divergence"):
            values = s.table[column].to_numpy()
            # Best of 20 float32 restarts: allow rounding of the last digits.
            rises = np.diff(values) - 1e-5 * np.abs(values[1:])
            assert np.all(rises <= 0), (column, values)


def test_fewer_components_predict_far_worse(planted_surveys):
    for s in planted_surveys.values():
        per_entry = s.table["heldout_lpd_per_entry"]
        # Over a nat per entry lost; the paired standard errors are no yardstick
        # here, since one badly predicted count can dominate them.
        for r in (2, 3):
            assert per_entry[PLANTED_RANK] - per_entry[r] > 1.0, (r, per_entry)


def test_heldout_and_bcv_peak_where_train_loss_keeps_falling(dense_surveys):
    # Dense planted factors, rank 3: the training loss falls with every added
    # component while both held-out log densities peak at the planted rank.
    for s in dense_surveys.values():
        t = s.table
        assert np.all(np.diff(t["neg_loglik"]) < 0)
        assert np.all(np.diff(t["divergence"]) < 0)
        assert int(t["heldout_lpd"].idxmax()) == 3
        assert int(t["bcv_lpd"].idxmax()) == 3
        # Rank 4 is worse than rank 3 by more than its paired standard error.
        assert t.loc[4, "heldout_diff"] < -t.loc[4, "heldout_diff_se"]
        assert s.recommended_rank == 3
        assert "held-out log density" in s.rule


def test_bcv_columns(dense_surveys):
    t = dense_surveys[0].table
    for column in ("bcv_lpd", "bcv_se", "bcv_lpd_per_entry", "bcv_diff",
                   "bcv_diff_se"):
        assert column in t
    assert_allclose(t["bcv_lpd"] / t["bcv_lpd_per_entry"], 60 * 40)
    assert t["bcv_diff"].max() == 0.0


def test_stability_peaks_at_planted_rank(planted_surveys):
    for s in planted_surveys.values():
        sil = s.table["silhouette_min"]
        assert sil[PLANTED_RANK] > 0.9
        assert sil[PLANTED_RANK + 1] < sil[PLANTED_RANK]


def test_table_and_survey_contents(planted_surveys):
    s = planted_surveys[0]
    assert isinstance(s, RankSurvey)
    assert list(s.table.index) == [2, 3, 4, 5, 6]
    for column in ("neg_loglik", "divergence", "restarts_converged", "cophenetic",
                   "dispersion", "pac", "silhouette_mean", "silhouette_min",
                   "heldout_lpd", "heldout_se", "heldout_lpd_per_entry",
                   "heldout_diff", "heldout_diff_se"):
        assert column in s.table
    assert sorted(s.consensus) == [2, 3, 4, 5, 6]
    assert s.consensus[4].shape == (60, 60)
    assert s.fits[4].restarts["W_raw"].shape == (20, 96, 4)
    assert s.fits[4].settings["n_restarts"] == 20
    # The Poisson divergence is the negative log-likelihood less its constant.
    assert np.all(s.table["divergence"] < s.table["neg_loglik"])
    assert s.ard is None and s.ard_rank is None and s.loo == {}
    text = s.summary()
    assert "Recommended rank: " in text and s.rule in text


def test_save_writes_tables(planted_surveys, tmp_path):
    folder = planted_surveys[0].save(tmp_path / "survey")
    table = pd.read_csv(folder / "criteria.tsv", sep="\t", index_col=0)
    assert_allclose(table["cophenetic"], planted_surveys[0].table["cophenetic"])
    assert (folder / "recommendation.txt").read_text().startswith("Rank survey")
    assert (folder / "consensus_rank4.tsv").exists()


# ------------------------------------------------------------ Golub (Brunet)


def misplaced(C, labels, k):
    """Samples outside the best one-to-one match of clusters to classes."""
    clusters = consensus_clusters(C, k)
    table = pd.crosstab(clusters, np.asarray(labels)).to_numpy()
    rows, cols = linear_sum_assignment(-table)
    return int(table.sum() - table[rows, cols].sum())


@pytest.mark.slow
def test_golub_consensus_matches_brunet():
    # The R package NMF (brunet, 50 runs) gives cophenetic 0.99987, 0.99703,
    # 0.98614, 0.96643 at ranks 2-5. 20 restarts here to keep the suite fast;
    # benchmarks/bench_rank.py runs the full 50.
    golub = load_golub()
    s = rank_survey(golub.X, [2, 3, 4, 5], n_restarts=20, seed=0,
                    criteria=("stability",), tol=1e-5)
    coph = s.table["cophenetic"]
    assert coph[2] >= 0.99
    assert coph[3] >= 0.98
    assert coph[3] > max(coph[4], coph[5])
    assert misplaced(s.consensus[2], golub.sample_info["ALL_AML"], 2) <= 2
    assert misplaced(s.consensus[3], golub.sample_info["class3"], 3) <= 2


# ------------------------------------------------------------ variational evidence


def test_elbo_peaks_at_planted_rank_poisson(evidence_survey):
    s, _ = evidence_survey
    assert int(s.table["elbo"].idxmax()) == 2
    assert s.recommended_rank == 2
    assert "ELBO" in s.rule


def test_elbo_peaks_at_planted_rank_gaussian():
    # Priors that do not depend on the rank: the Gaussian engine pads ranks
    # 2-4 to one compiled kernel.
    X = small_gaussian()
    noise = bn.Gaussian(None, noise_var_shape=1.0, noise_var_rate=1.0)
    s = rank_survey(X, [2, 3, 4], likelihood=noise, prior_W=bn.Exponential(1.0),
                    prior_H=bn.Exponential(1.0), n_restarts=3, criteria=("elbo",),
                    evidence_restarts=3)
    assert int(s.table["elbo"].idxmax()) == 3


def test_evidence_model_makes_priors_proper():
    data = bn.as_nmf_data(small_gaussian())
    model = _evidence_model(data, 3, bn.Gaussian(None), bn.Flat(), bn.Flat())
    assert model.proper and model.likelihood.has_noise_prior
    assert vi_engine(model) == "cavi-gaussian-tn"
    assert model.prior_H.rate == pytest.approx(3 / data.X.mean())
    poisson = _evidence_model(data, 2, bn.Poisson(), bn.Flat(), bn.Flat())
    assert vi_engine(poisson) == "cavi-poisson-gamma"
    gamma = bn.Gamma(2.0, 1.0)
    kept = _evidence_model(data, 2, bn.Poisson(), gamma, gamma)
    assert kept.prior_W == bn.Gamma(2.0, 1.0)


def test_elbo_needs_a_closed_form_engine(poisson_small):
    with pytest.raises(NotImplementedError, match="closed-form"):
        rank_survey(poisson_small, [2], n_restarts=2, criteria=("elbo",),
                    prior_W=bn.HalfNormal(1.0), prior_H=bn.HalfNormal(1.0))


def test_loo_columns_and_pareto_warning(evidence_survey, poisson_small):
    s, caught = evidence_survey
    pareto = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(pareto) == 1
    assert "variational approximation, not from the posterior" in str(
        pareto[0].message)
    assert "rank 1:" in str(pareto[0].message)  # counts listed per rank
    for column in ("loo_elpd", "loo_se", "loo_p", "loo_khat_bad"):
        assert np.isfinite(s.table[column]).all()
    assert ((s.table["loo_khat_bad"] >= 0) & (s.table["loo_khat_bad"] <= 1)).all()
    assert sorted(s.loo) == [1, 2, 3]
    assert s.loo[2].n_data_points == poisson_small.size
    assert np.asarray(s.loo[2].pareto_k).shape == poisson_small.shape
    assert "variational approximation" in s.summary()


def test_loo_drops_unobserved_entries_and_is_the_last_resort(poisson_small):
    mask = np.ones_like(poisson_small)
    mask[0, :3] = 0
    mask[5, 4] = 0
    with pytest.warns(ConvergenceWarning, match="Pareto k"):
        s = rank_survey(poisson_small, [2], mask=mask, n_restarts=2,
                        criteria=("loo",), evidence_restarts=2, loo_draws=100)
    assert s.loo[2].n_data_points == int(mask.sum())
    assert s.recommended_rank == 2 and "PSIS-LOO" in s.rule


# ------------------------------------------------------------ held-out and BCV


def test_heldout_pointwise_covers_observed_entries(poisson_small):
    mask = np.ones_like(poisson_small)
    mask[3, 4] = 0
    lpd = heldout_log_density(poisson_small, bn.NMFModel(2), mask=mask, n_folds=3,
                              n_restarts=2)
    assert np.isnan(lpd[3, 4])
    assert np.isfinite(np.delete(lpd.ravel(), 3 * lpd.shape[1] + 4)).all()
    assert (lpd[np.isfinite(lpd)] <= 0).all()  # Poisson masses


def test_bcv_folds_partition_rows_and_columns():
    rows, cols = bcv_folds((11, 8), 2, 3, seed=4)
    assert np.bincount(rows).tolist() == [6, 5]
    assert sorted(np.bincount(cols).tolist()) == [2, 3, 3]
    again = bcv_folds((11, 8), 2, 3, seed=4)
    assert_array_equal(again[0], rows) and assert_array_equal(again[1], cols)


def test_bcv_scores_every_observed_entry_once(poisson_small):
    mask = np.ones_like(poisson_small)
    mask[::7, ::5] = 0
    lpd = bcv_log_density(poisson_small, bn.NMFModel(2), mask=mask, n_restarts=2,
                          seed=1, dtype="float32")
    assert_array_equal(np.isnan(lpd), mask == 0)
    assert (lpd[mask > 0] <= 0).all()  # Poisson masses


def test_bcv_matches_exact_fold_in_for_gaussian():
    # With the fold-ins run to convergence, the multiplicative fold-in of W_I
    # (H fixed) agrees with the exact non-negative least squares solution.
    from scipy.optimize import nnls

    X = small_gaussian()
    rows, cols = bcv_folds(X.shape, 2, 2, seed=0)
    I, J = rows == 0, cols == 0
    D = X[np.ix_(~I, ~J)]
    fit_D = bn.fit_map(D, bn.NMFModel(3, bn.Gaussian(0.3)), n_restarts=3,
                       tol=1e-8, max_iter=5000, warn=False)
    B = X[np.ix_(I, ~J)]
    exact = np.array([nnls(fit_D.H_raw.T, b)[0] for b in B])
    start = np.broadcast_to(fit_D.W_raw.mean(axis=0), exact.shape)
    fold_in = bn.fit_map(B, bn.NMFModel(3, bn.Gaussian(0.3)), init="custom",
                         W_init=start, H_init=fit_D.H_raw, fixed="H", tol=0.0,
                         max_iter=2000, warn=False)
    assert_allclose(fold_in.W_raw, exact, atol=1e-6)


def test_bcv_rejects_ranks_the_held_in_block_cannot_carry(poisson_small):
    with pytest.raises(ValueError, match="smallest held-in block"):
        bcv_log_density(poisson_small, bn.NMFModel(11))
    with pytest.raises(ValueError, match="ranks: bi-cross-validation"):
        rank_survey(poisson_small, [2, 11], n_restarts=2, criteria=("bcv",))


# ------------------------------------------------------------ ARD beside the table


def test_ard_rank_reported_beside_the_table():
    # Same shape, ranks and restarts as the planted surveys: no new compilation.
    s = rank_survey(planted_catalog(7), [4, 6], n_restarts=20, criteria=("ard",),
                    evidence_restarts=4)
    assert s.ard_rank == PLANTED_RANK
    assert s.ard.fit.rank == 6
    assert f"ARD effective rank: {PLANTED_RANK}" in s.summary()
    assert "ard" not in "".join(s.table.columns)


# ------------------------------------------------------------ restarts in batches


def test_batched_restarts_merge_like_one_call(poisson_small):
    data = bn.as_nmf_data(poisson_small)
    model = bn.NMFModel(2)
    whole = fit_restarts(data, model, n_restarts=7, seed=3, batch=7, dtype="float64",
                         tol=1e-6)
    parts = fit_restarts(data, model, n_restarts=7, seed=3, batch=3, dtype="float64",
                         tol=1e-6)
    assert parts.restarts["W_raw"].shape == (7, 30, 2)
    assert parts.settings["restart_batch"] == 3
    # Same starts and arithmetic, batched differently: equal up to rounding.
    assert_allclose(parts.restarts["objective"], whole.restarts["objective"],
                    rtol=1e-10)
    assert parts.best_restart == whole.best_restart
    assert_allclose(parts.W_raw, whole.W_raw, rtol=1e-8, atol=1e-10)
    assert parts.objective == parts.restarts["objective"][parts.best_restart]


def test_batched_restarts_compile_once(poisson_small):
    data = bn.as_nmf_data(poisson_small[:, :19])  # a shape no other test uses
    model = bn.NMFModel(2)
    kernel = _kernels(model, False, 6, 10, None)[0]
    before = kernel._cache_size()
    fit_restarts(data, model, n_restarts=7, seed=0, batch=3, max_iter=50)
    # 7 restarts in batches of 3: the last batch is padded, one compiled shape.
    assert kernel._cache_size() == before + 1


def test_random_starts_do_not_depend_on_the_number_of_restarts(poisson_small):
    data = bn.as_nmf_data(poisson_small)
    W5, H5 = random_starts(data, 3, 5, seed=2)
    W2, H2 = random_starts(data, 3, 2, seed=2)
    assert_array_equal(W5[:2], W2)
    assert_array_equal(H5[:2], H2)
    assert (W5 > 0).all() and (H5 > 0).all()


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"criteria": ("stability", "waic")}, ValueError, "criteria: expected"),
        ({"ranks": []}, ValueError, "ranks: expected at least one"),
        ({"ranks": [2, 40]}, ValueError, "ranks: expected ranks <="),
        ({"ranks": [0, 2]}, ValueError, "rank"),
        ({"n_restarts": 1}, ValueError, "n_restarts: stability"),
        ({"seed": -1}, TypeError, "seed"),
        ({"criteria": ("bcv",), "bcv_folds": 2}, TypeError, "bcv_folds: expected a"),
        ({"criteria": ("bcv",), "bcv_folds": (1, 2)}, ValueError, "bcv_folds"),
        ({"criteria": ("heldout",), "n_folds": 1}, ValueError, "n_folds"),
        ({"loo_draws": 2}, ValueError, "loo_draws"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"likelihood": "poisson"}, TypeError, "likelihood"),
        ({"prior_W": 1.0}, TypeError, "prior_W"),
    ],
    ids=["criterion", "no-ranks", "rank-too-large", "rank-zero", "one-restart",
         "seed", "bcv-folds-type", "bcv-folds-value", "n-folds", "loo-draws", "tol",
         "likelihood", "prior"],
)
def test_bad_arguments_named(poisson_small, kwargs, error, match):
    kwargs = {"ranks": [2], "n_restarts": 2, "criteria": ("stability",), **kwargs}
    ranks = kwargs.pop("ranks")
    with pytest.raises(error, match=match):
        rank_survey(poisson_small, ranks, **kwargs)


def test_single_criterion_string_accepted(poisson_small):
    s = rank_survey(poisson_small, [1, 2], n_restarts=3, criteria="heldout",
                    heldout_restarts=2)
    assert "heldout_lpd" in s.table and "cophenetic" not in s.table
