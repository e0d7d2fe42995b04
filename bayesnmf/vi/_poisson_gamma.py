r"""Closed-form variational inference for Poisson NMF with gamma priors.

The model (``METHODS.md`` §3.1; Cemgil 2009), with shape-rate gamma priors,

.. math::

    w_{ik} \sim \mathrm{Gamma}(a^W, c^W), \quad
    h_{kj} \sim \mathrm{Gamma}(a^H, c^H), \quad
    s_{ikj} \sim \mathrm{Poisson}(w_{ik} h_{kj}), \quad
    x_{ij} = \textstyle\sum_k s_{ikj},

is conditionally conjugate once the latent source counts :math:`S` are added,
so the mean-field family :math:`q(S)\,q(W)\,q(H)` with
:math:`q(w_{ik}) = \mathrm{Gamma}(\alpha^W_{ik}, \rho^W_{ik})` and
:math:`q(h_{kj}) = \mathrm{Gamma}(\alpha^H_{kj}, \rho^H_{kj})` has closed-form
coordinate-ascent (CAVI) updates and an exact evidence lower bound (ELBO).
Marginalising :math:`S` gives back :math:`x_{ij} \sim \mathrm{Poisson}((WH)_{ij})`,
the model of :class:`~bayesnmf.NMFModel` with a :class:`~bayesnmf.Poisson`
likelihood.

Restarts are batched with :func:`jax.vmap` into one compiled call; each runs a
:func:`jax.lax.while_loop` that stops when the ELBO increase over the last
``check_every`` sweeps is at most ``tol`` times its increase since the start,
or at ``max_iter`` sweeps (the rule of :func:`~bayesnmf.fit_map`).

Each sweep ends with an exact step along every component's scale
(:func:`rescale_components`), and by default the sweeps run in monotone
SQUAREM cycles (:func:`squarem_cycle`).

References
----------
Cemgil, A. T. (2009). Bayesian inference for nonnegative matrix factorisation
models. Computational Intelligence and Neuroscience, 785152.
https://doi.org/10.1155/2009/785152

Varadhan, R. and Roland, C. (2008). Simple and globally convergent methods for
accelerating the convergence of any EM algorithm. Scandinavian Journal of
Statistics, 35(2), 335-353.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from .._special import digamma_pos as digamma
from .._special import gammaln_pos as gammaln

from .._init import random_init
from .._init import restart_keys as _restart_keys
from .._precision import precision_scope, resolve_dtype
from .._validation import (
    NMFData,
    as_nmf_data,
    check_positive,
    check_positive_int,
    check_seed,
)
from .._warnings import ConvergenceWarning
from ..likelihoods import Poisson
from ..model import NMFModel
from ..priors import Exponential, Gamma, Prior
from ..result import NMFResult

__all__ = ["fit_vi_poisson", "GammaFactors", "CAVIState"]

ENGINE = "cavi-poisson-gamma"


class GammaFactors(NamedTuple):
    r"""Shape-rate parameters of the gamma factors of q(W) and q(H).

    Attributes
    ----------
    shape_W, rate_W : array of shape (n_features, rank)
        :math:`\alpha^W` and :math:`\rho^W`.
    shape_H, rate_H : array of shape (rank, n_samples)
        :math:`\alpha^H` and :math:`\rho^H`.
    """

    shape_W: jax.Array
    rate_W: jax.Array
    shape_H: jax.Array
    rate_H: jax.Array


class CAVIState(NamedTuple):
    r"""Loop state of one restart (a leading restart axis when batched).

    Attributes
    ----------
    q : GammaFactors
        Current variational parameters.
    log_L_W : array of shape (n_features, rank)
        :math:`\log L^W` that produced the source statistics of the last
        sweep, which the augmented ELBO needs.
    log_L_H : array of shape (rank, n_samples)
        Same for H.
    n_iter : int array
        Sweeps done.
    objective : float array
        Negative ELBO after the last check.
    objective0 : float array
        Negative ELBO at the start.
    converged : bool array
        Whether the tolerance was met.
    trace : array of shape (n_checks,)
        Negative ELBO at each check, NaN after the last one.
    n_checks : int array
        Checks done (index of the last filled entry of ``trace``).
    step_max : float array
        Largest extrapolation step of the next accelerated cycle (unused
        without acceleration).
    """

    q: GammaFactors
    log_L_W: jax.Array
    log_L_H: jax.Array
    n_iter: jax.Array
    objective: jax.Array
    objective0: jax.Array
    converged: jax.Array
    trace: jax.Array
    n_checks: jax.Array
    step_max: jax.Array


# -- the kernel: pure functions of arrays ------------------------------------


def _guard(dtype):
    # Floor of the shifted products before division or log; x / guard stays
    # finite for any count (sqrt of the smallest normal number).
    return math.sqrt(float(jnp.finfo(dtype).tiny))


def _log_geometric_means(q: GammaFactors):
    r""":math:`\log L = \mathbb E_q \log Z = \psi(\alpha) - \log\rho`."""
    log_L_W = digamma(q.shape_W) - jnp.log(q.rate_W)
    log_L_H = digamma(q.shape_H) - jnp.log(q.rate_H)
    return log_L_W, log_L_H


def _shifted(log_L_W, log_L_H):
    r""":math:`L^W L^H` as ``exp(shift_W + shift_H) * P`` without underflow.

    Each row of :math:`L^W` and each column of :math:`L^H` is divided by its
    largest entry (a max-shift of the log-sum-exp over k), so that small shapes,
    whose :math:`e^{\psi(\alpha)}` underflows, cannot empty the product.
    """
    shift_W = jnp.max(log_L_W, axis=1, keepdims=True)
    shift_H = jnp.max(log_L_H, axis=0, keepdims=True)
    log_LW = log_L_W - shift_W
    log_LH = log_L_H - shift_H
    LW, LH = jnp.exp(log_LW), jnp.exp(log_LH)
    P = jnp.maximum(LW @ LH, _guard(LW.dtype))
    return LW, LH, log_LW, log_LH, P, shift_W + shift_H


def _masked(X, mask):
    return X if mask is None else X * mask


def source_statistics(X, mask, log_L_W, log_L_H):
    r"""Expected source counts summed over samples and over features.

    .. math::

        Z = \frac{M \odot X}{L^W L^H}, \qquad
        \Sigma^W = L^W \odot \big(Z (L^H)^\top\big), \qquad
        \Sigma^H = L^H \odot \big((L^W)^\top Z\big),

    so that :math:`\Sigma^W_{ik} = \sum_j x_{ij} p_{ikj}` with the multinomial
    weights :math:`p_{ikj} = L^W_{ik} L^H_{kj} / (L^W L^H)_{ij}`. The row and
    column shifts of :func:`_shifted` cancel.

    Returns
    -------
    Sigma_W : array of shape (n_features, rank)
    Sigma_H : array of shape (rank, n_samples)
    """
    LW, LH, _, _, P, _ = _shifted(log_L_W, log_L_H)
    Z = _masked(X, mask) / P
    return LW * (Z @ LH.T), LH * (LW.T @ Z)


def _row_rates(E_H, mask):
    # M (E^H)^T, a broadcast row of sums when nothing is masked.
    return jnp.sum(E_H, axis=1)[None, :] if mask is None else mask @ E_H.T


def _column_rates(E_W, mask):
    # (E^W)^T M, a broadcast column of sums when nothing is masked.
    return jnp.sum(E_W, axis=0)[:, None] if mask is None else E_W.T @ mask


def rescale_components(q: GammaFactors, prior) -> GammaFactors:
    r"""Move each component along its scale direction to the best ELBO.

    Scaling :math:`q(w_{\cdot k})` by :math:`\gamma_k` and
    :math:`q(h_{k\cdot})` by :math:`1/\gamma_k` (dividing :math:`\rho^W_{\cdot k}`
    by :math:`\gamma_k`, multiplying :math:`\rho^H_{k\cdot}` by it) leaves
    :math:`L^W L^H` and :math:`E^W E^H`, hence the data terms, unchanged; only
    the prior and entropy terms move, as

    .. math::

        g(\gamma) = b_k\log\gamma - A_k\gamma - B_k/\gamma, \quad
        b_k = \textstyle\sum_i a^W_{ik} - \sum_j a^H_{kj},\quad
        A_k = \sum_i c^W_{ik}E^W_{ik},\quad B_k = \sum_j c^H_{kj}E^H_{kj},

    which is concave with its maximum at the positive root of
    :math:`A\gamma^2 - b\gamma - B = 0`. This exact coordinate step along the
    direction in which the likelihood is flat removes the slow drift of the
    plain sweeps (the source counts cannot move the scale; only the prior
    can, a little per sweep). It never lowers the ELBO, and at a fixed point
    of the sweeps :math:`\gamma = 1`. The root is taken in the form free of
    cancellation for either sign of :math:`b`.
    """
    a_W, c_W, a_H, c_H = prior
    E_W, E_H = q.shape_W / q.rate_W, q.shape_H / q.rate_H
    b = (jnp.sum(jnp.broadcast_to(a_W, E_W.shape), axis=0)
         - jnp.sum(jnp.broadcast_to(a_H, E_H.shape), axis=1))
    A = jnp.sum(c_W * E_W, axis=0)
    B = jnp.sum(c_H * E_H, axis=1)
    root = jnp.sqrt(b * b + 4.0 * A * B)
    gamma = jnp.where(b >= 0, (b + root) / (2.0 * A), 2.0 * B / (root - b))
    return GammaFactors(q.shape_W, q.rate_W / gamma, q.shape_H,
                        q.rate_H * gamma[:, None])


def cavi_sweep(X, mask, q: GammaFactors, prior):
    r"""One CAVI sweep: q(S) from the current L, q(W), q(H), then the scales.

    .. math::

        \alpha^W &= a^W + \Sigma^W, \quad \rho^W = c^W + M (E^H)^\top,
        \quad E^W = \alpha^W / \rho^W \\
        \alpha^H &= a^H + \Sigma^H, \quad \rho^H = c^H + (E^W)^\top M,
        \quad E^H = \alpha^H / \rho^H

    with :math:`\Sigma^W, \Sigma^H` from :func:`source_statistics` at the
    :math:`L` of the incoming ``q``; then :func:`rescale_components`, which
    changes only the rates, so that :math:`\alpha = a + \Sigma` still holds
    for :func:`elbo_augmented`. Each of the four steps maximises the ELBO
    over its block exactly.

    Parameters
    ----------
    X : array of shape (n_features, n_samples)
    mask : array of shape (n_features, n_samples) or None
    q : GammaFactors
    prior : tuple
        ``(a_W, c_W, a_H, c_H)``: prior shapes and rates (scalars or arrays
        that broadcast to the factors).

    Returns
    -------
    q : GammaFactors
        Updated parameters.
    log_L : tuple of arrays
        ``(log_L_W, log_L_H)`` that produced the source statistics, for
        :func:`elbo_augmented`.
    """
    a_W, c_W, a_H, c_H = prior
    log_L = _log_geometric_means(q)
    Sigma_W, Sigma_H = source_statistics(X, mask, *log_L)

    E_H = q.shape_H / q.rate_H
    shape_W = a_W + Sigma_W
    rate_W = jnp.broadcast_to(c_W + _row_rates(E_H, mask), shape_W.shape)
    E_W = shape_W / rate_W

    shape_H = a_H + Sigma_H
    rate_H = jnp.broadcast_to(c_H + _column_rates(E_W, mask), shape_H.shape)
    q = GammaFactors(shape_W, rate_W, shape_H, rate_H)
    return rescale_components(q, prior), log_L


def _expected_mean_sum(E_W, E_H, mask):
    # sum_ij M_ij (E^W E^H)_ij
    if mask is None:
        return jnp.sum(jnp.sum(E_W, axis=0) * jnp.sum(E_H, axis=1))
    return jnp.sum(E_W * (mask @ E_H.T))


def log_factorial_total(observed: np.ndarray, integer: bool) -> float:
    r""":math:`\sum_{ij} M_{ij} \log\Gamma(x_{ij} + 1)` on the host, in float64.

    A constant of the data, passed to the compiled kernels once per fit.
    Integer counts are tallied with :func:`numpy.bincount` and
    :math:`\log\Gamma` is evaluated once per distinct value (ten times faster
    than entrywise on typical counts); other data fall back to SciPy entrywise.
    ``observed`` holds the observed entries of X; ``integer`` says whether
    they are all whole numbers (the caller has checked).
    """
    from scipy.special import gammaln as gammaln_np

    if observed.size == 0:
        return 0.0
    if integer and observed.max() <= 10 * observed.size + 1000:
        counts = np.bincount(observed.astype(np.int64).ravel())
        values = np.flatnonzero(counts)
        return float(counts[values] @ gammaln_np(values + 1.0))
    return float(np.sum(gammaln_np(observed + 1.0)))


def _log_factorial_sum(X, mask):
    return jnp.sum(_masked(gammaln(X + 1.0), mask))


def gamma_kl(shape, rate, prior_shape, prior_rate):
    r"""Entrywise KL divergence of q = Gamma(shape, rate) from the prior.

    .. math::

        \mathrm{KL}\big(\mathrm{Ga}(\alpha, \rho) \Vert \mathrm{Ga}(a, c)\big) =
        (\alpha - a)\psi(\alpha) - \log\Gamma(\alpha) + \log\Gamma(a)
        + a \log\frac{\rho}{c} + \alpha\frac{c - \rho}{\rho}
    """
    return (
        (shape - prior_shape) * digamma(shape)
        - gammaln(shape)
        + gammaln(prior_shape)
        + prior_shape * (jnp.log(rate) - jnp.log(prior_rate))
        + shape * (prior_rate - rate) / rate
    )


def elbo_augmented(X, mask, q: GammaFactors, log_L_W, log_L_H, prior,
                   log_factorial=None):
    r"""Cemgil's ELBO right after a sweep, from the L's that produced it.

    .. math::

        \mathcal L = \sum_{ij} M_{ij}\Big[-(E^W E^H)_{ij} - \log\Gamma(x_{ij}+1)
        - x_{ij} \sum_k p_{ikj}\log p_{ikj}\Big]
        + \sum_{ik}\big[a^W\log c^W - \log\Gamma(a^W) - c^W E^W
        + \log\Gamma(\alpha^W) - \alpha^W \log\rho^W + \alpha^W\big]_{ik}
        + (\text{same for } H)

    with :math:`p_{ikj} \propto L^W_{ik} L^H_{kj}` from ``log_L_W, log_L_H``.
    The terms in :math:`\mathbb E\log W` and :math:`\mathbb E\log H` have
    cancelled, which is exact only when :math:`\alpha = a + \Sigma` with the
    :math:`\Sigma` of these L's, as :func:`cavi_sweep` leaves it.
    ``log_factorial``, :math:`\sum_{ij} M_{ij}\log\Gamma(x_{ij}+1)`, is
    computed when not given.
    """
    a_W, c_W, a_H, c_H = prior
    LW, LH, log_LW, log_LH, P, _ = _shifted(log_L_W, log_L_H)
    # sum_k p log p = [(L^W log L^W) L^H + L^W (L^H log L^H)] / (L^W L^H)
    #                 - log(L^W L^H); the shifts cancel.
    p_log_p = ((LW * log_LW) @ LH + LW @ (LH * log_LH)) / P - jnp.log(P)
    E_W, E_H = q.shape_W / q.rate_W, q.shape_H / q.rate_H
    data = (
        -_expected_mean_sum(E_W, E_H, mask)
        - (_log_factorial_sum(X, mask) if log_factorial is None else log_factorial)
        - jnp.sum(_masked(X, mask) * p_log_p)
    )

    def factor(shape, rate, E, a, c):
        return jnp.sum(
            a * jnp.log(c) - gammaln(a) - c * E
            + gammaln(shape) - shape * jnp.log(rate) + shape
        )

    return (
        data
        + factor(q.shape_W, q.rate_W, E_W, a_W, c_W)
        + factor(q.shape_H, q.rate_H, E_H, a_H, c_H)
    )


def elbo_collapsed(X, mask, q: GammaFactors, prior, log_factorial=None):
    r"""The ELBO with q(S) set optimally from the L's of ``q`` itself.

    .. math::

        \mathcal L^* = \sum_{ij} M_{ij}\big[x_{ij}\log(L^W L^H)_{ij}
        - (E^W E^H)_{ij} - \log\Gamma(x_{ij}+1)\big]
        - \sum_{ik}\mathrm{KL}\big(q(w_{ik}) \Vert p(w_{ik})\big)
        - \sum_{kj}\mathrm{KL}\big(q(h_{kj}) \Vert p(h_{kj})\big)

    Valid for any q(W), q(H); it equals :func:`elbo_augmented` at a fixed
    point of the sweep. ``log_factorial`` as in :func:`elbo_augmented`.
    """
    a_W, c_W, a_H, c_H = prior
    log_L_W, log_L_H = _log_geometric_means(q)
    _, _, _, _, P, shift = _shifted(log_L_W, log_L_H)
    E_W, E_H = q.shape_W / q.rate_W, q.shape_H / q.rate_H
    data = (
        jnp.sum(_masked(X, mask) * (shift + jnp.log(P)))
        - _expected_mean_sum(E_W, E_H, mask)
        - (_log_factorial_sum(X, mask) if log_factorial is None else log_factorial)
    )
    return (
        data
        - jnp.sum(gamma_kl(q.shape_W, q.rate_W, a_W, c_W))
        - jnp.sum(gamma_kl(q.shape_H, q.rate_H, a_H, c_H))
    )


def random_factors(key, X, mask, rank: int, prior) -> GammaFactors:
    """Starting q: the prior shapes, with random means scaled to the data.

    The means are those of :func:`bayesnmf._init.random_init` (scaled absolute
    normals, so that :math:`E^W E^H` is of the order of the mean of X); the
    rates follow as shape / mean.
    """
    a_W, _, a_H, _ = prior
    W, H = random_init(key, X, mask, rank)
    shape_W = jnp.broadcast_to(jnp.asarray(a_W, X.dtype), W.shape)
    shape_H = jnp.broadcast_to(jnp.asarray(a_H, X.dtype), H.shape)
    return GammaFactors(shape_W, shape_W / W, shape_H, shape_H / H)


def _log_params(q: GammaFactors) -> GammaFactors:
    return GammaFactors(*(jnp.log(v) for v in q))


def squarem_cycle(X, mask, q0: GammaFactors, elbo0, step_max, prior,
                  log_factorial=None):
    r"""One monotone SQUAREM cycle (Varadhan and Roland 2008) of CAVI sweeps.

    With the sweep :math:`F` acting on :math:`\theta = \log(\alpha, \rho)`
    (logs keep every parameter positive),

    .. math::

        \theta_1 = F(\theta_0),\quad \theta_2 = F(\theta_1),\quad
        r = \theta_1 - \theta_0,\quad v = \theta_2 - 2\theta_1 + \theta_0,\quad
        s = \min\big(\max(\lVert r\rVert / \lVert v\rVert, 1), s_{\max}\big),

    the extrapolated point :math:`\theta_e = \theta_0 + 2 s r + s^2 v` is swept
    once more, and the result kept when its collapsed ELBO is at least
    ``elbo0`` (the result is then always the output of a CAVI sweep).
    Otherwise the cycle falls back to :math:`\theta_2`, the plain two-sweep
    result. (Checking the ELBO at :math:`\theta_e` itself would share
    :math:`L^W L^H` with the sweep and cost less, but rejects many steps that
    the sweep would have made good: about 40% more cycles on the benchmark.)
    ``elbo0`` is a lower bound on the ELBO of ``q0``, so the ELBO never falls
    below it. ``s = 1`` gives :math:`\theta_e = \theta_2`: three plain sweeps.
    :math:`s_{\max}` grows 4-fold when a step at the cap is kept and shrinks
    4-fold (to no less than 1) when a step is rejected.

    Returns
    -------
    q : GammaFactors
    log_L : tuple
        The :math:`\log L` that produced ``q``'s sweep.
    elbo : float array
        A lower bound on the collapsed ELBO of ``q``: that ELBO when the step
        was kept, else ``elbo0``.
    step_max : float array
    """
    q1, _ = cavi_sweep(X, mask, q0, prior)
    q2, log_L2 = cavi_sweep(X, mask, q1, prior)
    z0, z1, z2 = _log_params(q0), _log_params(q1), _log_params(q2)
    r = jax.tree.map(jnp.subtract, z1, z0)
    v = jax.tree.map(lambda a, b, c: c - 2.0 * b + a, z0, z1, z2)
    r2 = sum(jnp.sum(jnp.square(t)) for t in r)
    v2 = sum(jnp.sum(jnp.square(t)) for t in v)
    step = jnp.sqrt(r2 / v2)
    step = jnp.where(jnp.isfinite(step), jnp.clip(step, 1.0, step_max), 1.0)
    z = jax.tree.map(lambda a, b, c: a + 2.0 * step * b + step**2 * c, z0, r, v)
    q3, log_L3 = cavi_sweep(X, mask, GammaFactors(*(jnp.exp(t) for t in z)), prior)
    elbo3 = elbo_collapsed(X, mask, q3, prior, log_factorial)
    keep = jnp.isfinite(elbo3) & (elbo3 >= elbo0)
    pick = functools.partial(jax.tree.map, lambda a, b: jnp.where(keep, a, b))
    step_max = jnp.where(
        keep,
        jnp.where(step >= step_max, 4.0 * step_max, step_max),
        jnp.maximum(step_max / 4.0, 1.0),
    )
    return (pick(q3, q2), pick(log_L3, log_L2), jnp.where(keep, elbo3, elbo0),
            step_max)


# -- driver -------------------------------------------------------------------


def gamma_parameters(prior: Prior, name: str) -> tuple[float, float]:
    """Shape and rate of a gamma-family prior (Exponential(b) is Gamma(1, b))."""
    if isinstance(prior, Gamma):
        return float(prior.shape), float(prior.rate)
    if isinstance(prior, Exponential):
        return 1.0, float(prior.rate)
    if not prior.proper:
        raise ValueError(
            f"{name}: variational inference needs proper priors; got the improper "
            f"{prior.describe()}. Use Gamma(shape, rate) or Exponential(rate)."
        )
    raise NotImplementedError(
        f"{name}: closed-form Poisson VI needs a conjugate gamma prior, Gamma or "
        f"Exponential; got {prior.describe()}. Use stochastic VI for other priors."
    )


def _check_model(model) -> tuple[float, float, float, float]:
    if not isinstance(model, NMFModel):
        raise TypeError(
            "model: expected an NMFModel with a Poisson likelihood and gamma or "
            f"exponential priors, got {model!r}."
        )
    if not isinstance(model.likelihood, Poisson):
        raise NotImplementedError(
            "model: closed-form Poisson-gamma VI needs a Poisson likelihood; got "
            f"{model.likelihood.describe()}. Use the Gaussian VI or stochastic VI "
            "engine for this likelihood."
        )
    return (*gamma_parameters(model.prior_W, "prior_W"),
            *gamma_parameters(model.prior_H, "prior_H"))


@functools.lru_cache(maxsize=64)
def _kernels(rank: int, masked: bool, n_trace: int, check_every: int,
             accelerate: bool):
    """Compiled ``fit``, ``init`` and ``run`` functions for one rank and loop.

    ``fit`` is ``init`` then ``run`` in one compiled call (the progress bar
    uses the two separately). ``run`` returns the state and the collapsed
    ELBO of each restart's final q. The prior's shapes and rates are array
    arguments, and shapes and dtypes are handled by ``jit``'s own cache, so
    each kernel compiles once per setting, shape and dtype, whatever the prior.

    Without acceleration a check follows every ``check_every`` sweeps and
    records the augmented ELBO; with it, a check follows every
    ``ceil(check_every / 3)`` SQUAREM cycles (three sweeps each) and records
    the collapsed ELBO.
    """
    cycles = -(-check_every // 3)

    def start(X, mask, prior, log_factorial, key):
        q = random_factors(key, X, mask, rank, prior)
        # Check 0: the bound with q(S) set from the starting L's, which is what
        # the first sweep does, so the trace never decreases from here.
        obj = -elbo_collapsed(X, mask, q, prior, log_factorial)
        log_L = _log_geometric_means(q)
        trace = jnp.full((n_trace,), jnp.nan, X.dtype).at[0].set(obj)
        zero = jnp.zeros((), jnp.int32)
        return CAVIState(q, *log_L, zero, obj, obj, jnp.array(False), trace, zero,
                         jnp.ones((), X.dtype))

    def run_one(X, mask, prior, log_factorial, state, iter_limit, tol):
        def sweep(_, carry):
            q, log_L = cavi_sweep(X, mask, carry[0], prior)
            return (q, *log_L)

        def cycle(_, carry):
            q, log_L_W, log_L_H, elbo, step_max = carry
            q, log_L, elbo, step_max = squarem_cycle(X, mask, q, elbo, step_max,
                                                     prior, log_factorial)
            return (q, *log_L, elbo, step_max)

        def cond(s):
            return (~s.converged) & (s.n_iter < iter_limit)

        def body(s):
            step_max = s.step_max
            if accelerate:
                # Whole cycles while three sweeps remain, plain sweeps after.
                n_cycles = jnp.minimum(cycles, (iter_limit - s.n_iter) // 3)
                q, log_L_W, log_L_H, _, step_max = jax.lax.fori_loop(
                    0, n_cycles, cycle,
                    (s.q, s.log_L_W, s.log_L_H, -s.objective, step_max),
                )
                n = jnp.where(n_cycles > 0, 3 * n_cycles, iter_limit - s.n_iter)
                q, log_L_W, log_L_H = jax.lax.fori_loop(
                    0, n - 3 * n_cycles, sweep, (q, log_L_W, log_L_H)
                )
                obj = -elbo_collapsed(X, mask, q, prior, log_factorial)
            else:
                n = jnp.minimum(check_every, iter_limit - s.n_iter)
                q, log_L_W, log_L_H = jax.lax.fori_loop(
                    0, n, sweep, (s.q, s.log_L_W, s.log_L_H)
                )
                obj = -elbo_augmented(X, mask, q, log_L_W, log_L_H, prior,
                                      log_factorial)
            decrease = s.objective - obj
            converged = (tol > 0) & (decrease <= tol * (s.objective0 - obj))
            k = s.n_checks + 1
            return CAVIState(q, log_L_W, log_L_H, s.n_iter + n, obj, s.objective0,
                             converged, s.trace.at[k].set(obj), k, step_max)

        state = jax.lax.while_loop(cond, body, state)
        if accelerate:  # the last check evaluated it already
            return state, -state.objective
        return state, elbo_collapsed(X, mask, state.q, prior, log_factorial)

    def init(X, mask, prior, log_factorial, keys):
        return jax.vmap(start, in_axes=(None, None, None, None, 0))(
            X, mask, prior, log_factorial, keys
        )

    def run(X, mask, prior, log_factorial, state, iter_limit, tol):
        return jax.vmap(run_one, in_axes=(None, None, None, None, 0, None, None))(
            X, mask, prior, log_factorial, state, iter_limit, tol
        )

    @jax.jit
    def fit(X, mask, prior, log_factorial, keys, iter_limit, tol):
        state = init(X, mask, prior, log_factorial, keys)
        return run(X, mask, prior, log_factorial, state, iter_limit, tol)

    return fit, jax.jit(init), jax.jit(run)


def _draw_factors(seed: int, q: GammaFactors, num_draws: int):
    """Draws of W and H from q, with a NumPy generator of its own stream.

    NumPy's gamma sampler needs no compilation (JAX's costs seconds per shape)
    and handles small shapes; the stream ``(seed, 1)`` is independent of the
    restarts' JAX keys.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    q = GammaFactors(*(np.asarray(v, np.float64) for v in q))
    W = rng.gamma(q.shape_W, size=(num_draws, *q.shape_W.shape)) / q.rate_W
    H = rng.gamma(q.shape_H, size=(num_draws, *q.shape_H.shape)) / q.rate_H
    return {"W": W[None], "H": H[None]}


def fit_vi_poisson(
    X,
    model: NMFModel,
    *,
    mask=None,
    n_restarts: int = 1,
    seed: int = 0,
    max_iter: int = 2000,
    tol: float = 1e-6,
    check_every: int = 10,
    dtype="float64",
    num_draws: int = 500,
    init: str = "random",
    accelerate: bool = True,
    allow_nan: bool = False,
    progress: bool = False,
    warn: bool = True,
) -> NMFResult:
    r"""Fit Poisson NMF with gamma priors by closed-form variational inference.

    Coordinate ascent on the mean-field family :math:`q(S)q(W)q(H)` of Cemgil's
    augmented model, with gamma factors
    :math:`q(w_{ik}) = \mathrm{Gamma}(\alpha^W_{ik}, \rho^W_{ik})` and
    :math:`q(h_{kj}) = \mathrm{Gamma}(\alpha^H_{kj}, \rho^H_{kj})` (shape, rate).
    One sweep, with mask :math:`M` and :math:`L = e^{\psi(\alpha)}/\rho`:

    .. math::

        \Sigma^W = L^W \odot \Big(\frac{M \odot X}{L^W L^H}(L^H)^\top\Big),
        \quad \alpha^W = a^W + \Sigma^W, \quad
        \rho^W = c^W + M (E^H)^\top,

    then the same for H with the new :math:`E^W = \alpha^W/\rho^W`. The ELBO is
    exact and never decreases across sweeps. By default the sweeps are
    accelerated by monotone SQUAREM extrapolation (see ``accelerate``), which
    reaches the same fixed points in several times fewer sweeps.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative counts (NumPy array, pandas DataFrame, AnnData or
        :class:`~bayesnmf.NMFData`); labels are kept.
    model : NMFModel
        Rank, a :class:`~bayesnmf.Poisson` likelihood, and
        :class:`~bayesnmf.Gamma` or :class:`~bayesnmf.Exponential` priors on W
        and H (``Exponential(b)`` is ``Gamma(1, b)``): ``a`` is the prior shape
        and ``c`` its rate.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; unobserved entries do not influence the fit.
    n_restarts : int, default 1
        Independent random starts, batched in one compiled call; the one with
        the highest ELBO is kept and all are returned in ``result.restarts``.
    seed : int, default 0
        Seed of the starts and of the draws from q. Restart ``i`` is the same
        whatever ``n_restarts`` is.
    max_iter : int, default 2000
        Cap on the number of sweeps.
    tol : float, default 1e-6
        Stop when the ELBO increase over the last ``check_every`` sweeps is at
        most ``tol`` times its increase since the start. ``0`` runs exactly
        ``max_iter`` sweeps.
    check_every : int, default 10
        Sweeps between ELBO evaluations (the trace's resolution).
    dtype : {"float64", "float32"}
        Floating-point type. float64 (recommended whenever ELBOs are compared)
        runs inside a scoped ``jax.enable_x64``; no global JAX setting changes.
    num_draws : int, default 500
        Draws of W and H from q of the best restart, in ``result.draws``
        (``0`` for none).
    init : {"random"}
        Starting q: the prior shapes with random means of the scale of the
        data, one draw per restart.
    accelerate : bool, default True
        Run the sweeps in SQUAREM cycles (:func:`squarem_cycle`): two sweeps,
        a step along the squared extrapolation of their path in the log of the
        parameters, one more sweep from there, kept only when its ELBO is no
        lower than at the start of the cycle, else the plain sweeps' result.
        Each cycle costs three sweeps and one ELBO evaluation; the ELBO at
        the checks still never decreases. ``n_iter`` and ``max_iter`` count
        sweeps, a check follows every ``ceil(check_every / 3)`` cycles, and
        the trace holds the collapsed ELBO (q(S) refreshed from q(W), q(H)).
        ``False`` runs plain CAVI sweeps, with a check every ``check_every``
        sweeps and the augmented ELBO in the trace.
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
        ``method="vi"``. ``W_raw``, ``H_raw`` are the means of q;
        ``objective`` is the negative ELBO and ``trace`` its history; ``draws``
        holds ``W`` (1, num_draws, n_features, rank) and ``H``
        (1, num_draws, rank, n_samples); ``extra`` holds ``q_W_shape``,
        ``q_W_rate``, ``q_H_shape``, ``q_H_rate`` (best restart), ``elbo``
        and ``elbo_collapsed`` (the same bound with q(S) refreshed from the
        final q(W), q(H); equal to ``elbo`` at convergence).

    Notes
    -----
    The ELBO bounds :math:`\log p(X)` for integer counts. Its trace holds, at
    check 0, the bound with q(S) set from the starting q(W), q(H), and then
    Cemgil's bound right after each checked sweep (without acceleration) or
    the collapsed bound at each check (with it). Both bounds are
    below the mean-field ELBO of :math:`q(W)q(H)` alone (what NumPyro's
    ``Trace_ELBO`` estimates), so do not compare the two across engines. For
    rank selection add :math:`\log r!` to the best ELBO (``METHODS.md`` §5.6).

    :math:`L^W L^H` is formed from :math:`\log L = \psi(\alpha) - \log\rho`
    with a max-shift over k per row of W and column of H, and floored at the
    square root of the dtype's smallest normal number, so that small shapes
    (:math:`e^{\psi(\alpha)}` underflows for :math:`\alpha \lesssim 0.0014` in
    float64) stay finite. A sweep costs :math:`O(mnr)` on dense X.

    The draws use a NumPy generator seeded with ``(seed, 1)``, a stream apart
    from the restarts' JAX keys.

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> from bayesnmf.vi._poisson_gamma import fit_vi_poisson
    >>> X = np.random.default_rng(0).poisson(5.0, size=(20, 10))
    >>> model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Exponential(0.2))
    >>> res = fit_vi_poisson(X, model, n_restarts=4, num_draws=100)
    >>> res.draws["W"].shape
    (1, 100, 20, 2)
    """
    # -- checks, all before anything is traced --------------------------------
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    prior = _check_model(model)
    if init != "random":
        raise ValueError(f"init: expected 'random', got {init!r}.")
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    max_iter = check_positive_int(max_iter, "max_iter")
    check_every = check_positive_int(check_every, "check_every")
    num_draws = check_positive_int(num_draws, "num_draws", minimum=0)
    tol = check_positive(tol, "tol", allow_zero=True)
    dtype = resolve_dtype(dtype)
    observed = data.X if data.mask is None else data.X[data.mask > 0]
    integer = np.array_equal(observed, np.round(observed))
    if not integer:
        warnings.warn(
            "X: has non-integer entries; the Poisson-gamma ELBO is a bound on the "
            "evidence only for counts (the fit itself still runs).",
            UserWarning,
            stacklevel=2,
        )

    accelerate = bool(accelerate)
    # Sweeps between checks; an accelerated run may end with one check after a
    # remainder of fewer than three plain sweeps.
    per_check = 3 * -(-check_every // 3) if accelerate else check_every
    n_trace = -(-max_iter // per_check) + 1 + accelerate
    masked = data.mask is not None
    fit, init_fn, run = _kernels(model.rank, masked, n_trace, check_every, accelerate)

    with precision_scope(dtype):
        Xj = jnp.asarray(data.X, dtype=dtype)
        Mj = jnp.asarray(data.mask, dtype=dtype) if masked else None
        prior_j = tuple(jnp.asarray(v, dtype) for v in prior)
        log_fact = jnp.asarray(log_factorial_total(observed, integer), dtype)
        keys = _restart_keys(seed, n_restarts)
        tol_j = jnp.asarray(tol, dtype)
        if not progress or os.environ.get("CI"):
            state, collapsed = fit(Xj, Mj, prior_j, log_fact, keys, max_iter, tol_j)
        else:
            state = init_fn(Xj, Mj, prior_j, log_fact, keys)
            state, collapsed = _run_with_progress(
                functools.partial(run, Xj, Mj, prior_j, log_fact), state, max_iter,
                tol_j, per_check,
            )
        state, collapsed = jax.tree.map(np.asarray, (state, collapsed))

    best = int(np.nanargmin(state.objective))
    draws = {}
    if num_draws:
        draws = _draw_factors(seed, jax.tree.map(lambda v: v[best], state.q), num_draws)
    result = _to_result(data, model, state, best, per_check, draws, settings={
        "method": "vi", "engine": ENGINE, "seed": seed, "n_restarts": n_restarts,
        "init": init, "max_iter": max_iter, "tol": tol,
        "check_every": check_every, "accelerate": accelerate,
        "dtype": np.dtype(dtype).name,
        "num_draws": num_draws, "masked": masked, "n_observed": data.n_observed,
    })
    result.extra["elbo_collapsed"] = float(collapsed[best])
    if warn and not result.converged:
        warnings.warn(
            f"Poisson-gamma VI did not converge within max_iter={max_iter} sweeps "
            f"(tol={tol:g}); increase max_iter or loosen tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def _run_with_progress(run, state, max_iter, tol, per_check):
    from tqdm.auto import tqdm

    # Chunks of whole checks, so that the checks (and with them the stopping
    # rule and the accelerated cycles' reference bound) fall where they fall
    # without a progress bar: the result is the same.
    chunk = per_check * max(1, max_iter // 50 // per_check)
    with tqdm(total=max_iter, desc="VI sweeps", unit="sweep", leave=False) as bar:
        done = 0
        while done < max_iter:
            limit = min(max_iter, done + chunk)
            state, collapsed = run(state, limit, tol)
            bar.update(limit - done)
            done = limit
            if np.asarray(state.converged).all():
                break
            bar.set_postfix(elbo=f"{-float(np.nanmin(state.objective)):.6g}")
    return state, collapsed


def _to_result(data: NMFData, model, state: CAVIState, best, check_every, draws,
               settings):
    q = GammaFactors(*(v.astype(np.float64) for v in state.q))
    obj = state.objective.astype(np.float64)
    n_checks = int(state.n_checks[best])
    iters = np.minimum(np.arange(n_checks + 1) * check_every, state.n_iter[best])
    restarts = {
        "W_raw": q.shape_W / q.rate_W,
        "H_raw": q.shape_H / q.rate_H,
        "objective": obj,
        "n_iter": state.n_iter.astype(np.int64),
        "converged": state.converged.astype(bool),
        "trace": state.trace.astype(np.float64),
    }
    extra = {
        "q_W_shape": q.shape_W[best],
        "q_W_rate": q.rate_W[best],
        "q_H_shape": q.shape_H[best],
        "q_H_rate": q.rate_H[best],
        "elbo": float(-obj[best]),
    }
    return NMFResult(
        model=model,
        method="vi",
        W_raw=restarts["W_raw"][best],
        H_raw=restarts["H_raw"][best],
        params={},
        objective=float(obj[best]),
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
