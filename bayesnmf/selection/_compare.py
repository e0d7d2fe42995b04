r"""Compare losses as likelihoods: which noise model predicts held-out data best.

Divergences for different losses are not comparable; log densities are. Each
model is fitted to the same training entries and scored on the same held-out
entries (entry-wise K-fold, every entry held out once), so the comparison is a
paired one, entry by entry:

.. math::

    \widehat{\mathrm{elpd}} = \sum_{ij} \log p(x_{ij} \mid \hat\Lambda^{(-k(ij))}_{ij},
    \hat\theta^{(-k(ij))}),

with :math:`k(ij)` the fold of entry :math:`(i, j)`. Standard errors of the
differences come from the pointwise differences, as for PSIS-LOO
(Vehtari, Gelman and Gabry 2017).

Densities on different supports are made comparable: on integer data a
continuous likelihood (Gaussian, gamma) is scored by the probability mass it
puts on :math:`[x - \tfrac12, x + \tfrac12]` (clipped at 0), so every model
gives a probability of the observed count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._validation import as_nmf_data, check_positive_int, check_rank, check_seed
from ..likelihoods import Likelihood, parse_likelihood
from ..map import fit_map
from ..model import NMFModel
from ..priors import Flat
from ._survey import _rank_seed, entry_folds

__all__ = ["LikelihoodComparison", "compare_likelihoods", "discretized_log_prob"]

CONTINUOUS = ("gaussian", "gamma")


@dataclass
class LikelihoodComparison:
    """Models ranked by held-out predictive log density.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model, best first: ``heldout_lpd`` (sum over entries),
        ``heldout_se``, ``lpd_per_entry``, ``diff`` and ``diff_se`` (paired
        difference from the best and its standard error), ``scored_as``
        (``density``, ``mass`` or ``discretised density``) and, with
        ``loo=True``, ArviZ's PSIS-LOO columns ``elpd_loo``, ``loo_se``,
        ``p_loo``, ``khat_bad``.
    pointwise : dict of str to ndarray of shape (n_features, n_samples)
        Held-out log density of every entry under each model.
    loo_table : pandas.DataFrame or None
        :func:`arviz_stats.compare` on the pointwise log-likelihoods of the
        variational fits (``loo=True``).
    notes : list of str
        Models that could not be scored, and why.
    settings : dict
    """

    table: pd.DataFrame
    pointwise: dict = field(default_factory=dict)
    loo_table: pd.DataFrame | None = None
    notes: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        return str(self.table.index[0])

    def summary(self) -> str:
        cols = [c for c in ("heldout_lpd", "heldout_se", "lpd_per_entry", "diff",
                            "diff_se", "scored_as", "elpd_loo", "loo_se", "khat_bad")
                if c in self.table]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            text = self.table[cols].to_string(float_format=lambda v: f"{v:.4g}")
        lines = [
            f"Likelihood comparison at rank {self.settings.get('rank')}, "
            f"{self.settings.get('n_folds')}-fold held-out entries",
            text,
            f"Best: {self.best}.",
        ]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def _is_integer(X, mask) -> bool:
    observed = X if mask is None else X[mask > 0]
    return bool(np.all(observed == np.round(observed)))


def discretized_log_prob(likelihood: Likelihood, X, WH, params):
    """Log probability of ``[x - 1/2, x + 1/2]`` (clipped at 0) under a density.

    Makes a continuous likelihood comparable with a probability mass function on
    integer data. Gaussian and gamma likelihoods are supported.
    """
    import jax.numpy as jnp
    from jax.scipy.special import gammainc, log_ndtr

    def log_diff(log_hi, log_lo):
        return log_hi + jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, 0.0)))

    lo = jnp.maximum(X - 0.5, 0.0)
    hi = X + 0.5
    if likelihood.kind == "gaussian":
        sd = jnp.sqrt(likelihood._var(params))
        a, b = (lo - WH) / sd, (hi - WH) / sd
        # Use the upper tail when both edges lie above the mean (no cancellation).
        upper = a > 0
        log_hi = jnp.where(upper, log_ndtr(-a), log_ndtr(b))
        log_lo = jnp.where(upper, log_ndtr(-b), log_ndtr(a))
        # Mass below 0 is folded into the first bin (x = 0): NMF data are >= 0.
        log_lo = jnp.where((X == 0) & ~upper, -jnp.inf, log_lo)
        return log_diff(log_hi, log_lo)
    if likelihood.kind == "gamma":
        alpha = likelihood._alpha(params)
        mu = jnp.maximum(WH, 1e-300)
        F_hi = gammainc(alpha, alpha * hi / mu)
        F_lo = gammainc(alpha, alpha * lo / mu)
        return jnp.log(jnp.maximum(F_hi - F_lo, 1e-300))
    raise NotImplementedError(f"discretised density for {likelihood.kind!r}")


def _as_models(models, rank, method):
    if isinstance(models, dict):
        items = list(models.items())
    else:
        items = []
        for m in models:
            name = m if isinstance(m, str) else getattr(m, "kind", None) or repr(m)
            items.append((str(name), m))
    out = {}
    for name, m in items:
        if isinstance(m, str):
            m = parse_likelihood(m)
        if isinstance(m, Likelihood):
            if rank is None:
                raise ValueError("rank: needed when models are given as likelihoods.")
            m = NMFModel(check_rank(rank), m, Flat(), Flat())
        if not isinstance(m, NMFModel):
            if not callable(m):
                raise TypeError(
                    f"models[{name!r}]: expected a likelihood name, a Likelihood, an "
                    f"NMFModel or a NumPyro program, got {type(m).__name__}."
                )
            if method != "vi":
                raise ValueError(
                    f"models[{name!r}]: a custom NumPyro program has no MAP engine; "
                    "compare with method='vi'."
                )
        if name in out:
            raise ValueError(f"models: the name {name!r} appears twice.")
        out[name] = m
    if len(out) < 2:
        raise ValueError(f"models: expected at least two models, got {len(out)}.")
    return out


def _score(model: NMFModel, X, fit, discretize: bool):
    import jax
    import jax.numpy as jnp

    from .._precision import precision_scope

    lik = model.likelihood
    with precision_scope(np.float64):
        params = {k: jnp.asarray(v) for k, v in fit.params.items()}
        Xj = jnp.asarray(X)
        WH = jnp.asarray(fit.W_raw @ fit.H_raw)
        if discretize:
            lp = discretized_log_prob(lik, Xj, WH, params)
        else:
            lp = lik.log_prob(Xj, WH, params)
        return np.asarray(jax.device_get(lp))


def _predictive_score(model, X, res, discretize: bool):
    r"""Log posterior predictive density of every entry, from the fit's draws.

    :math:`\log \frac1S \sum_s p(x_{ij} \mid \theta_s)` over the S draws of the
    variational approximation.
    """
    from scipy.special import logsumexp

    ll = _pointwise_draws(model, X, res, discretize)
    ll = ll.reshape((-1,) + np.shape(X))
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


def _pointwise_draws(model, X, res, discretize: bool) -> np.ndarray:
    """``log p(x_ij | theta_s)`` for every draw: shape (chain, draw, m, n)."""
    import jax.numpy as jnp

    from .._precision import precision_scope

    draws = res.draws
    with precision_scope(np.float64):
        Xj = jnp.asarray(X)
        if isinstance(model, NMFModel):
            lik = model.likelihood
            WH = jnp.asarray(np.einsum("csik,cskj->csij", draws["W"], draws["H"]))
            params = {k: jnp.asarray(draws[k])[..., None, None] for k in res.params
                      if k in draws}
            params.update({k: jnp.asarray(v) for k, v in res.params.items()
                           if k not in draws})
            if discretize and lik.kind in CONTINUOUS:
                ll = discretized_log_prob(lik, Xj, WH, params)
            else:
                ll = lik.log_prob(Xj, WH, params)
        else:
            from numpyro.infer import log_likelihood

            samples = {k: jnp.asarray(v) for k, v in draws.items()}
            ll = log_likelihood(model, samples, Xj, None, batch_ndims=2)["X"]
        return np.asarray(ll, dtype=np.float64)


def _vi_model(model, X):
    """The model VI fits: flat priors replaced by weakly informative ones."""
    from ._survey import default_evidence_priors

    if not isinstance(model, NMFModel):
        return model
    lik = model.likelihood
    if lik.kind == "gaussian" and lik.estimates_noise and not lik.has_noise_prior:
        # A weak inverse-gamma prior on the noise variance, centred on a tenth
        # of the variance of X (the closed-form engine needs a proper one).
        lik = type(lik)(None, noise_var_shape=2.0,
                        noise_var_rate=0.1 * float(np.var(X)))
    pW, pH = model.prior_W, model.prior_H
    if not model.proper:
        pW, pH = default_evidence_priors(X, model.rank, lik)
    return NMFModel(model.rank, lik, pW, pH)


def compare_likelihoods(
    X,
    models,
    *,
    rank: int | None = None,
    mask=None,
    n_folds: int = 5,
    n_restarts: int = 5,
    seed: int = 0,
    discretize="auto",
    loo: bool = False,
    method: str = "map",
    max_iter: int = 2000,
    tol: float = 1e-5,
    dtype="float64",
    vi_options: dict | None = None,
) -> LikelihoodComparison:
    r"""Fit several likelihoods to the same data and rank them by held-out evidence.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data.
    models : list or dict
        Likelihood names (``"gaussian"``, ``"poisson"``, ``"negbinomial"``,
        ``"gamma"``), :class:`~bayesnmf.Likelihood` objects (with flat priors at
        ``rank``), :class:`~bayesnmf.NMFModel` objects, or (with
        ``method="vi"``) a user's NumPyro programs; a dict names them.
    rank : int, optional
        Rank of the models given as likelihoods.
    mask : array-like, optional
        Observed entries; only these are folded and scored.
    n_folds : int, default 5
        Folds of entry-wise cross-validation (the same folds for every model).
    n_restarts : int, default 5
        MAP restarts per fold.
    seed : int, default 0
    discretize : {"auto", True, False}
        Score continuous likelihoods by the mass of ``[x - 1/2, x + 1/2]``;
        ``"auto"`` does so when every observed entry is an integer.
    method : {"map", "vi"}, default "map"
        ``"map"``: each fold is fitted by MAP and held-out entries are scored
        at the fitted mean (plug-in). ``"vi"``: each fold is fitted by
        variational inference (closed form where the model is conjugate,
        NumPyro's SVI otherwise, flat priors replaced by
        :func:`~bayesnmf.selection.default_evidence_priors`) and held-out
        entries are scored by the log posterior predictive density
        :math:`\log \frac1S \sum_s p(x_{ij} \mid \theta_s)`. Custom
        programs need ``"vi"``.
    vi_options : dict, optional
        Extra arguments of the variational engine (``num_steps``, ...).
    loo : bool, default False
        Also fit each model by variational inference (proper priors:
        :func:`~bayesnmf.selection.default_evidence_priors` replace flat ones)
        and compare PSIS-LOO with :func:`arviz_stats.compare`. Draws from a
        variational approximation are not posterior draws: Pareto k values
        tell how far to trust the result, and are passed on as warnings.

    Returns
    -------
    LikelihoodComparison

    Notes
    -----
    A count likelihood (Poisson, negative binomial) needs integer data; the
    gamma likelihood needs strictly positive data. Models whose support does
    not fit the data are listed in ``notes`` and left out.
    """
    data = as_nmf_data(X, mask=mask)
    if method not in ("map", "vi"):
        raise ValueError(f"method: expected 'map' or 'vi', got {method!r}.")
    models = _as_models(models, rank, method)
    n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    if discretize not in ("auto", True, False):
        raise ValueError(f"discretize: expected 'auto', True or False, got {discretize!r}.")
    integer = _is_integer(data.X, data.mask)
    disc = integer if discretize == "auto" else bool(discretize)

    notes, usable = [], {}
    for name, model in models.items():
        if not isinstance(model, NMFModel):
            usable[name] = model
            continue
        kind = model.likelihood.kind
        if kind in ("poisson", "negbinomial") and not integer:
            notes.append(f"{name}: a count likelihood needs integer data; left out.")
            continue
        try:
            model.likelihood.check_data(data.X, data.mask)
        except ValueError as err:
            notes.append(f"{name}: {err} Left out.")
            continue
        usable[name] = model
    if len(usable) < 2:
        raise ValueError(
            "models: fewer than two models can score these data. " + " ".join(notes)
        )

    folds = entry_folds(data.mask, data.shape, n_folds, seed)
    pointwise = {name: np.full(data.shape, np.nan) for name in usable}
    for k in range(n_folds):
        train = ((folds >= 0) & (folds != k)).astype(float)
        held = folds == k
        for name, model in usable.items():
            fold_seed = _rank_seed(seed, 0, 200 + k)
            if method == "map":
                fit = fit_map(data.X, model, mask=train, n_restarts=n_restarts,
                              seed=fold_seed, max_iter=max_iter, tol=tol,
                              dtype=dtype, warn=False)
                lp = _score(model, data.X, fit,
                            disc and model.likelihood.kind in CONTINUOUS)
            else:
                from .._api import fit as fit_any

                vmodel = _vi_model(model, data.X)
                res = fit_any(data.X, vmodel, method="vi", mask=train, seed=fold_seed,
                              warn=False, **(vi_options or {}))
                lp = _predictive_score(vmodel, data.X, res, disc)
            pointwise[name][held] = lp[held]

    observed = folds >= 0
    rows = {}
    for name, lp in pointwise.items():
        pts = lp[observed]
        model = usable[name]
        kind = model.likelihood.kind if isinstance(model, NMFModel) else "custom"
        rows[name] = {
            "heldout_lpd": float(pts.sum()),
            "heldout_se": float(np.sqrt(pts.size) * pts.std(ddof=1)),
            "lpd_per_entry": float(pts.mean()),
            "scored_as": (
                "as programmed" if kind == "custom" else "mass"
                if kind not in CONTINUOUS else "discretised density" if disc
                else "density"),
        }
    table = pd.DataFrame(rows).T
    table = table.astype({c: float for c in ("heldout_lpd", "heldout_se",
                                             "lpd_per_entry")})
    table = table.sort_values("heldout_lpd", ascending=False)
    best = table.index[0]
    for name in table.index:
        diff = pointwise[name][observed] - pointwise[best][observed]
        table.loc[name, "diff"] = float(diff.sum())
        table.loc[name, "diff_se"] = float(np.sqrt(diff.size) * diff.std(ddof=1))

    loo_table = None
    if loo:
        loo_table = _loo_compare(data, usable, disc, seed, table, vi_options)

    return LikelihoodComparison(
        table=table,
        pointwise=pointwise,
        loo_table=loo_table,
        notes=notes,
        settings={"rank": rank, "n_folds": n_folds, "method": method,
                  "n_restarts": n_restarts, "seed": seed, "discretize": disc},
    )


def _loo_compare(data, models, disc, seed, table, vi_options):
    """PSIS-LOO of variational fits, compared with ArviZ; fills ``table``."""
    import jax.numpy as jnp
    from arviz_base import from_dict
    from arviz_stats import compare, loo

    from .._api import fit
    from .._precision import precision_scope
    from .._warnings import ConvergenceWarning

    trees = {}
    for name, model in models.items():
        vmodel = _vi_model(model, data.X)
        res = fit(data, vmodel, method="vi", seed=seed, warn=False,
                  **(vi_options or {}))
        ll = _pointwise_draws(vmodel, data.X, res, disc)
        if data.mask is not None:
            ll = ll[..., data.mask > 0]
        else:
            ll = ll.reshape(ll.shape[:2] + (-1,))
        trees[name] = from_dict(
            {"posterior": {"W": res.draws["W"]}, "log_likelihood": {"X": ll}},
            dims={"X": ["entry"], "W": ["feature", "component"]},
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, tree in trees.items():
            res = loo(tree)
            k = np.asarray(res.pareto_k).ravel()
            good = getattr(res, "good_k", 0.7)
            table.loc[name, "elpd_loo"] = float(res.elpd)
            table.loc[name, "loo_se"] = float(res.se)
            table.loc[name, "p_loo"] = float(res.p)
            table.loc[name, "khat_bad"] = float(np.mean(k > good))
        cmp = compare(trees)
    bad = {n: round(table.loc[n, "khat_bad"], 3) for n in trees
           if table.loc[n, "khat_bad"] > 0}
    if bad or caught:
        warnings.warn(
            "PSIS-LOO from variational draws: share of entries with Pareto k above "
            f"the reliable threshold: {bad or 'none'}. Variational draws are not "
            "posterior draws; trust the held-out comparison more than LOO here.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return cmp
