"""Likelihood densities against SciPy, and the divergence-plus-constant split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import bayesnmf as bn

X_COUNTS = np.array([0.0, 1.0, 2.0, 7.0, 30.0, 250.0])
MEANS = np.array([0.3, 1.7, 2.0, 5.5, 31.0, 180.0])


def _scipy_logpdf(lik, x, mu, params):
    if lik.kind == "gaussian":
        return stats.norm.logpdf(x, mu, np.sqrt(params.get("noise_var", 1.0)))
    if lik.kind == "poisson":
        return stats.poisson.logpmf(x, mu)
    if lik.kind == "negbinomial":
        r = params.get("concentration", lik.concentration)
        return stats.nbinom.logpmf(x, r, r / (r + mu))
    a = params.get("noise_shape", lik.shape)
    return stats.gamma.logpdf(x, a, scale=mu / a)


CASES = [
    (bn.Gaussian(noise_scale=None), {"noise_var": 2.3}),
    (bn.Gaussian(noise_scale=1.0), {}),
    (bn.Poisson(), {}),
    (bn.NegativeBinomial(concentration=3.5), {}),
    (bn.NegativeBinomial(), {"concentration": 0.7}),
    (bn.GammaLikelihood(shape=1.0), {}),
    (bn.GammaLikelihood(shape=None), {"noise_shape": 4.2}),
]


@pytest.mark.parametrize("lik, params", CASES, ids=lambda v: getattr(v, "kind", ""))
def test_log_prob_matches_scipy(lik, params):
    x = X_COUNTS + (0.5 if lik.kind == "gamma" else 0.0)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        ours = np.asarray(lik.log_prob(jnp.asarray(x), jnp.asarray(MEANS), p))
        # -log p = loss + data_constant: the split the MAP objective relies on.
        W = jnp.asarray(MEANS)[:, None]
        H = jnp.ones((1, 1))
        X = jnp.asarray(x)[:, None]
        total = float(lik.loss(X, None, W, H, p) + lik.data_constant(X, None, p))
        loss = float(lik.loss(X, None, W, H, p))
    ref = _scipy_logpdf(lik, x, MEANS, params)
    assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert_allclose(-total, ref.sum(), rtol=1e-12)
    assert loss >= -1e-12  # a divergence


def test_negative_binomial_tends_to_poisson():
    with jax.enable_x64(True):
        x, mu = jnp.asarray(X_COUNTS), jnp.asarray(MEANS)
        nb = bn.NegativeBinomial(concentration=1e7).log_prob(x, mu, {})
        po = bn.Poisson().log_prob(x, mu, {})
    # The gap is O((x - mu)^2 / r): about 3e-3 at the largest entry.
    assert_allclose(np.asarray(nb), np.asarray(po), rtol=1e-3, atol=1e-5)


def test_gamma_likelihood_rejects_zeros():
    with pytest.raises(ValueError, match="strictly positive"):
        bn.fit_map(np.array([[0.0, 1.0], [2.0, 3.0]]),
                   bn.NMFModel(1, bn.GammaLikelihood()))


@pytest.mark.parametrize("text, kind", [
    ("poisson", "poisson"), ("kl", "poisson"), ("frobenius", "gaussian"),
    ("nb", "negbinomial"), ("negbinomial:5", "negbinomial"), ("is", "gamma"),
])
def test_parse_likelihood(text, kind):
    from bayesnmf.likelihoods import parse_likelihood

    assert parse_likelihood(text).kind == kind


def test_estimated_dispersions_recovered():
    """ML concentration and gamma shape land near the truth on simulated data."""
    rng = np.random.default_rng(5)
    W = rng.gamma(2.0, 1.0, (60, 2))
    H = rng.gamma(2.0, 10.0, (2, 50))
    mu = W @ H
    r = 3.0
    X = rng.negative_binomial(r, r / (r + mu)).astype(float)
    fit = bn.fit_map(X, bn.NMFModel(2, bn.NegativeBinomial()), n_restarts=3,
                     max_iter=3000, warn=False)
    assert abs(fit.params["concentration"] - r) / r < 0.2
    a = 5.0
    Xg = mu * rng.gamma(a, 1.0 / a, mu.shape)
    fit = bn.fit_map(Xg, bn.NMFModel(2, bn.GammaLikelihood(shape=None)),
                     n_restarts=3, max_iter=3000, warn=False)
    assert abs(fit.params["noise_shape"] - a) / a < 0.2
