"""Stochastic VI through NumPyro's SVI (``bayesnmf.vi._svi.fit_svi``).

The reference is rank-1 Poisson NMF with gamma priors, whose posterior mean of
``WH`` and evidence ``log p(X)`` are exact one-dimensional integrals
(``_nmf_programs``). Every problem is tiny (8 x 6) and each compiled fit is
shared through module-scoped fixtures.
"""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import bayesnmf as bn
from _nmf_programs import (
    exact_rank1_log_evidence,
    exact_rank1_posterior_mean,
    zip_nmf,
)
from bayesnmf._program import CustomModel
from bayesnmf.vi._svi import _step_traces, fit_svi

PRIORS = dict(shape_W=1.0, rate_W=1.0, shape_H=1.0, rate_H=0.1)
NUM_STEPS = 3000


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1)
    X = rng.poisson(np.outer(rng.gamma(2.0, 1.0, 8), rng.gamma(2.0, 3.0, 6)))
    X = X.astype(float)
    model = bn.NMFModel(
        1,
        bn.Poisson(),
        bn.Gamma(PRIORS["shape_W"], PRIORS["rate_W"]),
        bn.Gamma(PRIORS["shape_H"], PRIORS["rate_H"]),
    )
    return X, model, exact_rank1_posterior_mean(X, **PRIORS)


def _fit(X, model, **kwargs):
    kwargs.setdefault("num_steps", NUM_STEPS)
    kwargs.setdefault("num_draws", 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bn.ConvergenceWarning)
        return fit_svi(X, model, **kwargs)


@pytest.fixture(scope="module")
def fits(problem):
    X, model, _ = problem
    return {
        "lognormal": _fit(X, model, guide="lognormal"),
        "gamma": _fit(X, model, guide="gamma"),
        "minibatch": _fit(X, model, guide="lognormal", batch_size=3),
    }


def _max_rel(A, B):
    return np.abs(A - B).max() / np.abs(B).max()


# Mean-field q ignores the posterior coupling of W and H, so E_q[W] E_q[H] is not
# the exact E[WH]; on this problem the bias is about 2% and the Monte Carlo
# noise of the final iterate well below 1%. Minibatches add gradient noise.
@pytest.mark.parametrize(
    "name, rtol",
    [("lognormal", 0.05), ("gamma", 0.05), ("minibatch", 0.06)],
    ids=["lognormal", "gamma", "minibatch"],
)
def test_posterior_mean_of_WH_matches_exact(problem, fits, name, rtol):
    _, _, exact = problem
    res = fits[name]
    assert res.converged
    assert _max_rel(res.W_raw @ res.H_raw, exact) < rtol


def test_minibatch_agrees_with_full_batch(fits):
    full, mini = fits["lognormal"], fits["minibatch"]
    assert _max_rel(mini.W_raw @ mini.H_raw, full.W_raw @ full.H_raw) < 0.05
    assert mini.settings["batch_size"] == 3
    assert mini.extra["q_H_loc"].shape == (1, 6)  # local params for all columns


@pytest.mark.parametrize("name", ["lognormal", "gamma", "minibatch"])
def test_negative_elbo_bounds_the_exact_evidence(problem, fits, name):
    X, _, _ = problem
    res = fits[name]
    neg_log_evidence = -exact_rank1_log_evidence(X, **PRIORS)
    se = res.extra["objective_se"]
    # The bound holds up to Monte Carlo error (100 particles), and a mean-field
    # q of a rank-1 model is not far from it (a few nats).
    assert res.objective > neg_log_evidence - 4 * se
    assert res.objective < neg_log_evidence + 5.0


def test_result_contents(problem, fits, tmp_path):
    X, _, _ = problem
    res = fits["lognormal"]
    assert res.method == "vi"
    assert res.settings["engine"] == "svi"
    assert res.settings["elbo"] == "Trace_ELBO"
    assert fits["gamma"].settings["elbo"] == "TraceMeanField_ELBO"
    assert res.objective_name == "negative ELBO (Monte Carlo, 100 particles)"
    assert res.n_iter == NUM_STEPS
    assert res.trace.shape == res.trace_iter.shape == (100,)
    assert res.trace_iter[-1] == NUM_STEPS
    assert res.trace[-1] < res.trace[0]
    assert res.draws["W"].shape == (1, 200, 8, 1)
    assert res.draws["H"].shape == (1, 200, 1, 6)
    assert (res.draws["W"] > 0).all()
    # W_raw is the exact mean of the log-normal q, which the draws estimate.
    loc, scale = res.extra["q_W_loc"], res.extra["q_W_scale"]
    assert_allclose(res.W_raw, np.exp(loc + scale**2 / 2), rtol=1e-12)
    assert_allclose(res.draws["W"].mean(axis=(0, 1)), res.W_raw, rtol=0.1)
    gamma = fits["gamma"]
    assert_allclose(
        gamma.H_raw, gamma.extra["q_H_concentration"] / gamma.extra["q_H_rate"]
    )
    assert res.restarts["W_raw"].shape == (1, 8, 1)
    assert res.restarts["trace"].shape == (1, 100)

    loaded = bn.NMFResult.load(res.save(tmp_path / "svi"))
    assert_array_equal(loaded.W_raw, res.W_raw)
    assert_array_equal(loaded.draws["H"], res.draws["H"])
    assert_array_equal(loaded.extra["q_H_scale"], res.extra["q_H_scale"])
    assert loaded.settings == res.settings


def test_seed_reproducible_and_step_compiled_once(problem, fits):
    X, model, _ = problem
    before = dict(_step_traces)
    again = _fit(X, model, guide="lognormal")
    other = _fit(X, model, guide="lognormal", seed=1)
    # One compiled chunk per (model, guide, settings, shape): refits reuse it.
    assert dict(_step_traces) == before
    assert all(count == 1 for count in _step_traces.values())
    assert_array_equal(again.W_raw, fits["lognormal"].W_raw)
    assert_array_equal(again.draws["H"], fits["lognormal"].draws["H"])
    assert again.objective == fits["lognormal"].objective
    assert not np.array_equal(other.draws["H"], again.draws["H"])


def test_custom_program(problem):
    X, _, _ = problem
    res = _fit(X, zip_nmf, guide="lognormal", batch_size=3)
    assert isinstance(res.model, CustomModel)
    assert res.model.rank == 2
    assert res.settings["custom_model"] and res.settings["init_used"] == "prior"
    assert set(res.draws) == {"gate", "exposure", "W", "H"}
    assert res.draws["exposure"].shape == (1, 200, 8, 1)
    # gate lives on (0, 1): a normal on the logit scale, mean from the draws.
    assert 0.0 < res.params["gate"] < 0.3
    assert_allclose(res.params["gate"], res.draws["gate"].mean())
    assert res.extra["mean_exposure"].shape == (8, 1)
    # The fitted mean of X reproduces the data's total.
    spec = res.model.to_dict()
    assert spec == {"kind": "custom", "name": "zip_nmf", "rank": 2}
    assert CustomModel.from_dict(spec).describe() == res.model.describe()
    exposure = res.extra["mean_exposure"]
    fitted = (1 - res.params["gate"]) * exposure * (res.W_raw @ res.H_raw)
    assert_allclose(fitted.sum(), X.sum(), rtol=0.1)


# -- inputs rejected before anything is compiled -----------------------------------
def _no_w(X, mask=None, *, subsample_size=None):
    m, n = X.shape
    with numpyro.plate("f", m, dim=-2), numpyro.plate("o", n, dim=-1):
        A = numpyro.sample("A", dist.Gamma(1.0, 1.0))
        numpyro.sample("X", dist.Poisson(A), obs=X)


def _no_subsample(X, mask=None, *, subsample_size=None):
    m, n = X.shape
    with numpyro.plate("f", m, dim=-2), numpyro.plate("k", 2, dim=-1):
        W = numpyro.sample("W", dist.Gamma(1.0, 1.0))
    with numpyro.plate("k2", 2, dim=-2), numpyro.plate("o", n, dim=-1):
        H = numpyro.sample("H", dist.Gamma(1.0, 1.0))
    with numpyro.plate("f", m, dim=-2), numpyro.plate("o", n, dim=-1):
        numpyro.sample("X", dist.Poisson(W @ H), obs=X)


def _no_keyword(X, mask=None):
    _no_subsample(X, mask)


def _joint_obs(X, mask=None, *, subsample_size=None):
    W = numpyro.sample("W", dist.Gamma(1.0, 1.0).expand([X.shape[0], 2]).to_event(2))
    H = numpyro.sample("H", dist.Gamma(1.0, 1.0).expand([2, X.shape[1]]).to_event(2))
    numpyro.sample("X", dist.Poisson(W @ H).to_event(2), obs=X)


def _flat_W(X, mask=None, *, subsample_size=None):
    m, n = X.shape
    with numpyro.plate("f", m, dim=-2), numpyro.plate("k", 2, dim=-1):
        W = numpyro.sample("W", dist.ImproperUniform(dist.constraints.positive, (), ()))
    with numpyro.plate("k2", 2, dim=-2), numpyro.plate("o", n, dim=-1):
        H = numpyro.sample("H", dist.Gamma(1.0, 1.0))
    with numpyro.plate("f", m, dim=-2), numpyro.plate("o", n, dim=-1):
        numpyro.sample("X", dist.Poisson(W @ H), obs=X)


@pytest.mark.parametrize(
    "model, kwargs, error, match",
    [
        (_no_w, {}, ValueError, "site named 'W'"),
        (_joint_obs, {}, ValueError, "inside plates over rows and columns"),
        (_flat_W, {}, ValueError, "proper priors on W and H"),
        (bn.NMFModel(2), {}, ValueError, "proper priors on W and H"),
        (zip_nmf, {"batch_size": 7}, ValueError, r"batch_size: expected .* \[1, "),
        (_no_subsample, {"batch_size": 3}, ValueError, "ignored subsample_size=3"),
        (_no_keyword, {"batch_size": 3}, ValueError, "accepts the keyword"),
        (zip_nmf, {"guide": "normal"}, ValueError, "guide: expected one of"),
        (zip_nmf, {"init": "nndsvd"}, ValueError, "init: expected"),
        (zip_nmf, {"num_steps": 0}, ValueError, "num_steps"),
        (zip_nmf, {"learning_rate": -1.0}, ValueError, "learning_rate"),
        (3, {}, TypeError, "expected an NMFModel or a NumPyro program"),
    ],
    ids=["no-W", "joint-obs", "flat-W", "flat-NMFModel", "batch>n", "no-plate",
         "no-keyword", "guide", "init", "num_steps", "learning_rate", "int-model"],
)
def test_bad_inputs_fail_before_compiling(problem, model, kwargs, error, match):
    X, _, _ = problem
    before = dict(_step_traces)
    with pytest.raises(error, match=match):
        fit_svi(X, model, **kwargs)
    assert dict(_step_traces) == before
