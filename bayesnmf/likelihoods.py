r"""Likelihoods for X given the mean :math:`\Lambda = WH`.

Each likelihood is a noise model whose negative log density is a
β-divergence plus a term free of W and H (``METHODS.md`` §1.2):

========================  =====  ==============================================
likelihood                β      loss
========================  =====  ==============================================
:class:`Gaussian`         2      Frobenius, :math:`\lVert X - WH\rVert^2 / 2\sigma^2`
:class:`Poisson`          1      generalised Kullback-Leibler
========================  =====  ==============================================

A likelihood provides its NumPyro distribution, its exact pointwise log
density, and the multiplicative (majorisation-minimisation) update of H for
its loss; the W update is the H update of the transposed problem.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import xlogy
from numpyro.distributions import constraints

from ._special import gammaln_pos as gammaln
from ._validation import check_positive

__all__ = [
    "GammaLikelihood",
    "Gaussian",
    "Likelihood",
    "NegativeBinomial",
    "Poisson",
    "likelihood_from_dict",
]


def _guard(dtype):
    """Floor for the model mean before division or log: sqrt(tiny) of the dtype.

    It is far below any mean a fit produces, so a zero mean under an observed
    count costs ``-x log(guard)``, a large loss, and never looks attractive.
    """
    return math.sqrt(float(jnp.finfo(dtype).tiny))


@dataclass(frozen=True)
class Likelihood:
    """Base class for the noise model of X given ``WH``."""

    kind = "likelihood"
    beta = None
    #: Update the likelihood's own parameters after every sweep (cheap closed
    #: forms), or once per objective check (costly 1-D Newton solves). Either
    #: way each update lowers the objective, so the fit stays monotone.
    update_params_every_sweep = True

    # -- NumPyro -------------------------------------------------------------
    def sample_params(self) -> dict:
        """Sample the likelihood's own parameters inside a NumPyro model."""
        return {}

    def distribution(self, WH, params: dict):
        """NumPyro distribution of every entry of X given the mean ``WH``."""
        raise NotImplementedError

    # -- densities -----------------------------------------------------------
    def log_prob(self, X, WH, params: dict):
        """Exact pointwise log density of X, of the same shape as X."""
        raise NotImplementedError

    def data_constant(self, X, mask, params: dict, cache=None):
        """The part of ``-log p(X | WH)`` that does not depend on W or H."""
        raise NotImplementedError

    def loss(self, X, mask, W, H, params: dict, cache=None):
        """``-log p(X | WH) - data_constant``: the divergence, >= 0."""
        raise NotImplementedError

    def params_neg_log_prior(self, params: dict):
        """``-log p(params)`` for the likelihood's own estimated parameters."""
        return 0.0

    # -- MAP -----------------------------------------------------------------
    def init_params(self, X, mask, W, H) -> dict:
        return {}

    def check_data(self, X, mask) -> None:
        """Raise if X lies outside the likelihood's support."""

    def update_params(self, X, mask, W, H, params: dict, cache) -> dict:
        return params

    def init_cache(self, X, mask, W, H) -> dict:
        """Quantities carried between sweeps (same structure after each sweep)."""
        return {}

    def sweep(self, X, mask, W, H, params, prior_W, prior_H, cache):
        """One multiplicative sweep over H then W; returns ``(W, H, cache)``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in asdict(self).items() if v is not None)
        return f"{self.kind}({args})"


@dataclass(frozen=True)
class Gaussian(Likelihood):
    r"""Gaussian noise: :math:`x_{ij} \sim \mathcal N((WH)_{ij}, \sigma^2)`.

    The MAP objective is the Frobenius loss divided by :math:`2\sigma^2`, plus
    the priors.

    Parameters
    ----------
    noise_scale : float or None, default 1.0
        :math:`\sigma`. A number fixes it. ``None`` estimates the noise
        variance :math:`\sigma^2` with the factors: by maximum likelihood, or
        under an inverse-gamma prior when ``noise_var_shape`` and
        ``noise_var_rate`` are given.
    noise_var_shape, noise_var_rate : float, optional
        Shape :math:`a_0` and rate :math:`b_0` of the inverse-gamma prior on
        :math:`\sigma^2` (used only when ``noise_scale`` is None). Its MAP
        update is :math:`(b_0 + \mathrm{RSS}/2) / (a_0 + |\Omega|/2 + 1)`.
    """

    noise_scale: float | None = 1.0
    noise_var_shape: float | None = None
    noise_var_rate: float | None = None
    kind = "gaussian"
    beta = 2.0

    def __post_init__(self):
        if self.noise_scale is not None:
            object.__setattr__(
                self, "noise_scale", check_positive(self.noise_scale, "noise_scale")
            )
        given = (self.noise_var_shape is not None, self.noise_var_rate is not None)
        if any(given) and not all(given):
            raise ValueError(
                "noise_var_shape, noise_var_rate: give both (an inverse-gamma prior "
                "on the noise variance) or neither."
            )
        if all(given):
            if self.noise_scale is not None:
                raise ValueError(
                    "noise_scale: a prior on the noise variance needs "
                    "noise_scale=None (estimated), got a fixed "
                    f"noise_scale={self.noise_scale:g}."
                )
            for name in ("noise_var_shape", "noise_var_rate"):
                value = check_positive(getattr(self, name), name)
                object.__setattr__(self, name, value)

    @property
    def estimates_noise(self) -> bool:
        return self.noise_scale is None

    @property
    def has_noise_prior(self) -> bool:
        return self.noise_var_shape is not None

    def _noise_prior(self):
        if self.has_noise_prior:
            return dist.InverseGamma(self.noise_var_shape, self.noise_var_rate)
        return dist.ImproperUniform(constraints.positive, (), ())

    def sample_params(self) -> dict:
        if not self.estimates_noise:
            return {}
        return {"noise_var": numpyro.sample("noise_var", self._noise_prior())}

    def _var(self, params):
        return params["noise_var"] if self.estimates_noise else self.noise_scale**2

    def distribution(self, WH, params):
        return dist.Normal(WH, jnp.sqrt(self._var(params)))

    def log_prob(self, X, WH, params):
        var = self._var(params)
        return -0.5 * (X - WH) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)

    def _n_obs(self, X, mask):
        return X.size if mask is None else jnp.sum(mask)

    def data_constant(self, X, mask, params, cache=None):
        return 0.5 * self._n_obs(X, mask) * jnp.log(2 * jnp.pi * self._var(params))

    def rss(self, X, mask, W, H, cache=None):
        """Residual sum of squares over the observed entries."""
        if cache is not None and "rss" in cache:
            return cache["rss"]
        R = X - W @ H
        if mask is not None:
            R = R * mask
        return jnp.sum(R * R)

    def loss(self, X, mask, W, H, params, cache=None):
        return 0.5 * self.rss(X, mask, W, H, cache) / self._var(params)

    def params_neg_log_prior(self, params):
        if not (self.estimates_noise and self.has_noise_prior):
            return 0.0
        return -self._noise_prior().log_prob(params["noise_var"])

    def init_params(self, X, mask, W, H):
        if not self.estimates_noise:
            return {}
        var = self.rss(X, mask, W, H) / self._n_obs(X, mask)
        return {"noise_var": jnp.maximum(var, jnp.finfo(X.dtype).tiny)}

    def update_params(self, X, mask, W, H, params, cache):
        if not self.estimates_noise:
            return params
        rss = self.rss(X, mask, W, H, cache)
        n_obs = self._n_obs(X, mask)
        if self.has_noise_prior:
            var = (self.noise_var_rate + 0.5 * rss) / (
                self.noise_var_shape + 0.5 * n_obs + 1.0
            )
        else:
            var = rss / n_obs
        return {**params, "noise_var": jnp.maximum(var, jnp.finfo(X.dtype).tiny)}

    def sweep(self, X, mask, W, H, params, prior_W, prior_H, cache):
        """One multiplicative sweep: H, then W (``METHODS.md`` §2.2)."""
        var = self._var(params)
        WtX = W.T @ X
        if mask is None:
            WtWH = (W.T @ W) @ H
        else:
            WtWH = W.T @ (mask * (W @ H))
        H = prior_H.solve_quadratic(H * WtX, WtWH, H, var)

        XHt = X @ H.T
        if mask is None:
            HHt = H @ H.T
            WHHt = W @ HHt
        else:
            WHHt = (mask * (W @ H)) @ H.T
        W = prior_W.solve_quadratic(W * XHt, WHHt, W, var)

        if mask is None:
            # ||X - WH||^2 from products already at hand: O((m + n) r^2).
            rss = cache["XtX"] - 2.0 * jnp.sum(W * XHt) + jnp.sum((W.T @ W) * HHt)
            cache = {**cache, "rss": jnp.maximum(rss, 0.0)}
        return W, H, cache

    def init_cache(self, X, mask, W, H) -> dict:
        """Quantities carried between sweeps (same structure after each sweep)."""
        if mask is not None:
            return {}
        return {"XtX": jnp.sum(X * X), "rss": self.rss(X, mask, W, H)}


@dataclass(frozen=True)
class Poisson(Likelihood):
    r"""Poisson noise: :math:`x_{ij} \sim \mathrm{Poisson}((WH)_{ij})`.

    The MAP objective is the generalised Kullback-Leibler divergence
    :math:`\sum x \log(x / \lambda) - x + \lambda` plus the priors; counts need
    not be integers for MAP (the divergence is defined for any x >= 0).
    """

    kind = "poisson"
    beta = 1.0

    def distribution(self, WH, params):
        return dist.Poisson(WH)

    def log_prob(self, X, WH, params):
        return xlogy(X, WH) - WH - gammaln(X + 1.0)

    def data_constant(self, X, mask, params, cache=None):
        if cache is not None and "constant" in cache:
            return cache["constant"]
        c = gammaln(X + 1.0) - xlogy(X, X) + X
        return jnp.sum(c if mask is None else c * mask)

    def loss(self, X, mask, W, H, params, cache=None):
        WH = cache["WH"] if cache is not None and "WH" in cache else W @ H
        guarded = jnp.maximum(WH, _guard(WH.dtype))
        d = xlogy(X, X) - xlogy(X, guarded) - X + WH
        return jnp.sum(d if mask is None else d * mask)

    def sweep(self, X, mask, W, H, params, prior_W, prior_H, cache):
        """One multiplicative sweep: H, then W (``METHODS.md`` §2.2)."""
        eps = _guard(X.dtype)
        WH = cache["WH"]

        Q = X / jnp.maximum(WH, eps)  # masked entries of X are 0
        S = jnp.sum(W, axis=0)[:, None] if mask is None else W.T @ mask
        H = prior_H.solve_log(H * (W.T @ Q), S, H)

        Q = X / jnp.maximum(W @ H, eps)
        S = jnp.sum(H, axis=1)[None, :] if mask is None else mask @ H.T
        W = prior_W.solve_log(W * (Q @ H.T), S, W)
        return W, H, {**cache, "WH": W @ H}

    def init_cache(self, X, mask, W, H) -> dict:
        """Quantities carried between sweeps (same structure after each sweep)."""
        return {"WH": W @ H, "constant": self.data_constant(X, mask, {})}


def _newton_log_scalar(neg_obj, value, n_steps: int = 3):
    """Minimise ``neg_obj`` over a positive scalar by Newton steps on its log.

    Each step is kept only if it lowers ``neg_obj`` (so a MAP sweep stays
    monotone); a rejected step halves the next one.
    """
    f = lambda t: neg_obj(jnp.exp(t))  # noqa: E731
    grad = jax.grad(f)
    hess = jax.grad(grad)

    def step(_, carry):
        t, damp = carry
        g, h = grad(t), hess(t)
        # Newton where the function is convex there, else a gradient step.
        delta = jnp.where(h > 0, g / jnp.where(h > 0, h, 1.0), jnp.sign(g) * 0.5)
        t_new = t - damp * jnp.clip(delta, -2.0, 2.0)
        better = f(t_new) <= f(t)
        return jnp.where(better, t_new, t), jnp.where(better, 1.0, 0.5 * damp)

    t, _ = jax.lax.fori_loop(0, n_steps, step, (jnp.log(value), jnp.ones_like(value)))
    return jnp.exp(t)


def _as_prior_pair(value, name):
    if value is None:
        return None
    pair = tuple(float(v) for v in value)
    if len(pair) != 2:
        raise ValueError(
            f"{name}: expected (shape, rate) of a gamma prior, got {value!r}."
        )
    return (check_positive(pair[0], f"{name}[0]"),
            check_positive(pair[1], f"{name}[1]"))


@dataclass(frozen=True)
class NegativeBinomial(Likelihood):
    r"""Negative binomial noise for overdispersed counts.

    :math:`x_{ij} \sim \mathrm{NB}(\text{mean } \mu_{ij} = (WH)_{ij},
    \text{concentration } r)`, with :math:`\mathrm{Var}\,x = \mu + \mu^2 / r`;
    :math:`r \to \infty` gives the Poisson model. The loss is Gouvert, Oberlin
    and Févotte's (2020) divergence
    :math:`d(x \mid \mu) = x \log\frac{x}{\mu} - (x + r)\log\frac{x + r}{\mu + r}`.

    Parameters
    ----------
    concentration : float or None, default None
        :math:`r`. A number fixes it; ``None`` estimates it with the factors (a
        safeguarded Newton step on :math:`\log r` after every sweep).
    concentration_prior : (float, float), optional
        ``(shape, rate)`` of a gamma prior on :math:`r` when it is estimated
        (needed by VI and NUTS); without it the prior is flat.
    """

    concentration: float | None = None
    concentration_prior: tuple | None = None
    kind = "negbinomial"
    update_params_every_sweep = False

    def __post_init__(self):
        if self.concentration is not None:
            object.__setattr__(self, "concentration",
                               check_positive(self.concentration, "concentration"))
            if self.concentration_prior is not None:
                raise ValueError(
                    "concentration_prior: a prior needs concentration=None "
                    f"(estimated), got a fixed concentration={self.concentration:g}."
                )
        object.__setattr__(self, "concentration_prior", _as_prior_pair(
            self.concentration_prior, "concentration_prior"))

    @property
    def estimates_concentration(self) -> bool:
        return self.concentration is None

    def _prior(self):
        if self.concentration_prior is not None:
            return dist.Gamma(*self.concentration_prior)
        return dist.ImproperUniform(constraints.positive, (), ())

    def sample_params(self) -> dict:
        if not self.estimates_concentration:
            return {}
        return {"concentration": numpyro.sample("concentration", self._prior())}

    def _r(self, params):
        return params["concentration"] if self.estimates_concentration else (
            self.concentration)

    def distribution(self, WH, params):
        return dist.NegativeBinomial2(WH, self._r(params))

    def log_prob(self, X, WH, params):
        r = self._r(params)
        return (gammaln(X + r) - gammaln(r) - gammaln(X + 1.0)
                + xlogy(r, r) - xlogy(r + X, r + WH) + xlogy(X, WH))

    def _constant(self, X, r):
        return (gammaln(r) + gammaln(X + 1.0) - gammaln(X + r) - xlogy(X, X)
                + xlogy(X + r, X + r) - xlogy(r, r))

    def data_constant(self, X, mask, params, cache=None):
        c = self._constant(X, self._r(params))
        return jnp.sum(c if mask is None else c * mask)

    def _divergence(self, X, WH, r):
        guarded = jnp.maximum(WH, _guard(WH.dtype))
        return xlogy(X, X) - xlogy(X, guarded) - xlogy(X + r, X + r) + (
            xlogy(X + r, guarded + r))

    def loss(self, X, mask, W, H, params, cache=None):
        WH = cache["WH"] if cache is not None and "WH" in cache else W @ H
        d = self._divergence(X, WH, self._r(params))
        return jnp.sum(d if mask is None else d * mask)

    def params_neg_log_prior(self, params):
        if not (self.estimates_concentration and self.concentration_prior):
            return 0.0
        return -self._prior().log_prob(params["concentration"])

    def init_params(self, X, mask, W, H):
        if not self.estimates_concentration:
            return {}
        # Method of moments on the residuals, clipped to a sensible range.
        WH = W @ H
        w = jnp.ones_like(X) if mask is None else mask
        excess = jnp.sum(w * ((X - WH) ** 2 - WH)) / jnp.sum(w * WH * WH)
        r = 1.0 / jnp.clip(excess, 1e-3, 1e3)
        return {"concentration": r}

    def update_params(self, X, mask, W, H, params, cache):
        if not self.estimates_concentration:
            return params
        WH = cache["WH"]

        def neg_obj(r):
            p = {"concentration": r}
            d = self._divergence(X, WH, r) + self._constant(X, r)
            total = jnp.sum(d if mask is None else d * mask)
            return total + self.params_neg_log_prior(p)

        return {**params, "concentration": _newton_log_scalar(
            neg_obj, params["concentration"])}

    def sweep(self, X, mask, W, H, params, prior_W, prior_H, cache):
        """One multiplicative sweep: H, then W (``METHODS.md`` §2.8)."""
        eps = _guard(X.dtype)
        r = self._r(params)
        Xr = X + r if mask is None else (X + r) * mask

        WH = jnp.maximum(cache["WH"], eps)
        H = prior_H.solve_log(H * (W.T @ (X / WH)), W.T @ (Xr / (WH + r)), H)

        WH = jnp.maximum(W @ H, eps)
        W = prior_W.solve_log(W * ((X / WH) @ H.T), (Xr / (WH + r)) @ H.T, W)
        return W, H, {**cache, "WH": W @ H}

    def init_cache(self, X, mask, W, H) -> dict:
        return {"WH": W @ H}


@dataclass(frozen=True)
class GammaLikelihood(Likelihood):
    r"""Gamma (multiplicative) noise: the Itakura-Saito loss.

    :math:`x_{ij} = (WH)_{ij}\,\epsilon_{ij}` with
    :math:`\epsilon_{ij} \sim \mathrm{Gamma}(\alpha, \text{rate } \alpha)`
    (mean 1), so :math:`-\log p = \alpha\, d_{IS}(x \mid \mu) + \text{const}`
    with :math:`d_{IS}(x \mid \mu) = x/\mu - \log(x/\mu) - 1`. For strictly
    positive continuous data (power spectra, intensities); ``shape = 1`` is the
    exponential noise of the IS-NMF audio model (Févotte, Bertin and Durrieu
    2009).

    Parameters
    ----------
    shape : float or None, default 1.0
        :math:`\alpha`. ``None`` estimates it (a Newton step on
        :math:`\log\alpha` after every sweep).
    shape_prior : (float, float), optional
        ``(shape, rate)`` of a gamma prior on :math:`\alpha` when estimated.
    """

    shape: float | None = 1.0
    shape_prior: tuple | None = None
    kind = "gamma"
    beta = 0.0
    update_params_every_sweep = False

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", check_positive(self.shape, "shape"))
            if self.shape_prior is not None:
                raise ValueError(
                    "shape_prior: a prior needs shape=None (estimated), got a "
                    f"fixed shape={self.shape:g}."
                )
        object.__setattr__(self, "shape_prior",
                           _as_prior_pair(self.shape_prior, "shape_prior"))

    @property
    def estimates_shape(self) -> bool:
        return self.shape is None

    def check_data(self, X, mask) -> None:
        observed = X if mask is None else X[mask > 0]
        if (observed <= 0).any():
            raise ValueError(
                "X: the gamma (Itakura-Saito) likelihood needs strictly positive "
                f"observed entries; found {int((observed <= 0).sum())} zeros. Add "
                "a small constant, mask the zeros, or use a count likelihood."
            )

    def _prior(self):
        if self.shape_prior is not None:
            return dist.Gamma(*self.shape_prior)
        return dist.ImproperUniform(constraints.positive, (), ())

    def sample_params(self) -> dict:
        if not self.estimates_shape:
            return {}
        return {"noise_shape": numpyro.sample("noise_shape", self._prior())}

    def _alpha(self, params):
        return params["noise_shape"] if self.estimates_shape else self.shape

    def distribution(self, WH, params):
        a = self._alpha(params)
        return dist.Gamma(a, a / WH)

    def log_prob(self, X, WH, params):
        a = self._alpha(params)
        return (xlogy(a, a) - xlogy(a, WH) + xlogy(a - 1.0, X) - a * X / WH
                - gammaln(a))

    def _constant(self, X, a):
        return jnp.log(X) + a - xlogy(a, a) + gammaln(a)

    def data_constant(self, X, mask, params, cache=None):
        c = self._constant(jnp.where(X > 0, X, 1.0), self._alpha(params))
        return jnp.sum(c if mask is None else c * mask)

    def _divergence(self, X, WH):
        ratio = jnp.where(X > 0, X, 1.0) / jnp.maximum(WH, _guard(WH.dtype))
        return ratio - jnp.log(ratio) - 1.0

    def loss(self, X, mask, W, H, params, cache=None):
        WH = cache["WH"] if cache is not None and "WH" in cache else W @ H
        d = self._alpha(params) * self._divergence(X, WH)
        return jnp.sum(d if mask is None else d * mask)

    def params_neg_log_prior(self, params):
        if not (self.estimates_shape and self.shape_prior):
            return 0.0
        return -self._prior().log_prob(params["noise_shape"])

    def init_params(self, X, mask, W, H):
        return {"noise_shape": jnp.ones((), X.dtype)} if self.estimates_shape else {}

    def update_params(self, X, mask, W, H, params, cache):
        if not self.estimates_shape:
            return params
        d = self._divergence(X, cache["WH"])
        D = jnp.sum(d if mask is None else d * mask)
        n_obs = X.size if mask is None else jnp.sum(mask)
        Xc = jnp.where(X > 0, X, 1.0)
        logx = jnp.sum(jnp.log(Xc) if mask is None else jnp.log(Xc) * mask)

        def neg_obj(a):
            # -log p(X | WH, a) - log p(a), as a function of a alone.
            per_obs = a - xlogy(a, a) + gammaln(a)
            return a * D + n_obs * per_obs + logx + self.params_neg_log_prior(
                {"noise_shape": a})

        return {**params, "noise_shape": _newton_log_scalar(
            neg_obj, params["noise_shape"], n_steps=4)}

    def sweep(self, X, mask, W, H, params, prior_W, prior_H, cache):
        """One MM sweep with exponent 1/2 (``METHODS.md`` §2.1, β = 0)."""
        eps = _guard(X.dtype)
        phi = 1.0 / self._alpha(params)
        Xm = X if mask is None else X * mask
        ones = 1.0 if mask is None else mask

        WH = jnp.maximum(cache["WH"], eps)
        H = prior_H.solve_reciprocal(W.T @ (Xm / WH**2), W.T @ (ones / WH), H, phi)

        WH = jnp.maximum(W @ H, eps)
        W = prior_W.solve_reciprocal((Xm / WH**2) @ H.T, (ones / WH) @ H.T, W, phi)
        return W, H, {**cache, "WH": W @ H}

    def init_cache(self, X, mask, W, H) -> dict:
        return {"WH": W @ H}


_KINDS = {cls.kind: cls for cls in (Gaussian, Poisson, NegativeBinomial,
                                     GammaLikelihood)}



def likelihood_from_dict(spec: dict) -> Likelihood:
    """Rebuild a likelihood saved with :meth:`Likelihood.to_dict`."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in _KINDS:
        raise ValueError(
            f"likelihood kind: expected one of {sorted(_KINDS)}, got {kind!r}."
        )
    return _KINDS[kind](**spec)


def parse_likelihood(text: str) -> Likelihood:
    """Parse a command-line name such as ``poisson`` or ``gaussian:0.5``.

    Names: ``poisson`` (``kl``), ``gaussian`` (``frobenius``), ``negbinomial``
    (``nb``), ``gamma`` (``is``). A number after a colon fixes the noise
    parameter (Gaussian scale, NB concentration, gamma shape); without it the
    parameter is estimated.
    """
    name, _, arg = text.partition(":")
    name = name.strip().lower()
    if name in ("poisson", "kl"):
        return Poisson()
    if name in ("gaussian", "normal", "frobenius", "euclidean"):
        return Gaussian(noise_scale=float(arg) if arg else None)
    if name in ("negbinomial", "negative-binomial", "nb", "negbin"):
        return NegativeBinomial(concentration=float(arg) if arg else None)
    if name in ("gamma", "is", "itakura-saito"):
        return GammaLikelihood(shape=float(arg) if arg else None)
    raise ValueError(
        "likelihood: expected 'poisson' (KL), 'gaussian' (Frobenius), "
        f"'negbinomial' or 'gamma' (Itakura-Saito), got {text!r}."
    )
