r"""Variational inference for Gaussian NMF with exponential priors.

The model (``METHODS.md`` §3.2; Brouwer, Frellsen and Liò 2017) is

.. math::

    x_{ij} \sim \mathcal N\big((WH)_{ij}, \tau^{-1}\big) \quad (i, j) \in \Omega,
    \qquad w_{ik} \sim \mathrm{Exp}(\lambda^W), \qquad
    h_{kj} \sim \mathrm{Exp}(\lambda^H), \qquad
    \tau \sim \mathrm{Gamma}(a_0, b_0),

where the gamma prior on the precision :math:`\tau` is the inverse-gamma prior
on the noise variance :math:`\sigma^2 = 1/\tau` that the NumPyro program
samples as ``noise_var``. The mean-field family is

.. math::

    q(W, H, \tau) = \prod_{ik} \mathcal{TN}_{[0, \infty)}(w_{ik} \mid
    \mu^W_{ik}, \tau^W_{ik}) \prod_{kj} \mathcal{TN}_{[0, \infty)}(h_{kj}
    \mid \mu^H_{kj}, \tau^H_{kj}) \; \mathrm{Gamma}(\tau \mid \alpha^*, \beta^*),

with truncated normals in the precision parametrisation. Coordinate ascent
updates one column of W at a time (the entries of a column are independent
given the rest, so a column is an exact block), then one row of H at a time,
then rescales each component along the ridge :math:`(cW, H/c)` in closed form,
then updates :math:`q(\tau)`; the evidence lower bound (ELBO) never decreases.

Kernels carry factors padded to a power-of-two number of columns (at least 4)
and take the rank as an argument, so that fits over ranks 1-4, 5-8, ... share
one compiled kernel.

References
----------
Brouwer, T., Frellsen, J. and Liò, P. (2017). Comparative study of inference
methods for Bayesian nonnegative matrix factorisation. ECML PKDD 2017.
https://doi.org/10.1007/978-3-319-71249-9_31
Schmidt, M. N., Winther, O. and Hansen, L. K. (2009). Bayesian non-negative
matrix factorization. ICA 2009. https://doi.org/10.1007/978-3-642-00599-2_68
Qi, Y. and Jaakkola, T. S. (2006). Parameter expanded variational Bayesian
methods. NIPS 19.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.scipy.special import digamma, gammaln, log_ndtr, ndtri

from .._precision import precision_scope
from .._validation import (
    NMFData,
    as_nmf_data,
    check_positive,
    check_positive_int,
    check_rank,
    check_seed,
)
from .._warnings import ConvergenceWarning
from ..likelihoods import Gaussian
from ..model import NMFModel
from ..priors import Exponential
from ..result import NMFResult

__all__ = ["fit_vi_gaussian", "GaussianTNState"]

_LOG_2PI = math.log(2.0 * math.pi)

# -- truncated-normal moments -------------------------------------------------
#
# For q = TN_[0, inf)(mu, tau) write sigma = tau^(-1/2), a = -mu / sigma and
# l = phi(a) / Phi(-a) (the inverse Mills ratio). Then
#   E = mu + sigma l,  Var = sigma^2 (1 - l (l - a)),
#   entropy = log(sqrt(2 pi e) sigma Phi(-a)) + a l / 2.
# For large a both E and Var cancel (l ~ a): float64 keeps ~1e-10 of Var at
# a = 10 and ~1e-4 at a = 30 (log_ndtr itself is only ~1e-9 accurate there).
# Beyond a = _TAIL the moments come from the asymptotic series of the Mills
# ratio R(a) = Phi(-a) / phi(a) = S(x) / a, x = 1 / a^2, rearranged so that
# nothing cancels:
#   E = sigma D(x) / a,   Var = sigma^2 x V(x),
#   entropy = 1/2 + log(sigma / a) + log S(x) + D(x) / 2.
# The leading terms (E = 1 / (|mu| tau), Var = E^2) are the exponential
# approximation of Brouwer's code (switch at |mu| > 30 sigma); the series keeps
# full float64 accuracy from a = 10 on (relative error < 1e-16 with 26 terms).

_TAIL = 10.0
_N_TERMS = 26


def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


def _tail_series(n_terms: int = _N_TERMS):
    """Coefficients (lowest order first) of S, D and V in x = 1 / a^2.

    ``S`` is the Mills-ratio series :math:`\\sum_n (-1)^n (2n-1)!!\\,x^n`;
    ``T = (1 - S) / x`` gives ``D = T / S`` and ``V = (S^2 - T S - x T^2) / (x S^2)``,
    expanded exactly in rational arithmetic.
    """
    n = n_terms + 1
    S = [Fraction((-1) ** i * _double_factorial(2 * i - 1)) for i in range(n)]
    T = [Fraction((-1) ** i * _double_factorial(2 * i + 1)) for i in range(n)]

    def mul(p, q):
        return [sum(p[i] * q[k - i] for i in range(k + 1)) for k in range(n)]

    def div(p, q):
        out = []
        for k in range(n):
            out.append((p[k] - sum(out[i] * q[k - i] for i in range(k))) / q[0])
        return out

    S2, TS, T2 = mul(S, S), mul(T, S), mul(T, T)
    # S^2 - T S - x T^2 starts at x^1; drop that power of x.
    num = [S2[k] - TS[k] - (T2[k - 1] if k else 0) for k in range(n)][1:]
    D = div(T, S)
    V = div(num + [Fraction(0)], S2)
    return tuple(tuple(float(v) for v in c[:n_terms]) for c in (S, D, V))


_S_COEF, _D_COEF, _V_COEF = _tail_series()


def _horner(coef, x):
    """Polynomial with coefficients ``coef`` (lowest order first) at ``x``."""
    out = jnp.full_like(x, coef[-1])
    for c in coef[-2::-1]:
        out = out * x + c
    return out


def _tn_moments(mu, tau):
    r"""Mean, variance and entropy of :math:`\mathcal{TN}_{[0,\infty)}(\mu, \tau)`.

    Parameters
    ----------
    mu : array
        Location of the underlying normal.
    tau : array
        Precision of the underlying normal, > 0 (broadcast against ``mu``).

    Returns
    -------
    mean, var, entropy : arrays of the broadcast shape

    Notes
    -----
    With :math:`\sigma = \tau^{-1/2}`, :math:`a = -\mu/\sigma` and the inverse
    Mills ratio :math:`\ell = \varphi(a) / \Phi(-a)` (from ``log_ndtr``):

    .. math::

        \mathbb E = \mu + \sigma\ell, \qquad
        \mathrm{Var} = \sigma^2\big(1 - \ell(\ell - a)\big), \qquad
        \mathbb H = \log\big(\sqrt{2\pi e}\,\sigma\,\Phi(-a)\big) + a\ell/2.

    For :math:`a > 10` an asymptotic expansion in :math:`1/a^2` replaces them
    (its leading term is the exponential approximation
    :math:`\mathbb E \approx 1/(\lvert\mu\rvert\tau)`,
    :math:`\mathrm{Var} \approx \mathbb E^2`). Needs float64.
    """
    mu, tau = jnp.broadcast_arrays(mu, tau)
    sigma = jax.lax.rsqrt(tau)
    a = -mu / sigma
    tail = a > _TAIL

    # Body: closed forms through log_ndtr.
    a_b = jnp.minimum(a, _TAIL)
    log_z = log_ndtr(-a_b)
    ell = jnp.exp(-0.5 * a_b * a_b - 0.5 * _LOG_2PI - log_z)
    mean_b = sigma * (ell - a_b)
    var_b = sigma * sigma * (1.0 - ell * (ell - a_b))
    ent_b = 0.5 * (_LOG_2PI + 1.0) - 0.5 * jnp.log(tau) + log_z + 0.5 * a_b * ell

    # Far left tail: asymptotic series, nothing cancels.
    a_t = jnp.maximum(a, _TAIL)
    x = 1.0 / (a_t * a_t)
    D = _horner(_D_COEF, x)
    mean_t = sigma * D / a_t
    var_t = sigma * sigma * x * _horner(_V_COEF, x)
    log_S = jnp.log(_horner(_S_COEF, x))
    ent_t = 0.5 + jnp.log(sigma / a_t) + log_S + 0.5 * D

    return (
        jnp.where(tail, mean_t, mean_b),
        jnp.where(tail, var_t, var_b),
        jnp.where(tail, ent_t, ent_b),
    )


def _sample_tn(key, mu, tau, shape):
    r"""Draw from :math:`\mathcal{TN}_{[0,\infty)}(\mu, \tau)` by inversion.

    The standardised draw :math:`z > a` solves
    :math:`\log\Phi(-z) = \log u + \log\Phi(-a)`, :math:`u \sim U(0, 1)`:
    directly through ``ndtri`` when :math:`a \le 3`, and in the tail by
    Newton's method on the (concave) left side, started from the exponential
    approximation :math:`z = a - \log(u)/a`, which stays accurate for any
    :math:`a`.
    """
    sigma = jax.lax.rsqrt(tau)
    a = -mu / sigma
    tiny = jnp.finfo(mu.dtype).tiny
    u = jax.random.uniform(key, shape, mu.dtype, minval=tiny, maxval=1.0)
    target = jnp.log(u) + log_ndtr(-a)

    z_body = -ndtri(jnp.exp(target))

    a_t = jnp.maximum(a, 3.0)
    target_t = jnp.log(u) + log_ndtr(-a_t)

    def newton(_, z):
        log_sf = log_ndtr(-z)
        ell = jnp.exp(-0.5 * z * z - 0.5 * _LOG_2PI - log_sf)
        return z + (log_sf - target_t) / ell

    z_tail = jax.lax.fori_loop(0, 8, newton, a_t - jnp.log(u) / a_t)
    z = jnp.where(a > 3.0, z_tail, z_body)
    return jnp.maximum(sigma * (z - a), 0.0)


# -- the coordinate-ascent blocks --------------------------------------------


class GaussianTNState(NamedTuple):
    r"""Variational parameters and moments of one restart.

    Attributes
    ----------
    W_mu, W_tau : arrays of shape (n_features, rank)
        :math:`\mu^W`, :math:`\tau^W` of :math:`q(w_{ik})`.
    W_mean, W_var, W_ent : arrays of shape (n_features, rank)
        :math:`\mathbb E_q w_{ik}`, :math:`\mathrm{Var}_q w_{ik}` and the
        entropy of :math:`q(w_{ik})`.
    H_mu, H_tau, H_mean, H_var, H_ent : arrays of shape (rank, n_samples)
        The same for H.
    tau_shape, tau_rate : float arrays
        :math:`\alpha^*`, :math:`\beta^*` of :math:`q(\tau)` (NaN when the
        noise is fixed).
    R : array of shape (n_features, n_samples)
        Residual :math:`M \odot (X - \mathbb E W\,\mathbb E H)`, updated by
        rank-one corrections within a sweep and recomputed at each check.
    """

    W_mu: jax.Array
    W_tau: jax.Array
    W_mean: jax.Array
    W_var: jax.Array
    W_ent: jax.Array
    H_mu: jax.Array
    H_tau: jax.Array
    H_mean: jax.Array
    H_var: jax.Array
    H_ent: jax.Array
    tau_shape: jax.Array
    tau_rate: jax.Array
    R: jax.Array


class _Spec(NamedTuple):
    """Static hyperparameters of the model (hashable, closed over by kernels).

    The rank is not one of them: kernels run on factors padded to
    :func:`_padded_rank` columns and take the rank as an argument, so that a
    sweep over ranks reuses one compiled kernel.
    """

    rate_W: float
    rate_H: float
    fixed_tau: float | None  # 1 / noise_scale^2 when the noise is fixed
    a0: float | None
    b0: float | None
    rescale: bool


def _spec(model: NMFModel, rescale: bool = True) -> _Spec:
    lik = model.likelihood
    fixed = None if lik.estimates_noise else 1.0 / lik.noise_scale**2
    return _Spec(model.prior_W.rate, model.prior_H.rate, fixed,
                 lik.noise_var_shape, lik.noise_var_rate, rescale)


def _padded_rank(rank: int) -> int:
    """Columns the kernels carry: 4, 8, 16, ... (the rank's power-of-two bucket)."""
    return max(4, 1 << (rank - 1).bit_length())


def _n_obs(X, M):
    return jnp.asarray(X.size, X.dtype) if M is None else jnp.sum(M)


def _noise_moments(spec: _Spec, q: GaussianTNState):
    """:math:`\\mathbb E\\tau` and :math:`\\mathbb E\\log\\tau`."""
    if spec.fixed_tau is not None:
        return spec.fixed_tau, math.log(spec.fixed_tau)
    return q.tau_shape / q.tau_rate, digamma(q.tau_shape) - jnp.log(q.tau_rate)


def _residual(X, M, W_mean, H_mean):
    R = X - W_mean @ H_mean
    return R if M is None else M * R


def _expected_sq_error(M, q: GaussianTNState):
    r""":math:`\sum_\Omega \mathbb E_q[(x_{ij} - (WH)_{ij})^2]`.

    .. math::

        \lVert R\rVert^2 + \sum_\Omega \big(\mathrm{Var}W\,\mathrm{Var}H
        + \mathrm{Var}W\,(\mathbb EH)^{\circ 2}
        + (\mathbb EW)^{\circ 2}\,\mathrm{Var}H\big)_{ij},

    the second term written without the cancelling difference
    :math:`\mathbb E[W^2]\mathbb E[H^2] - (\mathbb EW)^2(\mathbb EH)^2`.
    """
    W2, H2 = q.W_mean * q.W_mean, q.H_mean * q.H_mean
    if M is None:
        # sum_ij (A B)_ij = sum_k colsum(A)_k rowsum(B)_k: O((m + n) r).
        vw, vh = jnp.sum(q.W_var, 0), jnp.sum(q.H_var, 1)
        spread = jnp.sum(vw * vh + vw * jnp.sum(H2, 1) + jnp.sum(W2, 0) * vh)
    else:
        spread = jnp.sum(M * (q.W_var @ (q.H_var + H2) + W2 @ q.H_var))
    return jnp.sum(q.R * q.R) + spread


def _update_W_column(spec: _Spec, X, M, q: GaussianTNState, k):
    r"""Optimal :math:`q(w_{:k})` given everything else.

    .. math::

        \tau^W_{ik} = \mathbb E\tau \sum_j M_{ij}\mathbb E[h_{kj}^2], \qquad
        \mu^W_{ik} = \frac{\mathbb E\tau\big((R\,\mathbb Eh_k)_i
        + \mathbb Ew_{ik}\sum_j M_{ij}(\mathbb Eh_{kj})^2\big) - \lambda^W}
        {\tau^W_{ik}},

    where :math:`R\,\mathbb Eh_k + \mathbb Ew_{ik}\sum_j M_{ij}(\mathbb Eh_{kj})^2
    = \sum_j M_{ij}(x_{ij} - \sum_{k'\ne k}\mathbb Ew_{ik'}\mathbb Eh_{k'j})
    \mathbb Eh_{kj}`; then :math:`R` moves by a rank-one correction.
    """
    E_tau, _ = _noise_moments(spec, q)
    h = q.H_mean[k]
    hh = h * h
    w_old = q.W_mean[:, k]
    if M is None:
        s2, shh = jnp.sum(hh + q.H_var[k]), jnp.sum(hh)
    else:
        s2, shh = M @ (hh + q.H_var[k]), M @ hh
    tau = jnp.broadcast_to(E_tau * s2, w_old.shape)
    mu = (E_tau * (q.R @ h + w_old * shh) - spec.rate_W) / tau
    mean, var, ent = _tn_moments(mu, tau)

    step = jnp.outer(mean - w_old, h)
    R = q.R - (step if M is None else M * step)
    return q._replace(
        W_mu=q.W_mu.at[:, k].set(mu), W_tau=q.W_tau.at[:, k].set(tau),
        W_mean=q.W_mean.at[:, k].set(mean), W_var=q.W_var.at[:, k].set(var),
        W_ent=q.W_ent.at[:, k].set(ent), R=R,
    )


def _update_H_row(spec: _Spec, X, M, q: GaussianTNState, k):
    r"""Optimal :math:`q(h_{k:})` given everything else (the transpose of W's)."""
    E_tau, _ = _noise_moments(spec, q)
    w = q.W_mean[:, k]
    ww = w * w
    h_old = q.H_mean[k]
    if M is None:
        s2, sww = jnp.sum(ww + q.W_var[:, k]), jnp.sum(ww)
    else:
        s2, sww = (ww + q.W_var[:, k]) @ M, ww @ M
    tau = jnp.broadcast_to(E_tau * s2, h_old.shape)
    mu = (E_tau * (w @ q.R + h_old * sww) - spec.rate_H) / tau
    mean, var, ent = _tn_moments(mu, tau)

    step = jnp.outer(w, mean - h_old)
    R = q.R - (step if M is None else M * step)
    return q._replace(
        H_mu=q.H_mu.at[k].set(mu), H_tau=q.H_tau.at[k].set(tau),
        H_mean=q.H_mean.at[k].set(mean), H_var=q.H_var.at[k].set(var),
        H_ent=q.H_ent.at[k].set(ent), R=R,
    )


def _update_noise(spec: _Spec, X, M, q: GaussianTNState):
    r""":math:`\alpha^* = a_0 + \lvert\Omega\rvert/2`,
    :math:`\beta^* = b_0 + \tfrac12\sum_\Omega\mathbb E[(x_{ij}-(WH)_{ij})^2]`."""
    if spec.fixed_tau is not None:
        return q
    shape = spec.a0 + 0.5 * _n_obs(X, M)
    rate = spec.b0 + 0.5 * _expected_sq_error(M, q)
    return q._replace(tau_shape=shape, tau_rate=rate)


def _rescale(spec: _Spec, X, M, q: GaussianTNState):
    r"""Best rescaling :math:`w_{:k} \to c_k w_{:k}`, :math:`h_{k:} \to h_{k:}/c_k`.

    Truncated normals are closed under scaling, and the likelihood term of the
    ELBO depends on :math:`q(W)q(H)` only through
    :math:`\mathbb E[w_{ik}]\mathbb E[h_{kj}]` and
    :math:`\mathbb E[w_{ik}^2]\mathbb E[h_{kj}^2]`, which do not change; only
    the priors and entropies do:

    .. math::

        \mathcal L(c) = -\lambda^W c A_k - \lambda^H B_k / c + (m - n)\log c
        + \text{const}, \qquad A_k = \textstyle\sum_i\mathbb Ew_{ik},\;
        B_k = \textstyle\sum_j\mathbb Eh_{kj},

    maximised by the positive root of
    :math:`\lambda^W A_k c^2 - (m - n) c - \lambda^H B_k = 0`. This is a
    parameter-expanded VB step (Qi and Jaakkola 2006): the column and row
    updates alone move along the scaling ridge of :math:`WH` very slowly.
    Padding columns (:math:`A_k = 0`) keep :math:`c = 1`.
    """
    m, n = X.shape
    A = spec.rate_W * jnp.sum(q.W_mean, axis=0)
    B = spec.rate_H * jnp.sum(q.H_mean, axis=1)
    d = float(m - n)
    root = jnp.sqrt(d * d + 4.0 * A * B)
    # The root without cancellation for either sign of m - n.
    c = (d + root) / (2.0 * A) if d >= 0 else 2.0 * B / (root - d)
    c = jnp.where(A > 0, c, 1.0)
    log_c = jnp.log(c)
    return q._replace(
        W_mu=q.W_mu * c, W_tau=q.W_tau / (c * c), W_mean=q.W_mean * c,
        W_var=q.W_var * (c * c), W_ent=q.W_ent + log_c,
        H_mu=q.H_mu / c[:, None], H_tau=q.H_tau * (c * c)[:, None],
        H_mean=q.H_mean / c[:, None], H_var=q.H_var / (c * c)[:, None],
        H_ent=q.H_ent - log_c[:, None],
    )


def _sweep(spec: _Spec, X, M, q: GaussianTNState, rank):
    """Columns ``0..rank-1`` of W, then the same rows of H, the rescaling
    (when ``spec.rescale``), then q(tau)."""
    q = jax.lax.fori_loop(0, rank, lambda k, s: _update_W_column(spec, X, M, s, k), q)
    q = jax.lax.fori_loop(0, rank, lambda k, s: _update_H_row(spec, X, M, s, k), q)
    if spec.rescale:
        q = _rescale(spec, X, M, q)
    return _update_noise(spec, X, M, q)


def _refresh(X, M, q: GaussianTNState):
    """Recompute the residual from scratch (rank-one updates drift by rounding)."""
    return q._replace(R=_residual(X, M, q.W_mean, q.H_mean))


def _elbo(spec: _Spec, X, M, q: GaussianTNState, rank):
    r"""The exact evidence lower bound (``METHODS.md`` §3.2).

    .. math::

        \mathcal L = \tfrac{\lvert\Omega\rvert}{2}(\mathbb E\log\tau - \log 2\pi)
        - \tfrac{\mathbb E\tau}{2}\textstyle\sum_\Omega\mathbb E[(x - WH)^2]
        + \sum(\log\lambda^W - \lambda^W\mathbb EW)
        + \sum(\log\lambda^H - \lambda^H\mathbb EH)
        + \mathbb H[q(W)] + \mathbb H[q(H)]
        + \mathbb E\log p(\tau) + \mathbb H[q(\tau)],

    the last two terms only when :math:`\tau` is estimated. Padding columns
    (``k >= rank``) hold zero means, variances and entropies.
    """
    E_tau, E_log_tau = _noise_moments(spec, q)
    n_obs = _n_obs(X, M)
    elbo = 0.5 * n_obs * (E_log_tau - _LOG_2PI) - 0.5 * E_tau * _expected_sq_error(M, q)

    m, n = X.shape
    elbo += m * rank * math.log(spec.rate_W) - spec.rate_W * jnp.sum(q.W_mean)
    elbo += n * rank * math.log(spec.rate_H) - spec.rate_H * jnp.sum(q.H_mean)
    elbo += jnp.sum(q.W_ent) + jnp.sum(q.H_ent)

    if spec.fixed_tau is None:
        a0, b0, a, b = spec.a0, spec.b0, q.tau_shape, q.tau_rate
        log_prior = a0 * math.log(b0) - math.lgamma(a0) + (a0 - 1.0) * E_log_tau
        elbo += log_prior - b0 * E_tau
        elbo -= a * jnp.log(b) - gammaln(a) + (a - 1.0) * E_log_tau - b * E_tau
    return elbo


def _init(spec: _Spec, X, M, key, rank, r_pad: int):
    r"""Random start on factors padded to ``r_pad`` columns.

    Means are scaled absolute normals, :math:`\lvert\mathcal N(0, 1)\rvert
    \sqrt{\bar x / r}` with :math:`\bar x` the mean observed entry (so that
    :math:`\mathbb E(WH)_{ij}` is of the order of the data), standard
    deviations a tenth of that scale; ``q(tau)`` starts at its optimum given
    them. Columns ``k >= rank`` are padding: zero mean, variance and entropy.
    """
    m, n = X.shape
    scale = jnp.sqrt(jnp.sum(X) / _n_obs(X, M) / rank)
    key_W, key_H = jax.random.split(key)
    W0 = scale * jnp.abs(jax.random.normal(key_W, (m, r_pad), X.dtype))
    H0 = scale * jnp.abs(jax.random.normal(key_H, (r_pad, n), X.dtype))
    prec = 100.0 / (scale * scale)

    # One moments call for both factors (each call site costs compile time).
    mean, var, ent = _tn_moments(jnp.concatenate([W0.ravel(), H0.ravel()]), prec)
    active = jnp.arange(r_pad) < rank
    a_W, a_H = active[None, :], active[:, None]

    def split(v, fill=0.0):
        W = v[: m * r_pad].reshape(m, r_pad)
        H = v[m * r_pad:].reshape(r_pad, n)
        return jnp.where(a_W, W, fill), jnp.where(a_H, H, fill)

    (W_mean, H_mean), (W_var, H_var), (W_ent, H_ent) = map(split, (mean, var, ent))
    W_mu, H_mu = jnp.where(a_W, W0, 0.0), jnp.where(a_H, H0, 0.0)
    W_tau = jnp.where(a_W, prec, 1.0) * jnp.ones_like(W0)
    H_tau = jnp.where(a_H, prec, 1.0) * jnp.ones_like(H0)
    nan = jnp.full((), jnp.nan, X.dtype)
    q = GaussianTNState(W_mu, W_tau, W_mean, W_var, W_ent, H_mu, H_tau, H_mean, H_var,
                        H_ent, nan, nan, _residual(X, M, W_mean, H_mean))
    return _update_noise(spec, X, M, q)


# -- compiled kernels ----------------------------------------------------------


class _LoopState(NamedTuple):
    q: GaussianTNState
    n_iter: jax.Array
    elbo: jax.Array
    elbo0: jax.Array
    converged: jax.Array
    trace: jax.Array
    n_checks: jax.Array


def _sweep_with_elbos(spec: _Spec, X, M, q: GaussianTNState, rank):
    """One sweep that also returns the ELBO after every block update.

    Entries ``0..r-1`` follow the columns of W, ``r_pad..r_pad+r-1`` the rows
    of H, then come the rescaling and q(tau); padding entries are NaN. A
    diagnostic for the tests: coordinate ascent must never lower the ELBO.
    """
    r_pad = q.W_mu.shape[1]
    trace = jnp.full((2 * r_pad + 2,), jnp.nan, X.dtype)

    def elbo(q):
        return _elbo(spec, X, M, _refresh(X, M, q), rank)

    def step(update, offset):
        def body(k, carry):
            q, trace = carry
            q = update(spec, X, M, q, k)
            return q, trace.at[offset + k].set(elbo(q))

        return body

    q, trace = jax.lax.fori_loop(0, rank, step(_update_W_column, 0), (q, trace))
    q, trace = jax.lax.fori_loop(0, rank, step(_update_H_row, r_pad), (q, trace))
    if spec.rescale:
        q = _rescale(spec, X, M, q)
        trace = trace.at[-2].set(elbo(q))
    q = _update_noise(spec, X, M, q)
    return q, trace.at[-1].set(elbo(q))


@functools.lru_cache(maxsize=32)
def _kernels(spec: _Spec):
    """Compiled ``init`` and ``run`` for one model.

    Shapes, the number of restarts and the trace length are handled by
    ``jit``'s own cache, so each kernel compiles once per shape.
    """

    def start(X, M, key, rank, r_pad, n_trace):
        q = _init(spec, X, M, key, rank, r_pad)
        elbo = _elbo(spec, X, M, q, rank)
        trace = jnp.full((n_trace,), jnp.nan, X.dtype).at[0].set(elbo)
        zero = jnp.zeros((), jnp.int32)
        return _LoopState(q, zero, elbo, elbo, jnp.array(False), trace, zero)

    def run_one(X, M, state, rank, iter_limit, tol, check_every):
        def cond(s):
            return (~s.converged) & (s.n_iter < iter_limit)

        def body(s):
            n = jnp.minimum(check_every, iter_limit - s.n_iter)
            q = jax.lax.fori_loop(0, n, lambda _, q: _sweep(spec, X, M, q, rank), s.q)
            q = _refresh(X, M, q)
            elbo = _elbo(spec, X, M, q, rank)
            increase = elbo - s.elbo
            converged = (tol > 0) & (increase <= tol * (elbo - s.elbo0))
            k = s.n_checks + 1
            return _LoopState(q, s.n_iter + n, elbo, s.elbo0, converged,
                              s.trace.at[k].set(elbo), k)

        return jax.lax.while_loop(cond, body, state)

    @functools.partial(jax.jit, static_argnames=("r_pad", "n_trace"))
    def init(X, M, keys, rank, r_pad, n_trace):
        one = functools.partial(start, rank=rank, r_pad=r_pad, n_trace=n_trace)
        return jax.vmap(one, in_axes=(None, None, 0))(X, M, keys)

    @jax.jit
    def run(X, M, state, rank, iter_limit, tol, check_every):
        one = functools.partial(run_one, rank=rank, iter_limit=iter_limit, tol=tol,
                                check_every=check_every)
        return jax.vmap(one, in_axes=(None, None, 0))(X, M, state)

    return init, run


@functools.partial(jax.jit, static_argnames="num_draws")
def _draw_factors(key, W_mu, W_tau, H_mu, H_tau, num_draws):
    """Draws of W and H from q (one sampler call for both) and uniforms for tau."""
    key_WH, key_tau = jax.random.split(key)
    mu = jnp.concatenate([W_mu.ravel(), H_mu.ravel()])
    tau = jnp.concatenate([W_tau.ravel(), H_tau.ravel()])
    draws = _sample_tn(key_WH, mu, tau, (num_draws, mu.size))
    W = draws[:, : W_mu.size].reshape(num_draws, *W_mu.shape)
    H = draws[:, W_mu.size:].reshape(num_draws, *H_mu.shape)
    tiny = jnp.finfo(mu.dtype).tiny
    u = jax.random.uniform(key_tau, (num_draws,), mu.dtype, minval=tiny, maxval=1.0)
    return W, H, u


# -- public function -------------------------------------------------------------


def _check_model(model) -> NMFModel:
    if not isinstance(model, NMFModel):
        raise TypeError(
            f"model: expected an NMFModel with a Gaussian likelihood and Exponential "
            f"priors, got {model!r}."
        )
    lik = model.likelihood
    if not (
        isinstance(lik, Gaussian)
        and type(model.prior_W) is Exponential
        and type(model.prior_H) is Exponential
    ):
        raise NotImplementedError(
            "model: closed-form Gaussian VI covers a Gaussian likelihood with "
            "Exponential priors on W and H; got "
            f"{lik.describe()} with W ~ {model.prior_W.describe()}, "
            f"H ~ {model.prior_H.describe()}. Fit other combinations with the "
            "generic stochastic VI engine (NumPyro SVI)."
        )
    if lik.estimates_noise and not lik.has_noise_prior:
        raise ValueError(
            "model.likelihood: Gaussian(noise_scale=None) without a prior on the "
            "noise variance is improper, so the ELBO is undefined. Give "
            "Gaussian(noise_scale=None, noise_var_shape=a0, noise_var_rate=b0) "
            "(an inverse-gamma prior on the variance, a gamma prior on the "
            "precision), or fix noise_scale."
        )
    return model


def _restart_keys(key, n_restarts: int):
    # fold_in keeps restart i the same whatever the number of restarts.
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_restarts))


def fit_vi_gaussian(
    X,
    model: NMFModel,
    *,
    mask=None,
    n_restarts: int = 1,
    seed: int = 0,
    max_iter: int = 2000,
    tol: float = 1e-6,
    check_every: int = 10,
    num_draws: int = 500,
    rescale: bool = True,
    allow_nan: bool = False,
    progress: bool = False,
    warn: bool = True,
) -> NMFResult:
    r"""Fit Gaussian NMF with exponential priors by coordinate-ascent VI.

    The posterior of :math:`W`, :math:`H` and the noise precision
    :math:`\tau = 1/\sigma^2` is approximated by independent truncated
    normals on every entry of W and H and a gamma distribution on
    :math:`\tau`. Each sweep updates the columns of W one at a time, then the
    rows of H, then :math:`q(\tau)`:

    .. math::

        \tau^W_{ik} = \mathbb E\tau\sum_j M_{ij}\mathbb E[h_{kj}^2], \quad
        \mu^W_{ik} = \frac{\mathbb E\tau\sum_j M_{ij}\big(x_{ij}
        - \sum_{k'\ne k}\mathbb Ew_{ik'}\mathbb Eh_{k'j}\big)\mathbb Eh_{kj}
        - \lambda^W}{\tau^W_{ik}},

    the same for H, a closed-form rescaling of each component along the
    :math:`(cW, H/c)` ridge (``rescale``), and :math:`\alpha^* = a_0 +
    \lvert\Omega\rvert/2`, :math:`\beta^* = b_0 +
    \tfrac12\sum_\Omega\mathbb E[(x_{ij}-(WH)_{ij})^2]`. The exact ELBO never
    decreases. Computation is float64 (truncated-normal
    moments are far off in float32), in a scoped ``jax.enable_x64`` context; no
    global JAX setting changes.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data (NumPy array, pandas DataFrame, AnnData or
        :class:`~bayesnmf.NMFData`); labels are kept.
    model : NMFModel
        ``Gaussian`` likelihood and ``Exponential`` priors on W and H
        (:math:`\lambda^W`, :math:`\lambda^H` are their ``rate``). The noise is
        either fixed (``Gaussian(noise_scale=s)``, :math:`\tau = 1/s^2`) or
        estimated under ``Gaussian(noise_scale=None, noise_var_shape=a0,
        noise_var_rate=b0)``: :math:`\sigma^2 \sim \mathrm{InvGamma}(a_0,
        b_0)`, i.e. :math:`\tau \sim \mathrm{Gamma}(a_0, \text{rate } b_0)`.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; unobserved entries do not influence the fit.
    n_restarts : int, default 1
        Independent random starts, batched in one compiled call; the one with
        the highest ELBO is kept and all are returned in ``result.restarts``.
    seed : int, default 0
        Seed of the starts and of the draws. Restart ``i`` is the same
        whatever ``n_restarts`` is.
    max_iter : int, default 2000
        Cap on the number of sweeps.
    tol : float, default 1e-6
        Stop when the ELBO increase over the last ``check_every`` sweeps is at
        most ``tol`` times its increase since the start. ``0`` runs exactly
        ``max_iter`` sweeps.
    check_every : int, default 10
        Sweeps between ELBO evaluations (the trace's resolution).
    num_draws : int, default 500
        Draws from the variational distribution of the best restart, in
        ``result.draws`` with one chain (``0`` for none).
    rescale : bool, default True
        End each sweep with the ELBO-optimal rescaling of every component
        (:math:`w_{:k} \to c_k w_{:k}`, :math:`h_{k:} \to h_{k:}/c_k`, in
        closed form). Column and row updates alone creep along this scaling
        ridge and can stop far below the optimum when the noise is small;
        ``False`` gives the plain updates of Brouwer et al. (2017).
    allow_nan : bool, default False
        Treat NaN entries of X as missing (added to the mask).
    progress : bool, default False
        Show a progress bar over sweeps (the fit then runs in chunks).
    warn : bool, default True
        Emit a :class:`~bayesnmf.ConvergenceWarning` when the best restart hits
        ``max_iter`` before meeting ``tol``.

    Returns
    -------
    NMFResult
        ``method="vi"``; ``W_raw``, ``H_raw`` are :math:`\mathbb E_q W`,
        :math:`\mathbb E_q H`; ``objective`` is the negative ELBO;
        ``params["noise_var"]`` is :math:`\mathbb E_q[1/\tau] =
        \beta^*/(\alpha^*-1)` when the noise is estimated. ``extra`` holds the
        variational parameters ``q_W_mu``, ``q_W_tau``, ``q_H_mu``,
        ``q_H_tau`` (and ``q_tau_shape``, ``q_tau_rate`` when the noise is
        estimated) and ``elbo``; ``draws`` holds ``W`` (1, S, m, r), ``H``
        (1, S, r, n) and ``noise_var`` (1, S).

    Raises
    ------
    NotImplementedError
        For another likelihood or other priors.
    ValueError
        For an estimated noise variance without a prior.

    Notes
    -----
    The residual :math:`M\odot(X - \mathbb EW\,\mathbb EH)` is carried through
    a sweep and corrected by a rank-one update after each column or row, so
    one column costs :math:`O(mn)` and a sweep :math:`O(mnr)`, instead of
    :math:`O(mnr^2)` when :math:`\mathbb EW\,\mathbb EH` is recomputed per
    column; it is recomputed exactly at every check. Per restart the posterior has
    :math:`r!` symmetric modes and mean-field VI captures one; add
    :math:`\log r!` to compare ELBOs across ranks as evidence
    (``METHODS.md`` §5.6).

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> from bayesnmf.vi._gaussian_tn import fit_vi_gaussian
    >>> rng = np.random.default_rng(0)
    >>> X = rng.exponential(size=(20, 2)) @ rng.exponential(size=(2, 15))
    >>> noise = bn.Gaussian(None, noise_var_shape=1.0, noise_var_rate=1.0)
    >>> model = bn.NMFModel(2, noise, bn.Exponential(1.0), bn.Exponential(1.0))
    >>> res = fit_vi_gaussian(np.maximum(X + rng.normal(0, 0.1, X.shape), 0), model)
    >>> res.draws["W"].shape
    (1, 500, 20, 2)
    """
    # -- checks, all before anything is traced --------------------------------
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    model = _check_model(model)
    check_rank(model.rank, data.shape)
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    max_iter = check_positive_int(max_iter, "max_iter")
    check_every = check_positive_int(check_every, "check_every")
    num_draws = check_positive_int(num_draws, "num_draws", minimum=0)
    tol = check_positive(tol, "tol", allow_zero=True)
    if not isinstance(rescale, (bool, np.bool_)):
        raise TypeError(f"rescale: expected True or False, got {rescale!r}.")

    masked = data.mask is not None
    spec = _spec(model, bool(rescale))
    n_trace = -(-max_iter // check_every) + 1
    init, run = _kernels(spec)

    with precision_scope(np.float64):
        Xj = jnp.asarray(data.X, jnp.float64)
        Mj = jnp.asarray(data.mask, jnp.float64) if masked else None
        key_fit, key_draw = jax.random.split(jax.random.key(seed))
        rank = jnp.asarray(model.rank, jnp.int32)
        state = init(Xj, Mj, _restart_keys(key_fit, n_restarts), rank,
                     r_pad=_padded_rank(model.rank), n_trace=n_trace)
        state = _run(run, Xj, Mj, state, rank, max_iter,
                     jnp.asarray(tol, jnp.float64),
                     jnp.asarray(check_every, jnp.int32), progress)
        state = jax.tree.map(np.asarray, state)
        best = int(np.nanargmax(state.elbo))
        q = jax.tree.map(lambda v: v[best], state.q)
        draws = {}
        if num_draws:
            W, H, u = _draw_factors(key_draw, q.W_mu, q.W_tau, q.H_mu, q.H_tau,
                                    num_draws=num_draws)
            r = model.rank
            draws = {"W": np.asarray(W)[None, ..., :r],
                     "H": np.asarray(H)[None, :, :r]}
            if spec.fixed_tau is None:
                # tau ~ Gamma(shape, rate) by inversion; noise_var = 1 / tau.
                g = scipy.stats.gamma.ppf(np.asarray(u), q.tau_shape)
                draws["noise_var"] = (q.tau_rate / g)[None]

    result = _to_result(data, model, state, best, draws, check_every, settings={
        "method": "vi", "engine": "cavi-gaussian-tn", "seed": seed,
        "n_restarts": n_restarts, "max_iter": max_iter, "tol": tol,
        "check_every": check_every, "num_draws": num_draws,
        "rescale": bool(rescale), "dtype": "float64", "masked": masked,
        "n_observed": data.n_observed,
    })
    if warn and not result.converged:
        warnings.warn(
            f"Gaussian VI did not converge within max_iter={max_iter} sweeps "
            f"(tol={tol:g}); increase max_iter or loosen tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def _run(run, X, M, state, rank, max_iter, tol, check_every, progress):
    if not progress or os.environ.get("CI"):
        return run(X, M, state, rank, max_iter, tol, check_every)
    from tqdm.auto import tqdm

    # Chunks of whole checks: the checks fall where they would without a
    # progress bar, so the result is the same.
    every = int(check_every)
    chunk = every * max(1, max_iter // 50 // every)
    with tqdm(total=max_iter, desc="VI sweeps", unit="sweep", leave=False) as bar:
        done = 0
        while done < max_iter:
            limit = min(max_iter, done + chunk)
            state = run(X, M, state, rank, limit, tol, check_every)
            bar.update(limit - done)
            done = limit
            if np.asarray(state.converged).all():
                break
            bar.set_postfix(elbo=f"{float(np.max(state.elbo)):.6g}")
    return state


def _noise_var_mean(shape, rate):
    r""":math:`\mathbb E_q[1/\tau] = \beta^*/(\alpha^*-1)`; infinite if α* <= 1."""
    return np.where(shape > 1.0, rate / np.maximum(shape - 1.0, 1e-300), np.inf)


def _to_result(data: NMFData, model, state: _LoopState, best, draws, check_every,
               settings):
    r = model.rank
    q = state.q
    q = q._replace(  # drop the padding columns
        W_mu=q.W_mu[..., :r], W_tau=q.W_tau[..., :r], W_mean=q.W_mean[..., :r],
        H_mu=q.H_mu[:, :r], H_tau=q.H_tau[:, :r], H_mean=q.H_mean[:, :r],
    )
    elbo = state.elbo.astype(np.float64)
    n_checks = int(state.n_checks[best])
    iters = np.minimum(np.arange(n_checks + 1) * check_every, state.n_iter[best])
    estimated = model.likelihood.estimates_noise
    restarts = {
        "W_raw": q.W_mean,
        "H_raw": q.H_mean,
        "objective": -elbo,
        "n_iter": state.n_iter.astype(np.int64),
        "converged": state.converged.astype(bool),
        "trace": -state.trace.astype(np.float64),
    }
    params, extra = {}, {
        "q_W_mu": q.W_mu[best], "q_W_tau": q.W_tau[best],
        "q_H_mu": q.H_mu[best], "q_H_tau": q.H_tau[best],
        "elbo": float(elbo[best]),
    }
    if estimated:
        noise_var = _noise_var_mean(q.tau_shape, q.tau_rate)
        restarts["noise_var"] = noise_var
        params["noise_var"] = float(noise_var[best])
        extra["q_tau_shape"] = float(q.tau_shape[best])
        extra["q_tau_rate"] = float(q.tau_rate[best])
    return NMFResult(
        model=model,
        method="vi",
        W_raw=restarts["W_raw"][best],
        H_raw=restarts["H_raw"][best],
        params=params,
        objective=float(-elbo[best]),
        objective_name="negative ELBO",
        trace=restarts["trace"][best, : n_checks + 1],
        trace_iter=iters,
        n_iter=int(state.n_iter[best]),
        converged=bool(state.converged[best]),
        feature_names=list(data.feature_names),
        sample_names=list(data.sample_names),
        restarts=restarts,
        best_restart=best,
        settings=settings,
        draws=draws,
        extra=extra,
    )
