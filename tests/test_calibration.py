"""Uncertainty that is checked: NUTS coverage on data drawn from the prior, and
closed-form VI against NUTS (METHODS.md §9).

The full-size study (more simulations, VI calibration figures for the docs) is
``benchmarks/calibration.py``; these tests are sized to the suite.
"""

import warnings

import numpy as np
import pytest

import bayesnmf as bn

M, N, R = 5, 4, 2
MODEL = bn.NMFModel(R, bn.Poisson(), bn.Gamma(2.0, 1.0), bn.Gamma(2.0, 0.2))


def _simulate(rng):
    W = rng.gamma(2.0, 1.0, (M, R))
    H = rng.gamma(2.0, 5.0, (R, N))
    return W @ H, rng.poisson(W @ H).astype(float)


def _WH_draws(res):
    WH = np.einsum("csik,cskj->csij", res.draws["W"], res.draws["H"])
    return WH.reshape(-1, M, N)


def _covered(draws, truth, mass):
    lo, hi = np.quantile(draws, [(1 - mass) / 2, (1 + mass) / 2], axis=0)
    return (truth >= lo) & (truth <= hi)


@pytest.fixture(scope="module")
def coverage():
    """Coverage of the central 50% and 90% intervals of every entry of WH."""
    rng = np.random.default_rng(11)
    n_sims = 80
    hits = {0.5: [], 0.9: []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bn.ConvergenceWarning)
        for s in range(n_sims):
            lam, X = _simulate(rng)
            res = bn.fit_nuts(X, MODEL, num_chains=2, num_warmup=200,
                              num_samples=200, seed=s, init="prior")
            draws = _WH_draws(res)
            for mass in hits:
                hits[mass].append(_covered(draws, lam, mass).mean())
    return {mass: np.asarray(v) for mass, v in hits.items()}


@pytest.mark.parametrize("mass", [0.5, 0.9])
def test_nuts_intervals_cover_at_nominal_rate(coverage, mass):
    rates = coverage[mass]
    # Entries of one simulation are correlated: the standard error comes from
    # the spread of per-simulation rates, and the band is three of them.
    se = rates.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.mean() - mass) < 3 * se + 0.01, (rates.mean(), se)


def test_closed_form_vi_means_agree_with_nuts():
    rng = np.random.default_rng(3)
    W = rng.gamma(2.0, 1.0, (8, R))
    H = rng.gamma(2.0, 25.0, (R, 6))
    X = rng.poisson(W @ H).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bn.ConvergenceWarning)
        nuts = bn.fit_nuts(X, MODEL, num_chains=2, num_warmup=400, num_samples=400,
                           seed=0)
    vi = bn.fit_vi_poisson(X, MODEL, n_restarts=4, seed=0, num_draws=2000)
    mean_nuts = nuts.extra["WH_mean"]
    # Under the mean-field q, E[WH] = E[W] E[H].
    mean_vi = vi.W_raw @ vi.H_raw
    # Stated tolerance: median 2%, worst entry 8% relative (measured 1.0% and
    # 4.4%: low-count entries differ most); the NUTS Monte Carlo error of these
    # means is about 1%.
    rel = np.abs(mean_vi - mean_nuts) / mean_nuts
    assert np.median(rel) < 0.02 and rel.max() < 0.08, rel.max()
