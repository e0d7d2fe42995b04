"""MAP engine: objective, monotonicity, parity with scikit-learn, edge cases."""

import warnings

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpyro.infer.util import log_density
from scipy.optimize import linear_sum_assignment

import bayesnmf as bn
from bayesnmf.map import _kernels
from conftest import planted

LIKELIHOODS = {
    "gauss-fixed": bn.Gaussian(noise_scale=1.5),
    "gauss-ml": bn.Gaussian(noise_scale=None),
    "gauss-invgamma": bn.Gaussian(None, noise_var_shape=2.0, noise_var_rate=3.0),
    "poisson": bn.Poisson(),
    "negbin-fixed": bn.NegativeBinomial(concentration=4.0),
    "negbin-ml": bn.NegativeBinomial(),
    "negbin-prior": bn.NegativeBinomial(concentration_prior=(2.0, 0.5)),
    "gamma-fixed": bn.GammaLikelihood(shape=2.0),
    "gamma-ml": bn.GammaLikelihood(shape=None),
}
PRIORS = {
    "flat": bn.Flat(),
    "exp": bn.Exponential(0.3),
    "halfnormal": bn.HalfNormal(2.0),
    "gamma": bn.Gamma(2.5, 0.4),
    "ard-l1": bn.ARD("exponential", 4.0, 2.0),
    "ard-l2": bn.ARD("halfnormal", 4.0, 2.0),
}


def _data(rng, m=12, n=9, masked=False):
    W, H = planted(rng, m, n, 2, scale=8.0, sparse=False)
    X = rng.poisson(W @ H).astype(float)
    mask = (rng.random((m, n)) > 0.25).astype(float) if masked else None
    if mask is not None:
        mask[:, 0] = 1.0
        mask[0, :] = 1.0
    return X, mask


def _numpyro_neg_log_joint(model, X, mask, W, H, params):
    with jax.enable_x64(True):
        values = {"W": W, "H": H, **params}
        lp, _ = log_density(model, (X,), {"mask": mask}, values)
        return -float(lp)


def _grid():
    """Every prior with every likelihood, with and without a mask.

    The Gaussian and Poisson likelihoods run the full cross; the other
    likelihoods share their prior updates with those (the same auxiliary
    functions), so each of them meets every prior once, masked or not.
    """
    core = ("gauss-fixed", "gauss-ml", "gauss-invgamma", "poisson")
    cases = []
    for lik in LIKELIHOODS:
        for i, prior in enumerate(PRIORS):
            masks = (False, True) if lik in core else (bool(i % 2),)
            for masked in masks:
                cases.append(pytest.param(
                    LIKELIHOODS[lik], PRIORS[prior], masked,
                    id=f"{lik}-{prior}-{'masked' if masked else 'full'}"))
    return cases


@pytest.mark.parametrize("lik, prior, masked", _grid())
def test_objective_is_numpyro_neg_log_joint_and_never_increases(rng, lik, prior, masked):
    X, mask = _data(rng, masked=masked)
    if lik.kind == "gamma":
        X = X + 0.5  # the gamma likelihood needs positive data
    model = bn.NMFModel(2, lik, prior_W=prior, prior_H=bn.Exponential(0.1)
                        if prior.kind == "flat" else prior)
    W0 = rng.uniform(0.2, 2.0, size=(12, 2))
    H0 = rng.uniform(0.2, 2.0, size=(2, 9))
    res = bn.fit_map(X, model, mask=mask, init="custom", W_init=W0, H_init=H0,
                     max_iter=150, tol=0.0, check_every=1, warn=False)

    # Starting point: the kernel's objective is NumPyro's -log p(X, W, H, params).
    with jax.enable_x64(True):
        import jax.numpy as jnp

        args = [jnp.asarray(a) for a in (X, W0, H0)]
        M = None if mask is None else jnp.asarray(mask)
        params0 = {**lik.init_params(args[0], M, args[1], args[2]),
                   **model.init_prior_params(args[1], args[2])}
        params0 = {k: np.asarray(v) for k, v in params0.items()}
    # NumPyro's NegativeBinomial2.log_prob is accurate to ~1e-8 only (ours
    # matches scipy.stats.nbinom to 1e-13, see test_likelihoods.py).
    rtol = 1e-6 if lik.kind == "negbinomial" else 1e-10
    ref0 = _numpyro_neg_log_joint(model, X, mask, W0, H0, params0)
    assert_allclose(res.trace[0], ref0, rtol=rtol)

    # End point, computed by the kernel from its carried products. Entries that
    # reached exactly 0 (pruned ARD components) lie outside NumPyro's open
    # support; 1e-300 in their place changes the density by far less than rtol.
    params = {**res.params, **res.extra}
    W1, H1 = np.maximum(res.W_raw, 1e-300), np.maximum(res.H_raw, 1e-300)
    ref = _numpyro_neg_log_joint(model, X, mask, W1, H1, params)
    assert_allclose(res.objective, ref, rtol=rtol)

    # Monotone: every sweep (H, W, then the noise variance) is a majorisation step.
    steps = np.diff(res.trace)
    assert np.all(steps <= 1e-9 * np.abs(res.trace[1:])), steps.max()
    assert res.trace[-1] < res.trace[0]
    assert (res.W_raw >= 0).all() and (res.H_raw >= 0).all()


def _sk_parity(X, W0, H0, beta, n_iter, alpha=0.0, l1_ratio=0.0):
    from sklearn.decomposition import non_negative_factorization

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Wsk, Hsk, _ = non_negative_factorization(
            X.T, W=H0.T.copy(), H=W0.T.copy(), n_components=W0.shape[1],
            init="custom", solver="mu", beta_loss=beta, max_iter=n_iter, tol=0.0,
            alpha_W=alpha, alpha_H=alpha, l1_ratio=l1_ratio,
        )
    return Hsk.T, Wsk.T


@pytest.mark.parametrize("n_iter", [1, 10, 200])
@pytest.mark.parametrize(
    "lik, prior, beta, l1_ratio",
    [
        (bn.Gaussian(1.0), bn.Flat(), "frobenius", 0.0),
        (bn.Poisson(), bn.Flat(), "kullback-leibler", 0.0),
        (bn.Gaussian(1.0), "exp", "frobenius", 1.0),
        (bn.Poisson(), "exp", "kullback-leibler", 1.0),
        (bn.Gaussian(1.0), "halfnormal", "frobenius", 0.0),
    ],
    ids=["frobenius", "kl", "frobenius-l1", "kl-l1", "frobenius-l2"],
)
def test_parity_with_sklearn_mu(rng, n_iter, lik, prior, beta, l1_ratio):
    m, n, r = 15, 11, 3
    W, H = planted(rng, m, n, r, scale=5.0, sparse=False)
    X = rng.poisson(W @ H).astype(float) + 0.5
    W0 = rng.uniform(0.5, 1.5, (m, r))
    H0 = rng.uniform(0.5, 1.5, (r, n))
    alpha = 0.0
    # scikit-learn scales the penalty on its W (our H^T) by n_features (our m)
    # and on its H (our W^T) by n_samples (our n).
    if prior == "exp":
        alpha = 0.02
        prior_W, prior_H = bn.Exponential(n * alpha), bn.Exponential(m * alpha)
    elif prior == "halfnormal":
        alpha = 0.02
        prior_W = bn.HalfNormal(1 / np.sqrt(n * alpha))
        prior_H = bn.HalfNormal(1 / np.sqrt(m * alpha))
    else:
        prior_W = prior_H = prior
    model = bn.NMFModel(r, lik, prior_W, prior_H)
    res = bn.fit_map(X, model, init="custom", W_init=W0, H_init=H0,
                     max_iter=n_iter, tol=0.0, warn=False)
    W_sk, H_sk = _sk_parity(X, W0, H0, beta, n_iter, alpha, l1_ratio)
    assert_allclose(res.W_raw, W_sk, rtol=1e-9, atol=1e-12)
    assert_allclose(res.H_raw, H_sk, rtol=1e-9, atol=1e-12)


def _match_cosine(W_true, W_fit):
    a = W_true / np.linalg.norm(W_true, axis=0)
    b = W_fit / np.linalg.norm(W_fit, axis=0)
    C = a.T @ b
    rows, cols = linear_sum_assignment(-C)
    return C[rows, cols], cols


@pytest.mark.parametrize("lik", [bn.Poisson(), bn.Gaussian(None)], ids=["poisson", "gaussian"])
def test_planted_factors_recovered(rng, lik):
    W, H = planted(rng, 40, 30, 3, scale=400.0)
    Lam = W @ H
    X = rng.poisson(Lam) if lik.kind == "poisson" else Lam + rng.normal(0, 0.5, Lam.shape)
    X = np.maximum(X, 0.0)
    res = bn.fit_map(X, bn.NMFModel(3, lik), n_restarts=8, seed=1, max_iter=3000,
                     tol=1e-8, warn=False)
    cos_W, perm = _match_cosine(W, res.W)
    cos_H, _ = _match_cosine(H.T, res.H[perm].T)
    assert cos_W.min() > 0.99, cos_W
    assert cos_H.min() > 0.99, cos_H


def test_seeds_reproducible_and_restarts_independent(rng):
    X, _ = _data(rng)
    model = bn.NMFModel(2, bn.Poisson())
    a = bn.fit_map(X, model, n_restarts=3, seed=7, max_iter=50, warn=False)
    b = bn.fit_map(X, model, n_restarts=3, seed=7, max_iter=50, warn=False)
    c = bn.fit_map(X, model, n_restarts=3, seed=8, max_iter=50, warn=False)
    d = bn.fit_map(X, model, n_restarts=5, seed=7, max_iter=50, warn=False)
    np.testing.assert_array_equal(a.restarts["W_raw"], b.restarts["W_raw"])
    np.testing.assert_array_equal(a.restarts["H_raw"], b.restarts["H_raw"])
    assert not np.allclose(a.restarts["W_raw"], c.restarts["W_raw"])
    # Restart i does not depend on how many restarts ran beside it.
    np.testing.assert_array_equal(a.restarts["W_raw"], d.restarts["W_raw"][:3])
    # Restarts differ from each other.
    assert not np.allclose(a.restarts["W_raw"][0], a.restarts["W_raw"][1])


def test_best_restart_is_kept(rng):
    X, _ = _data(rng)
    res = bn.fit_map(X, 2, n_restarts=6, seed=3, max_iter=30, tol=0.0, warn=False)
    obj = res.restarts["objective"]
    assert res.best_restart == int(np.argmin(obj))
    assert res.objective == obj.min()
    np.testing.assert_array_equal(res.W_raw, res.restarts["W_raw"][res.best_restart])


def test_kernel_compiles_once_per_shape(rng):
    X, _ = _data(rng)
    model = bn.NMFModel(2, bn.Poisson(), bn.Exponential(0.5), bn.Exponential(0.5))
    bn.fit_map(X, model, n_restarts=2, seed=0, max_iter=20, warn=False)
    run = _kernels(model, False, 3, 10, None)[0]
    before = run._cache_size()
    for seed in range(3):
        bn.fit_map(X + seed, model, n_restarts=2, seed=seed, max_iter=20, warn=False)
    assert run._cache_size() == before == 1


def test_convergence_flag_and_warning(rng):
    X, _ = _data(rng)
    with pytest.warns(bn.ConvergenceWarning, match="max_iter=5"):
        res = bn.fit_map(X, 2, max_iter=5, tol=1e-12)
    assert not res.converged and res.n_iter == 5
    res = bn.fit_map(X, 2, max_iter=5000, tol=1e-4)
    assert res.converged and res.n_iter < 5000


def test_float32_agrees_with_float64(rng):
    X, _ = _data(rng)
    W0 = rng.uniform(0.5, 1.5, (12, 2))
    H0 = rng.uniform(0.5, 1.5, (2, 9))
    kw = dict(init="custom", W_init=W0, H_init=H0, max_iter=100, tol=0.0, warn=False)
    r64 = bn.fit_map(X, 2, dtype="float64", **kw)
    r32 = bn.fit_map(X, 2, dtype="float32", **kw)
    assert r32.settings["dtype"] == "float32"
    # float32 rounding (~1e-7 per step) accumulates over 100 sweeps.
    assert_allclose(r32.W_raw, r64.W_raw, rtol=1e-3, atol=1e-5)
    assert_allclose(r32.objective, r64.objective, rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_kl_sum_preservation(rng, masked):
    """After a KL W-update the (masked) row sums of WH equal those of X."""
    X, mask = _data(rng, masked=masked)
    res = bn.fit_map(X, 2, mask=mask, max_iter=7, tol=0.0, warn=False)
    M = np.ones_like(X) if mask is None else mask
    assert_allclose((M * (res.W_raw @ res.H_raw)).sum(1), (M * X).sum(1), rtol=1e-10)


def test_masked_entries_do_not_influence_fit(rng):
    X, mask = _data(rng, masked=True)
    W0 = rng.uniform(0.5, 1.5, (12, 2))
    H0 = rng.uniform(0.5, 1.5, (2, 9))
    kw = dict(mask=mask, init="custom", W_init=W0, H_init=H0, max_iter=40, warn=False)
    a = bn.fit_map(X, 2, **kw)
    X2 = np.where(mask > 0, X, 1e6)
    b = bn.fit_map(X2, 2, **kw)
    np.testing.assert_array_equal(a.W_raw, b.W_raw)
    X3 = np.where(mask > 0, X, np.nan)
    with pytest.warns(UserWarning, match="26 NaN entries are treated as missing"):
        c = bn.fit_map(X3, 2, allow_nan=True,
                       **{k: v for k, v in kw.items() if k != "mask"})
    assert_allclose(c.W_raw, a.W_raw, rtol=1e-12)


def test_save_load_roundtrip(rng, tmp_path):
    X, _ = _data(rng)
    model = bn.NMFModel(2, bn.Gaussian(None, 2.0, 1.0), bn.Gamma(2.0, 1.0), bn.HalfNormal(3.0))
    res = bn.fit_map(X, model, n_restarts=3, max_iter=60, warn=False)
    path = res.save(tmp_path / "fit")
    back = bn.NMFResult.load(path)
    assert back.model == res.model
    for name in ("W_raw", "H_raw", "trace", "trace_iter"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    for k in res.restarts:
        np.testing.assert_array_equal(back.restarts[k], res.restarts[k])
    assert back.params == res.params and back.settings == res.settings
    assert back.feature_names == res.feature_names
    assert (back.objective, back.n_iter, back.converged) == (
        res.objective, res.n_iter, res.converged)


def test_labels_travel(rng):
    import pandas as pd

    X, _ = _data(rng)
    df = pd.DataFrame(X, index=[f"g{i}" for i in range(12)],
                      columns=[f"s{j}" for j in range(9)])
    res = bn.fit_map(df, 2, max_iter=20, warn=False)
    assert list(res.W_frame().index) == list(df.index)
    assert list(res.H_frame().columns) == list(df.columns)
    assert_allclose(res.W.sum(0), 1.0)
    assert_allclose(res.W @ res.H, res.W_raw @ res.H_raw, rtol=1e-12)


@pytest.mark.parametrize("lik", [bn.Poisson(), bn.Gaussian(1.0)], ids=["poisson", "gaussian"])
def test_fixed_factor_refit(rng, lik):
    """Holding W fixed refits H alone: W unchanged, objective still monotone,
    and on exact data the true exposures come back (NNLS / KL fold-in)."""
    W, H = planted(rng, 20, 15, 3, scale=30.0)
    X = W @ H
    H0 = np.full_like(H, X.mean() / 3)
    res = bn.fit_map(X, bn.NMFModel(3, lik), init="custom", W_init=W, H_init=H0,
                     fixed="W", max_iter=5000, tol=1e-12, check_every=1, warn=False)
    np.testing.assert_array_equal(res.W_raw, W)
    assert np.all(np.diff(res.trace) <= 1e-9 * np.abs(res.trace[1:]))
    assert_allclose(res.H_raw, H, rtol=1e-3, atol=1e-3 * H.max())


def test_progress_bar_does_not_change_the_result(rng, monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # CI switches the bar off
    X, mask = _data(rng, masked=True)
    kw = dict(mask=mask, n_restarts=2, max_iter=700, tol=1e-7, warn=False)
    model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Exponential(0.1))
    a = bn.fit_map(X, model, **kw)
    b = bn.fit_map(X, model, progress=True, **kw)
    for k in ("W_raw", "objective", "n_iter", "trace"):
        np.testing.assert_array_equal(a.restarts[k], b.restarts[k])
