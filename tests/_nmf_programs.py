"""Helpers shared by the SVI and NUTS tests: an exact posterior and a custom model."""

import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.special import gammaln

_LOG_S = np.linspace(-30.0, 30.0, 600_001)


def _log_sum_density(X, shape_W, rate_W, shape_H, rate_H):
    """Unnormalised log density of log s, s the sum of w (see below)."""
    m, n = X.shape
    total = X.sum()
    A, B = m * shape_W + total, n * shape_H + total
    s = np.exp(_LOG_S)
    return A * _LOG_S - rate_W * s - B * np.log(rate_H + s)


def exact_rank1_posterior_mean(X, shape_W, rate_W, shape_H, rate_H):
    r"""Exact ``E[WH | X]`` for rank-1 Poisson NMF with gamma priors.

    With ``w_i ~ Gamma(a, b)``, ``h_j ~ Gamma(c, d)`` and
    ``x_ij ~ Poisson(w_i h_j)``, integrating out H and writing ``w = s pi``
    (``s`` the sum of w, ``pi`` on the simplex) gives
    ``pi | X ~ Dirichlet(a + x_i.)`` independent of ``s``, whose density is
    proportional to :math:`s^{ma + x_{..} - 1} e^{-bs} (d + s)^{-(nc + x_{..})}`,
    and ``h_j | s, X ~ Gamma(c + x_.j, d + s)``. Hence

    .. math::

        E[w_i h_j \mid X] = \frac{a + x_{i.}}{ma + x_{..}} (c + x_{.j})
        E\left[\frac{s}{d + s}\right],

    a one-dimensional integral done here by the trapezoid rule on log s.
    """
    m, n = X.shape
    log_density = _log_sum_density(X, shape_W, rate_W, shape_H, rate_H)
    weight = np.exp(log_density - log_density.max())
    s = np.exp(_LOG_S)
    ratio = np.trapezoid(weight * s / (rate_H + s), _LOG_S)
    ratio /= np.trapezoid(weight, _LOG_S)
    pi = (shape_W + X.sum(axis=1)) / (m * shape_W + X.sum())
    return np.outer(pi, (shape_H + X.sum(axis=0)) * ratio)


def exact_rank1_log_evidence(X, shape_W, rate_W, shape_H, rate_H):
    r"""Exact ``log p(X)`` of the same model (the same 1-D integral over s).

    .. math::

        p(X) = \prod_j \frac{d^c\,\Gamma(c + x_{.j})}{\Gamma(c)}
        \prod_{ij} \frac{1}{x_{ij}!}
        \left(\frac{b^a}{\Gamma(a)}\right)^m
        \frac{\prod_i \Gamma(a + x_{i.})}{\Gamma(ma + x_{..})}
        \int_0^\infty s^{ma + x_{..} - 1} e^{-bs} (d + s)^{-(nc + x_{..})}\,ds.
    """
    m, n = X.shape
    a, b, c, d = shape_W, rate_W, shape_H, rate_H
    log_density = _log_sum_density(X, a, b, c, d)
    top = log_density.max()
    log_integral = top + np.log(np.trapezoid(np.exp(log_density - top), _LOG_S))
    return (
        np.sum(c * np.log(d) + gammaln(c + X.sum(axis=0)) - gammaln(c))
        - np.sum(gammaln(X + 1.0))
        + m * (a * np.log(b) - gammaln(a))
        + np.sum(gammaln(a + X.sum(axis=1)))
        - gammaln(m * a + X.sum())
        + log_integral
    )


def zip_nmf(X, mask=None, *, subsample_size=None, rank=2):
    """Zero-inflated Poisson NMF with per-feature exposures: a user's program.

    Latent sites: ``W`` (m, rank), ``H`` (rank, n), ``exposure`` (m, 1), positive,
    and ``gate`` (scalar, in (0, 1)): x_ij is 0 with probability ``gate``, else
    Poisson(exposure_i (WH)_ij).
    """
    m, n = X.shape
    gate = numpyro.sample("gate", dist.Beta(1.0, 9.0))
    with numpyro.plate("feature", m, dim=-2):
        exposure = numpyro.sample("exposure", dist.Gamma(20.0, 20.0))
        with numpyro.plate("component", rank, dim=-1):
            W = numpyro.sample("W", dist.Gamma(1.0, 1.0))
    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        H = numpyro.sample("H", dist.Gamma(1.0, 0.1))
    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        rate = exposure * (W @ H)
        d = dist.ZeroInflatedPoisson(gate, rate)
        if mask is not None:
            d = d.mask(mask[:, idx] > 0)
        numpyro.sample("X", d, obs=X[:, idx])
