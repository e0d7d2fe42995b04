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

import functools
import time
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
        One row per model (index ``model``), best first: ``heldout_lpd``
        (sum over entries), ``heldout_se``, ``lpd_per_entry``, ``diff`` and
        ``diff_se`` (paired difference from the best and its standard error),
        ``scored_as`` (``density``, ``mass``, ``discretised density`` or ``as
        programmed`` for a custom program), ``converged`` (share of the folds
        whose fit met its tolerance) and, with
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
        The arguments of the comparison, the data shape, the number of scored
        entries (``n_scored``) and a description of every model
        (``models``: name to text).
    fold_params : dict of str to list of dict
        The likelihood's fitted parameters (noise variance, concentration, ...)
        of each model in each fold, as floats.
    """

    table: pd.DataFrame
    pointwise: dict = field(default_factory=dict)
    loo_table: pd.DataFrame | None = None
    notes: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    fold_params: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        """Name of the model with the highest held-out log density."""
        return str(self.table.index[0])

    def summary(self) -> str:
        """Return the table as text, with a header line, the verdict and the notes."""
        cols = [c for c in ("heldout_lpd", "heldout_se", "lpd_per_entry", "diff",
                            "diff_se", "scored_as", "converged", "elpd_loo",
                            "loo_se", "khat_bad")
                if c in self.table]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            text = self.table[cols].to_string(float_format=lambda v: f"{v:.4g}")
        s = self.settings
        scoring = {"map": "plug-in at the MAP fit",
                   "vi": "posterior predictive of the VI fit"}.get(s.get("method"))
        lines = [
            f"Likelihood comparison at rank {s.get('rank')}: "
            f"{s.get('n_folds')}-fold held-out entries ({s.get('n_scored')} "
            f"scored), {scoring}",
            text,
            f"Best: {self.best}{self._margin()}.",
        ]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _margin(self) -> str:
        if len(self.table) < 2:
            return ""
        second = self.table.iloc[1]
        margin, se = -float(second["diff"]), float(second["diff_se"])
        ratio = f"{margin / se:.1f} x" if se > 0 else "inf x"
        return (f", ahead of {self.table.index[1]} by {margin:.4g} "
                f"({ratio} its standard error {se:.3g})")

    def to_dict(self) -> dict:
        """Everything but the pointwise arrays, as JSON-ready Python objects.

        Keys: ``best``, ``table`` (a list of rows, each with its ``model``
        name), ``loo_table`` (likewise, or None), ``notes``, ``settings`` and
        ``fold_params``.
        """
        def rows(frame):
            if frame is None:
                return None
            out = frame.reset_index(names="model")
            return [{k: _plain(v) for k, v in row.items()}
                    for row in out.to_dict(orient="records")]

        return {
            "best": self.best,
            "table": rows(self.table),
            "loo_table": rows(self.loo_table),
            "notes": list(self.notes),
            "settings": {k: _plain(v) for k, v in self.settings.items()},
            "fold_params": {name: [{k: float(v) for k, v in p.items()} for p in ps]
                            for name, ps in self.fold_params.items()},
        }


def _plain(value):
    """Convert NumPy scalars, also inside dicts and lists, to Python objects."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


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


#: Draws scored at a time by the posterior predictive (bounds the memory to
#: about ten arrays of this many times n_features x n_samples floats).
_DRAW_CHUNK = 50


def _predictive_score(model, X, res, discretize: bool):
    r"""Log posterior predictive density of every entry, from the fit's draws.

    :math:`\log \frac1S \sum_s p(x_{ij} \mid \theta_s)` over the S draws of the
    variational approximation, accumulated over chunks of draws.
    """
    from scipy.special import logsumexp

    n_chains, n_draws = np.shape(res.draws["W"])[:2]
    total = None
    for start in range(0, n_draws, _DRAW_CHUNK):
        part = {k: np.asarray(v)[:, start:start + _DRAW_CHUNK]
                for k, v in res.draws.items()}
        ll = _pointwise_draws(model, X, res, discretize, draws=part)
        chunk = logsumexp(ll.reshape((-1,) + np.shape(X)), axis=0)
        total = chunk if total is None else np.logaddexp(total, chunk)
    return total - np.log(n_chains * n_draws)


def _pointwise_draws(model, X, res, discretize: bool, draws=None) -> np.ndarray:
    """``log p(x_ij | theta_s)`` for every draw: shape (chain, draw, m, n).

    ``draws`` replaces ``res.draws`` (a subset of them).
    """
    import jax.numpy as jnp

    from .._precision import precision_scope

    draws = res.draws if draws is None else draws
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


#: Gamma (shape, rate) priors given to an estimated NB concentration or gamma
#: shape that has none when VI fits the model: exponential, mean 100 and 10.
#: Without a proper prior the dispersion of Poisson-like counts runs off to
#: infinity under SVI and the log probabilities lose every digit.
VI_CONCENTRATION_PRIOR = (1.0, 0.01)
VI_SHAPE_PRIOR = (1.0, 0.1)


def _vi_model(model, X):
    """Return the model VI fits: flat priors replaced by weakly informative ones."""
    from ..likelihoods import GammaLikelihood, NegativeBinomial
    from ._survey import default_evidence_priors

    if not isinstance(model, NMFModel):
        return model
    lik = model.likelihood
    if lik.kind == "gaussian" and lik.estimates_noise and not lik.has_noise_prior:
        # A weak inverse-gamma prior on the noise variance, centred on a tenth
        # of the variance of X (the closed-form engine needs a proper one).
        lik = type(lik)(None, noise_var_shape=2.0,
                        noise_var_rate=0.1 * float(np.var(X)))
    if isinstance(lik, NegativeBinomial) and lik.estimates_concentration and (
            lik.concentration_prior is None):
        lik = NegativeBinomial(None, concentration_prior=VI_CONCENTRATION_PRIOR)
    if isinstance(lik, GammaLikelihood) and lik.estimates_shape and (
            lik.shape_prior is None):
        lik = GammaLikelihood(None, shape_prior=VI_SHAPE_PRIOR)
    pW, pH = model.prior_W, model.prior_H
    if not model.proper:
        pW, pH = default_evidence_priors(X, model.rank, lik)
    return NMFModel(model.rank, lik, pW, pH)


#: Arguments of the variational engines that compare_likelihoods sets itself.
_FIXED_OPTIONS = ("X", "model", "mask", "seed", "warn")


def _vi_engines() -> dict:
    from ..vi import fit_svi, fit_vi_gaussian, fit_vi_poisson

    return {"cavi-poisson-gamma": fit_vi_poisson,
            "cavi-gaussian-tn": fit_vi_gaussian, "svi": fit_svi}


def _check_vi_options(vi_options) -> dict:
    import inspect

    options = dict(vi_options or {})
    accepted = set().union(*(inspect.signature(fn).parameters
                             for fn in _vi_engines().values()))
    fixed = sorted(set(options) & set(_FIXED_OPTIONS))
    if fixed:
        raise ValueError(
            f"vi_options: {fixed} are set by compare_likelihoods itself; remove "
            "them (the fold masks and seeds are shared by every model)."
        )
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"vi_options: {unknown} are not arguments of any variational engine "
            "(fit_svi, fit_vi_poisson, fit_vi_gaussian)."
        )
    return options


def _engine_options(model, options: dict) -> dict:
    """Keep the entries of ``options`` that the engine fitting ``model`` accepts.

    ``num_steps`` means something only to SVI, ``max_iter`` only to the
    closed-form engines: each engine gets the options it knows.
    """
    import inspect

    from .._api import vi_engine

    fn = _vi_engines()[vi_engine(model)]
    params = inspect.signature(fn).parameters
    return {k: v for k, v in options.items() if k in params}


def _check_scores(name, lp, held, scored_as, notes) -> bool:
    """Check that held-out scores are log probabilities; if not, add a note."""
    pts = lp[held]
    bad = ~np.isfinite(pts)
    if scored_as in ("mass", "discretised density"):
        # A probability is at most 1; allow rounding of an exact 0.
        bad |= pts > 1e-8
    if not bad.any():
        return True
    notes.append(
        f"{name}: {int(bad.sum())} held-out entries got a log probability that is "
        "infinite, NaN or above 0 (a numerical failure of the fit or of the "
        "density); left out."
    )
    return False


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
        Extra arguments of the variational engines (``num_steps``,
        ``num_draws``, ``max_iter``, ...); each engine gets those it accepts
        (``num_steps`` goes to SVI only, ``max_iter`` to the closed-form
        engines). Used by ``method="vi"`` and ``loo=True``.
    loo : bool, default False
        Also fit each model by variational inference (proper priors:
        :func:`~bayesnmf.selection.default_evidence_priors` replace flat ones)
        and compare PSIS-LOO with :func:`arviz_stats.compare`. Draws from a
        variational approximation are not posterior draws: Pareto k values
        tell how far to trust the result, and are passed on as warnings.

    Returns
    -------
    LikelihoodComparison

    Raises
    ------
    ValueError
        For bad arguments, or when fewer than two models can score the data.

    Warns
    -----
    UserWarning
        When a model's held-out scores are not valid log probabilities (NaN,
        infinite, or a log mass above 0); it is left out.
    ConvergenceWarning
        With ``loo=True``, when some Pareto k values exceed ArviZ's reliable
        threshold.

    Notes
    -----
    A count likelihood (Poisson, negative binomial) needs integer data; the
    gamma likelihood needs strictly positive data. Models whose support does
    not fit the data are listed in ``notes`` and left out.

    Variational fits of built-in models whose noise parameter is estimated
    under a flat prior get a weak proper one: an inverse gamma on the Gaussian
    variance, exponential priors with mean 100 on the negative binomial
    concentration and mean 10 on the gamma shape.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesnmf.selection._compare import compare_likelihoods
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(rng.gamma(1.0, 1.0, (30, 3)) @ rng.gamma(1.0, 5.0, (3, 20)))
    >>> cmp = compare_likelihoods(X, ["poisson", "gaussian"], rank=3, n_folds=3)
    >>> cmp.best
    'poisson'
    """
    data = as_nmf_data(X, mask=mask)
    if method not in ("map", "vi"):
        raise ValueError(f"method: expected 'map' or 'vi', got {method!r}.")
    models = _as_models(models, rank, method)
    n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    if discretize not in ("auto", True, False):
        raise ValueError(
            f"discretize: expected 'auto', True or False, got {discretize!r}."
        )
    vi_options = _check_vi_options(vi_options)
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
    fold_params = {name: [] for name in usable}
    converged = {name: [] for name in usable}
    seconds = dict.fromkeys(usable, 0.0)
    ranks = set()
    for k in range(n_folds):
        train = ((folds >= 0) & (folds != k)).astype(float)
        held = folds == k
        for name, model in usable.items():
            fold_seed = _rank_seed(seed, 0, 200 + k)
            started = time.perf_counter()
            if method == "map":
                fit = fit_map(data.X, model, mask=train, n_restarts=n_restarts,
                              seed=fold_seed, max_iter=max_iter, tol=tol,
                              dtype=dtype, warn=False)
                lp = _score(model, data.X, fit,
                            disc and model.likelihood.kind in CONTINUOUS)
            else:
                from .._api import fit as fit_any

                vmodel = _vi_model(model, data.X)
                fit = fit_any(data.X, vmodel, method="vi", mask=train, seed=fold_seed,
                              warn=False, **_engine_options(vmodel, vi_options))
                lp = _predictive_score(vmodel, data.X, fit, disc)
            seconds[name] += time.perf_counter() - started
            pointwise[name][held] = lp[held]
            fold_params[name].append({p: float(v) for p, v in fit.params.items()})
            converged[name].append(bool(fit.converged))
            ranks.add(int(fit.model.rank))

    observed = folds >= 0
    scored_as = {name: _scored_as(model, disc) for name, model in usable.items()}
    failed = []
    for name in list(usable):
        if not _check_scores(name, pointwise[name], observed, scored_as[name],
                             failed):
            del usable[name], pointwise[name], fold_params[name]
    notes += failed
    if failed:
        warnings.warn(" ".join(failed), UserWarning, stacklevel=2)
    if len(usable) < 2:
        raise ValueError(
            "models: fewer than two models gave valid held-out scores. "
            + " ".join(notes)
        )

    rows = {}
    for name, lp in pointwise.items():
        pts = lp[observed]
        rows[name] = {
            "heldout_lpd": float(pts.sum()),
            "heldout_se": float(np.sqrt(pts.size) * pts.std(ddof=1)),
            "lpd_per_entry": float(pts.mean()),
            "scored_as": scored_as[name],
            "converged": float(np.mean(converged[name])),
        }
    table = pd.DataFrame(rows).T
    table = table.astype({c: float for c in ("heldout_lpd", "heldout_se",
                                             "lpd_per_entry", "converged")})
    table = table.sort_values("heldout_lpd", ascending=False, kind="stable")
    best = table.index[0]
    for name in table.index:
        diff = pointwise[name][observed] - pointwise[best][observed]
        table.loc[name, "diff"] = float(diff.sum())
        table.loc[name, "diff_se"] = float(np.sqrt(diff.size) * diff.std(ddof=1))
    table.index.name = "model"

    loo_table = None
    if loo:
        loo_table = _loo_compare(data, usable, disc, seed, table, vi_options)

    return LikelihoodComparison(
        table=table,
        pointwise=pointwise,
        loo_table=loo_table,
        notes=notes,
        settings={
            "rank": rank if rank is not None else (
                ranks.pop() if len(ranks) == 1 else None),
            "n_folds": n_folds, "method": method, "n_restarts": n_restarts,
            "seed": seed, "discretize": disc, "shape": tuple(data.shape),
            "n_scored": int(observed.sum()),
            "models": {name: _describe(m) for name, m in usable.items()},
            "seconds": seconds,
        },
        fold_params=fold_params,
    )


def _scored_as(model, disc: bool) -> str:
    if not isinstance(model, NMFModel):
        return "as programmed"
    if model.likelihood.kind not in CONTINUOUS:
        return "mass"
    return "discretised density" if disc else "density"


def _describe(model) -> str:
    if isinstance(model, NMFModel):
        return model.describe()
    if isinstance(model, functools.partial):
        args = ", ".join(f"{k}={_short(v)}" for k, v in model.keywords.items())
        return f"{_describe(model.func)}({args})"
    return "custom NumPyro model " + getattr(model, "__qualname__",
                                            type(model).__name__)


def _short(value) -> str:
    if np.ndim(value) > 0:
        return f"<array of shape {np.shape(value)}>"
    return repr(value)


def _loo_compare(data, models, disc, seed, table, vi_options):
    """PSIS-LOO of variational fits, compared with ArviZ; fills ``table``."""
    from arviz_base import from_dict
    from arviz_stats import compare, loo

    from .._api import fit
    from .._warnings import ConvergenceWarning

    trees = {}
    for name, model in models.items():
        vmodel = _vi_model(model, data.X)
        res = fit(data, vmodel, method="vi", seed=seed, warn=False,
                  **_engine_options(vmodel, vi_options))
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
        elpds = {}
        for name, tree in trees.items():
            # Pointwise values, so that compare() reuses them for its weights.
            res = elpds[name] = loo(tree, pointwise=True)
            k = np.asarray(res.pareto_k).ravel()
            good = getattr(res, "good_k", 0.7)
            table.loc[name, "elpd_loo"] = float(res.elpd)
            table.loc[name, "loo_se"] = float(res.se)
            table.loc[name, "p_loo"] = float(res.p)
            table.loc[name, "khat_bad"] = float(np.mean(k > good))
        cmp = compare(elpds)
    # ArviZ's own Pareto k warnings are summarised in one; others pass through.
    for w in caught:
        if "pareto" not in str(w.message).lower():
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    bad = {n: round(float(table.loc[n, "khat_bad"]), 3) for n in trees
           if table.loc[n, "khat_bad"] > 0}
    if bad:
        warnings.warn(
            "PSIS-LOO from variational draws: share of entries with Pareto k above "
            f"the reliable threshold: {bad}. Variational draws are not posterior "
            "draws; trust the held-out comparison more than LOO here.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return cmp
