"""Closed-form Poisson-gamma VI: exact ELBO, bounds, oracles, restarts, caching."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose
from numpyro.infer.util import log_density
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma, gammaln, logsumexp, softmax

import bayesnmf as bn
from bayesnmf.vi._poisson_gamma import (
    GammaFactors,
    _kernels,
    _restart_keys,
    cavi_sweep,
    elbo_augmented,
    elbo_collapsed,
    fit_vi_poisson,
    rescale_components,
    squarem_cycle,
)
from conftest import planted

# Settings shared by several tests, so that they share compiled kernels: one
# unmasked tiny problem run to convergence, and a masked one for a few sweeps.
TO_CONVERGENCE = dict(n_restarts=3, max_iter=20000, tol=1e-13, check_every=1,
                      num_draws=50)
EVERY_SWEEP = dict(n_restarts=2, max_iter=300, tol=0.0, check_every=1, num_draws=0,
                   warn=False)
PRIORS = {
    "gamma-exp": (bn.Gamma(1.0, 1.0), bn.Exponential(0.1)),
    "small-shape": (bn.Gamma(0.05, 0.05), bn.Gamma(0.05, 0.005)),
    "large-shape": (bn.Gamma(20.0, 20.0), bn.Gamma(20.0, 2.0)),
}


def _data(rng, m=12, n=9):
    """Masked Poisson data from planted factors."""
    W, H = planted(rng, m, n, 2, scale=8.0, sparse=False)
    X = rng.poisson(W @ H).astype(float)
    mask = (rng.random((m, n)) > 0.25).astype(float)
    mask[:, 0] = 1.0
    mask[0, :] = 1.0
    return X, mask


def _tiny_problem():
    """6 x 5 counts drawn from the model, rank 2, with their gamma priors."""
    rng = np.random.default_rng(5)
    a_W, c_W, a_H, c_H = 2.0, 2.0, 2.0, 0.5
    W = rng.gamma(a_W, 1.0 / c_W, (6, 2))
    H = rng.gamma(a_H, 1.0 / c_H, (2, 5))
    X = rng.poisson(W @ H).astype(float)
    model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(a_W, c_W), bn.Gamma(a_H, c_H))
    return X, model, (a_W, c_W, a_H, c_H)


@pytest.fixture(scope="module")
def tiny():
    X, model, prior = _tiny_problem()
    res = fit_vi_poisson(X, model, seed=0, **TO_CONVERGENCE)
    assert res.converged
    return X, model, prior, res


# -- the ELBO -----------------------------------------------------------------


@pytest.mark.parametrize("accelerate", [True, False], ids=["squarem", "plain"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("priors", PRIORS.values(), ids=PRIORS.keys())
def test_elbo_never_decreases(rng, priors, masked, accelerate):
    model = bn.NMFModel(2, bn.Poisson(), *priors)
    kw = {"accelerate": accelerate, "warn": False}
    if masked:
        X, mask = _data(rng)
        res = fit_vi_poisson(X, model, mask=mask, **{**EVERY_SWEEP, **kw})
    else:
        X, mask = _tiny_problem()[0], None
        res = fit_vi_poisson(X, model, **{**TO_CONVERGENCE, **kw})
    per_check = 3 if accelerate else 1  # check_every=1: every cycle or sweep
    for trace, n_iter in zip(res.restarts["trace"], res.restarts["n_iter"]):
        trace = trace[: -(-n_iter // per_check) + 1]
        assert np.isfinite(trace).all() and n_iter > 10
        # -ELBO at every check; increases only by float64 rounding.
        assert (np.diff(trace) <= 1e-9 * np.abs(trace[1:])).all()
        assert trace[-1] < trace[0]
    assert res.objective == res.restarts["objective"].min() == -res.extra["elbo"]


def test_squarem_cycle_is_monotone_and_falls_back_to_plain_sweeps(rng):
    X, mask = _data(rng)
    prior = (1.0, 1.0, 1.0, 0.1)
    q0 = _random_q(rng, *X.shape, 2)
    with jax.enable_x64(True):
        X, mask = jnp.asarray(X), jnp.asarray(mask)
        cycle = jax.jit(squarem_cycle)
        two = cavi_sweep(X, mask, cavi_sweep(X, mask, q0, prior)[0], prior)[0]
        # No extrapolation can beat an infinite bound: two plain sweeps.
        q, _, elbo, step_max = cycle(X, mask, q0, jnp.inf, 8.0, prior)
        for a, b in zip(q, two, strict=True):
            assert_allclose(a, b, rtol=1e-13)  # jit vs eager: rounding only
        assert elbo == np.inf and step_max == 2.0
        # From a true ELBO, every cycle keeps or raises it (a kept step raises
        # it), and the bound it reports is the exact ELBO or below it.
        q, elbo, step_max = q0, elbo_collapsed(X, mask, q0, prior), 1.0
        kept = 0
        for _ in range(30):
            q, _, new, step_max = cycle(X, mask, q, elbo, step_max, prior)
            exact = elbo_collapsed(X, mask, q, prior)
            assert new >= elbo and exact >= new - 1e-9 * abs(new)
            kept += bool(new > elbo)
            elbo = new
        assert kept > 15 and step_max > 1.0


def test_acceleration_reaches_the_plain_fixed_point_in_fewer_sweeps(rng):
    W, H = planted(rng, 40, 30, 3, scale=50.0)
    X = rng.poisson(W @ H).astype(float)
    model = bn.NMFModel(3, bn.Poisson(), bn.Exponential(1.0), bn.Exponential(0.02))
    # Shapes and loop of test_planted_factors_recovered_and_close_to_map, whose
    # compiled kernel the accelerated fit shares.
    kw = dict(n_restarts=8, seed=1, max_iter=3000, tol=1e-10, num_draws=0)
    fast = fit_vi_poisson(X, model, accelerate=True, **kw)
    plain = fit_vi_poisson(X, model, accelerate=False, **kw)
    assert fast.converged and plain.converged
    # Plain sweeps crawl the last digits: equal to 1e-6, the accelerated higher.
    assert_allclose(fast.extra["elbo"], plain.extra["elbo"], rtol=1e-6)
    assert fast.extra["elbo"] >= plain.extra["elbo_collapsed"]
    # The same optimum, its components perhaps in another order.
    assert_allclose(fast.reconstruction(), plain.reconstruction(), rtol=1e-3)
    assert fast.n_iter < plain.n_iter, (fast.n_iter, plain.n_iter)


def test_rescaling_is_the_exact_maximiser_along_each_scale(rng):
    from scipy.optimize import minimize_scalar

    X, mask = _data(rng)
    prior = (np.full((12, 2), 1.5), 0.7, 0.4, np.array([[2.0], [0.5]]))
    q = _random_q(rng, *X.shape, 2)
    with jax.enable_x64(True):
        X, mask = jnp.asarray(X), jnp.asarray(mask)
        best = rescale_components(q, prior)

        def elbo_at(log_gamma, k):
            g = np.ones(2)
            g[k] = np.exp(log_gamma)
            moved = GammaFactors(q.shape_W, q.rate_W / g, q.shape_H,
                                 q.rate_H * g[:, None])
            return float(elbo_collapsed(X, mask, moved, prior))

        gamma = q.rate_W[0] / best.rate_W[0]
        for k in range(2):
            found = minimize_scalar(lambda t: -elbo_at(t, k), bracket=(-1.0, 1.0),
                                    tol=1e-12)
            assert_allclose(np.log(gamma[k]), found.x, atol=1e-5)
        # The data terms do not move; the ELBO rises to the maximum.
        assert_allclose(best.shape_W, q.shape_W)
        assert float(elbo_collapsed(X, mask, best, prior)) >= elbo_at(0.0, 0)
        # At the prior itself there is nothing to gain.
        at_prior = GammaFactors(*(np.broadcast_to(v, s).copy() for v, s in zip(
            prior, [(12, 2), (12, 2), (2, 9), (2, 9)], strict=True)))
        again = rescale_components(at_prior, prior)
        assert_allclose(again.rate_W, at_prior.rate_W, rtol=1e-12)


def test_both_elbo_forms_agree_at_convergence(tiny):
    *_, res = tiny
    assert_allclose(res.extra["elbo"], res.extra["elbo_collapsed"], rtol=1e-10)
    assert res.objective == res.trace[-1]


@jax.jit
def _one_sweep(X, mask, q, prior):
    """A sweep from ``q`` and both bounds right after it."""
    q1, log_L = cavi_sweep(X, mask, q, prior)
    return (q1, log_L, elbo_augmented(X, mask, q1, *log_L, prior),
            elbo_collapsed(X, mask, q1, prior))


def _random_q(rng, m, n, r):
    return GammaFactors(rng.uniform(0.5, 3.0, (m, r)), rng.uniform(0.5, 2.0, (m, r)),
                        rng.uniform(0.5, 3.0, (r, n)), rng.uniform(0.1, 0.5, (r, n)))


def _log_L(q):
    return (digamma(q.shape_W) - np.log(q.rate_W),
            digamma(q.shape_H) - np.log(q.rate_H))


def _gamma_log_prob(Z, shape, rate):
    return np.asarray(dist.Gamma(shape, rate).log_prob(Z)).sum((-2, -1))


def _mc_elbo(rng, X, prior, q, log_L, n_draws=20000):
    """Monte Carlo E_q[log p(X, S, W, H) - log q(S, W, H)] and its standard error.

    W, H from q; S from the multinomial q(S) with weights from ``log_L``;
    NumPyro log densities; x_ij = sum_k s_ikj holds by construction.
    """
    a_W, c_W, a_H, c_H = prior
    m, r = q.shape_W.shape
    n = q.shape_H.shape[1]
    W = rng.gamma(q.shape_W, 1.0 / q.rate_W, (n_draws, m, r))
    H = rng.gamma(q.shape_H, 1.0 / q.rate_H, (n_draws, r, n))
    p = softmax(log_L[0][:, None, :] + log_L[1].T[None, :, :], axis=-1)  # (m, n, r)
    S = rng.multinomial(np.broadcast_to(X.astype(np.int64), (n_draws, m, n)), p)
    with jax.enable_x64(True):
        rate = W[:, :, None, :] * np.swapaxes(H, 1, 2)[:, None, :, :]
        log_p_S = np.asarray(dist.Poisson(rate).log_prob(S)).sum((1, 2, 3))
        log_q_S = np.asarray(dist.Multinomial(X, p).log_prob(S)).sum((1, 2))
        f = (log_p_S - log_q_S
             + _gamma_log_prob(W, a_W, c_W) - _gamma_log_prob(W, q.shape_W, q.rate_W)
             + _gamma_log_prob(H, a_H, c_H) - _gamma_log_prob(H, q.shape_H, q.rate_H))
    return f.mean(), f.std() / np.sqrt(n_draws)


def test_closed_form_elbo_matches_monte_carlo():
    rng = np.random.default_rng(0)
    X, _, prior = _tiny_problem()
    q0 = _random_q(rng, 6, 5, 2)
    with jax.enable_x64(True):
        q1, log_L0, aug, coll = jax.tree.map(
            np.asarray, _one_sweep(jnp.asarray(X), jnp.ones_like(X), q0, prior)
        )
    # q(S) refreshed from q1 itself can only raise the bound.
    assert aug <= coll + 1e-9 * abs(coll)

    # Augmented form: q(S) from the L's that produced the sweep.
    mean, se = _mc_elbo(rng, X, prior, q1, log_L0)
    assert abs(mean - aug) < 4 * se, (aug, mean, se)
    # Collapsed form: q(S) from the L's of q1.
    mean, se = _mc_elbo(rng, X, prior, q1, _log_L(q1))
    assert abs(mean - coll) < 4 * se, (coll, mean, se)


def _q_of(res):
    e = res.extra
    return GammaFactors(e["q_W_shape"], e["q_W_rate"], e["q_H_shape"], e["q_H_rate"])


def test_elbo_at_convergence_matches_monte_carlo(tiny):
    X, _, prior, res = tiny
    q = _q_of(res)
    mean, se = _mc_elbo(np.random.default_rng(1), X, prior, q, _log_L(q))
    assert abs(mean - res.extra["elbo"]) < 4 * se, (res.extra["elbo"], mean, se)


def _log_evidence_prior_sampling(rng, X, prior, n_draws=400_000, chunk=100_000):
    """Brute-force log p(X): importance sampling with the prior as proposal."""
    a_W, c_W, a_H, c_H = prior
    log_liks = []
    for _ in range(n_draws // chunk):
        W = rng.gamma(a_W, 1.0 / c_W, (chunk, X.shape[0], 2))
        H = rng.gamma(a_H, 1.0 / c_H, (chunk, 2, X.shape[1]))
        WH = W @ H
        log_liks.append((X * np.log(WH) - WH - gammaln(X + 1.0)).sum((1, 2)))
    return logsumexp(np.concatenate(log_liks)) - np.log(n_draws)


def test_bound_ordering(tiny):
    """Augmented ELBO <= mean-field ELBO of q(W)q(H) <= log p(X)."""
    X, model, prior, res = tiny
    rng = np.random.default_rng(2)
    elbo = res.extra["elbo"]
    # Prior sampling underestimates log p(X) on average (Jensen), so this errs
    # towards failing; the gap is several nats.
    log_evidence = _log_evidence_prior_sampling(rng, X, prior)
    assert elbo < log_evidence

    # Mean-field ELBO without the augmentation, from NumPyro's log joint.
    q = _q_of(res)
    n_draws = 20000
    W = rng.gamma(q.shape_W, 1.0 / q.rate_W, (n_draws, *q.shape_W.shape))
    H = rng.gamma(q.shape_H, 1.0 / q.rate_H, (n_draws, *q.shape_H.shape))
    with jax.enable_x64(True):
        Xj = jnp.asarray(X)
        log_joint = jax.vmap(
            lambda W1, H1: log_density(model, (Xj,), {}, {"W": W1, "H": H1})[0]
        )(jnp.asarray(W), jnp.asarray(H))
        g = (np.asarray(log_joint) - _gamma_log_prob(W, q.shape_W, q.rate_W)
             - _gamma_log_prob(H, q.shape_H, q.rate_H))
    mean_field, se = g.mean(), g.std() / np.sqrt(n_draws)
    assert mean_field > elbo - 4 * se, (elbo, mean_field, se)


# -- oracles ------------------------------------------------------------------


def test_nothing_observed_gives_the_prior_and_zero_elbo():
    rng = np.random.default_rng(3)
    X = rng.poisson(3.0, (6, 5)).astype(float)
    prior = (1.5, 0.7, 0.4, 2.0)
    with jax.enable_x64(True):
        q1, _, aug, coll = _one_sweep(jnp.asarray(X), jnp.zeros_like(X),
                                      _random_q(rng, 6, 5, 2), prior)
    assert_allclose(q1.shape_W, 1.5)
    assert_allclose(q1.rate_W, 0.7)
    assert_allclose(q1.shape_H, 0.4)
    assert_allclose(q1.rate_H, 2.0)
    assert_allclose([aug, coll], 0.0, atol=1e-12)


def test_strong_prior_gives_prior_means(tiny):
    X, *_ = tiny
    mean_W, mean_H, shape = 0.7, 3.0, 1e6
    model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(shape, shape / mean_W),
                        bn.Gamma(shape, shape / mean_H))
    res = fit_vi_poisson(X, model, **TO_CONVERGENCE)
    # The data shift each mean by about (counts / shape), here < 1e-4.
    assert_allclose(res.W_raw, mean_W, rtol=1e-4)
    assert_allclose(res.H_raw, mean_H, rtol=1e-4)
    assert_allclose(res.extra["q_W_shape"], shape, rtol=1e-4)


def _match_cosine(A, B):
    A = A / np.linalg.norm(A, axis=0)
    B = B / np.linalg.norm(B, axis=0)
    C = A.T @ B
    rows, cols = linear_sum_assignment(-C)
    return C[rows, cols], cols


def test_planted_factors_recovered_and_close_to_map(rng):
    W, H = planted(rng, 40, 30, 3, scale=400.0)
    X = rng.poisson(W @ H).astype(float)
    model = bn.NMFModel(3, bn.Poisson(), bn.Exponential(1.0), bn.Exponential(1 / 400))
    kw = dict(n_restarts=8, seed=1, max_iter=3000, tol=1e-8, warn=False)
    vi = fit_vi_poisson(X, model, num_draws=0, **kw)
    cos_W, perm = _match_cosine(W, vi.W)
    cos_H, _ = _match_cosine(H.T, vi.H[perm].T)
    assert cos_W.min() > 0.99, cos_W
    assert cos_H.min() > 0.99, cos_H

    # With high counts the posterior is narrow: its mean sits near the mode.
    fit_map = bn.fit_map(X, model, **kw)
    cos, perm = _match_cosine(fit_map.W, vi.W)
    assert cos.min() > 0.9999, cos
    assert_allclose(vi.W[:, perm], fit_map.W, atol=2e-3)
    assert_allclose(vi.reconstruction(), fit_map.reconstruction(),
                    rtol=1e-2, atol=1e-2 * X.mean())


# -- restarts, results, caching -----------------------------------------------


def test_seeds_reproducible_and_best_restart_kept(tiny):
    X, model, _, a = tiny
    b = fit_vi_poisson(X, model, seed=0, **TO_CONVERGENCE)
    c = fit_vi_poisson(X, model, seed=1, **TO_CONVERGENCE)
    for k in ("W_raw", "H_raw", "objective", "trace"):
        np.testing.assert_array_equal(a.restarts[k], b.restarts[k])
    for k in a.draws:
        np.testing.assert_array_equal(a.draws[k], b.draws[k])
    assert not np.array_equal(a.draws["W"], c.draws["W"])
    assert not np.array_equal(a.restarts["trace"][:, 0], c.restarts["trace"][:, 0])
    # Restarts start apart.
    assert len(set(a.restarts["trace"][:, 0])) == 3

    obj = a.restarts["objective"]
    assert a.best_restart == int(np.argmin(obj)) and a.objective == obj.min()
    np.testing.assert_array_equal(a.W_raw, a.restarts["W_raw"][a.best_restart])
    assert_allclose(a.W_raw, a.extra["q_W_shape"] / a.extra["q_W_rate"], rtol=1e-15)


def test_restart_keys_independent_of_number_of_restarts():
    with jax.enable_x64(True):
        keys3 = jax.random.key_data(_restart_keys(7, 3))
        keys5 = jax.random.key_data(_restart_keys(7, 5))
    np.testing.assert_array_equal(keys3, keys5[:3])


def test_result_contents_and_save_load(tiny, tmp_path):
    X, *_, res = tiny
    m, n = X.shape
    assert res.method == "vi" and res.objective_name == "negative ELBO"
    assert res.settings["engine"] == "cavi-poisson-gamma"
    assert res.draws["W"].shape == (1, 50, m, 2)
    assert res.draws["H"].shape == (1, 50, 2, n)
    assert (res.draws["W"] >= 0).all()
    for k in ("q_W_shape", "q_W_rate"):
        assert res.extra[k].shape == (m, 2)
    assert res.params == {}

    back = bn.NMFResult.load(res.save(tmp_path / "vi"))
    assert back.model == res.model and back.settings == res.settings
    for name in ("W_raw", "H_raw", "trace", "trace_iter"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    for group in ("restarts", "draws"):
        for k, v in getattr(res, group).items():
            np.testing.assert_array_equal(getattr(back, group)[k], v)
    assert back.extra.keys() == res.extra.keys()
    for k, v in res.extra.items():
        np.testing.assert_array_equal(back.extra[k], v)
    assert (back.objective, back.n_iter, back.converged) == (
        res.objective, res.n_iter, res.converged)


def test_kernel_compiles_once_per_shape(tiny):
    X, model, _, _ = tiny
    fit = _kernels(2, False, -(-20000 // 3) + 2, 1, True)[0]
    before = fit._cache_size()
    other = bn.NMFModel(2, bn.Poisson(), bn.Gamma(2.0, 3.0), bn.Gamma(0.5, 0.1))
    fit_vi_poisson(X + 1.0, other, seed=5, **TO_CONVERGENCE)
    fit_vi_poisson(X[::-1], model, seed=6, **TO_CONVERGENCE)
    assert fit._cache_size() == before >= 1


def test_masked_entries_do_not_influence_fit(rng):
    X, mask = _data(rng)
    model = bn.NMFModel(2, bn.Poisson(), *PRIORS["gamma-exp"])
    a = fit_vi_poisson(X, model, mask=mask, **EVERY_SWEEP)
    b = fit_vi_poisson(np.where(mask > 0, X, 1e6), model, mask=mask, **EVERY_SWEEP)
    np.testing.assert_array_equal(a.W_raw, b.W_raw)
    with pytest.warns(UserWarning, match="NaN entries"):
        c = fit_vi_poisson(np.where(mask > 0, X, np.nan), model, allow_nan=True,
                           **EVERY_SWEEP)
    np.testing.assert_array_equal(a.trace, c.trace)


def test_convergence_flag_and_warning(rng):
    X, mask = _data(rng)
    model = bn.NMFModel(2, bn.Poisson(), *PRIORS["gamma-exp"])
    with pytest.warns(bn.ConvergenceWarning, match="max_iter=300"):
        res = fit_vi_poisson(X, model, mask=mask, **{**EVERY_SWEEP, "warn": True})
    assert not res.converged and res.n_iter == 300


# -- input checks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        (bn.NMFModel(2, bn.Poisson(), bn.Flat(), bn.Gamma(1.0, 1.0)), ValueError,
         "prior_W: variational inference needs proper priors"),
        (bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.HalfNormal(1.0)),
         NotImplementedError, "prior_H: closed-form Poisson VI needs a conjugate"),
        (bn.NMFModel(2, bn.Poisson()), ValueError, "needs proper priors"),
        (bn.NMFModel(2, bn.Gaussian(), bn.Gamma(1.0, 1.0), bn.Gamma(1.0, 1.0)),
         NotImplementedError, "needs a Poisson likelihood; got gaussian"),
        (2, TypeError, "model: expected an NMFModel"),
    ],
    ids=["flat", "halfnormal", "default-flat", "gaussian", "int"],
)
def test_unsupported_models_rejected(model, error, match):
    X, *_ = _tiny_problem()
    with pytest.raises(error, match=match):
        fit_vi_poisson(X, model)


def test_bad_settings_rejected():
    X, model, _ = _tiny_problem()
    with pytest.raises(ValueError, match="init: expected 'random'"):
        fit_vi_poisson(X, model, init="nndsvd")
    with pytest.raises(ValueError, match="num_draws: expected an integer >= 0"):
        fit_vi_poisson(X, model, num_draws=-1)
    with pytest.raises(ValueError, match="dtype"):
        fit_vi_poisson(X, model, dtype="int32")


def test_non_integer_counts_warn(tiny):
    X, model, *_ = tiny
    with pytest.warns(UserWarning, match="non-integer entries"):
        fit_vi_poisson(X + 0.5, model, **TO_CONVERGENCE)


@pytest.mark.parametrize("accelerate", [True, False], ids=["squarem", "plain"])
def test_progress_bar_does_not_change_the_result(rng, monkeypatch, accelerate):
    monkeypatch.delenv("CI", raising=False)  # CI switches the bar off
    X, mask = _data(rng)
    model = bn.NMFModel(2, bn.Poisson(), *PRIORS["gamma-exp"])
    # The settings of test_elbo_never_decreases (its compiled kernel), but with
    # a tolerance, so that the stopping rule acts.
    kw = dict(EVERY_SWEEP, mask=mask, tol=1e-9, accelerate=accelerate)
    a = fit_vi_poisson(X, model, **kw)
    b = fit_vi_poisson(X, model, progress=True, **kw)
    assert a.n_iter == b.n_iter
    for k in ("W_raw", "objective", "n_iter", "trace"):
        np.testing.assert_array_equal(a.restarts[k], b.restarts[k])
