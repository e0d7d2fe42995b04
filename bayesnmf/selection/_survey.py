r"""Choosing the rank: evidence and stability side by side.

:func:`rank_survey` fits every rank in a list with many restarts (one compiled
call per rank; restarts batched) and reports, per rank:

* **fit**: the best negative log-likelihood and divergence over restarts (must
  not rise with the rank);
* **stability**: consensus clustering of samples across restarts (cophenetic
  correlation computed as the R package NMF does, dispersion, PAC) and the
  silhouette of components matched across restarts (SigProfilerExtractor);
* **held-out evidence**: entry-wise K-fold cross-validation: each fold's
  entries are masked, the model is fitted to the rest, and the predictive log
  density of the held-out entries is summed (Wold 1978; ``METHODS.md`` §5.5);
* **variational evidence** (optional): the best evidence lower bound over
  restarts plus :math:`\log r!` (``METHODS.md`` §5.6).

The recommendation rule is stated in words in the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import as_nmf_data, check_positive_int, check_rank, check_seed
from ..likelihoods import Likelihood, Poisson
from ..map import fit_map
from ..model import NMFModel
from ..priors import Flat, Prior
from ..result import NMFResult
from ._consensus import (
    consensus_matrix,
    cophenetic_correlation,
    dispersion,
    pac,
    silhouette_stability,
)

__all__ = ["RankSurvey", "rank_survey", "heldout_log_density", "entry_folds"]

CRITERIA = ("stability", "heldout", "elbo")


@dataclass
class RankSurvey:
    """Rank-selection criteria for a list of ranks.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per rank, one column per criterion (see :func:`rank_survey`).
    recommended_rank : int or None
        The rank chosen by ``rule``; None when no criterion could decide.
    rule : str
        The rule that chose it, in words, with the numbers that decided.
    consensus : dict of int to ndarray of shape (n_samples, n_samples)
        Consensus matrix of the restarts at each rank.
    fits : dict of int to NMFResult
        The MAP fit (all restarts) at each rank.
    sample_names : list of str
        Column labels of X (rows and columns of the consensus matrices).
    settings : dict
        How the survey was run.
    """

    table: pd.DataFrame
    recommended_rank: int | None
    rule: str
    consensus: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    sample_names: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        with pd.option_context("display.width", 120, "display.max_columns", 30):
            text = self.table.to_string(float_format=lambda v: f"{v:.4g}")
        rec = self.recommended_rank
        return (
            f"Rank survey ({self.settings.get('model', '')})\n{text}\n\n"
            f"Recommended rank: {rec if rec is not None else 'none'}\n{self.rule}"
        )

    def save(self, folder) -> Path:
        """Write ``criteria.tsv``, ``recommendation.txt`` and the consensus matrices."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(folder / "criteria.tsv", sep="\t")
        (folder / "recommendation.txt").write_text(self.summary() + "\n")
        for r, C in self.consensus.items():
            pd.DataFrame(C, index=self.sample_names, columns=self.sample_names).to_csv(
                folder / f"consensus_rank{r}.tsv", sep="\t"
            )
        return folder


def _rank_seed(seed: int, rank: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1)[0] >> 1)


def entry_folds(mask: np.ndarray | None, shape, n_folds: int, seed: int) -> np.ndarray:
    """Assign every observed entry to one of ``n_folds`` folds at random.

    Returns an int array of the matrix's shape: the fold of each observed entry,
    -1 for unobserved ones. Raises if a fold would hide a whole row or column.
    """
    observed = np.ones(shape, bool) if mask is None else mask > 0
    idx = np.flatnonzero(observed)
    rng = np.random.default_rng(seed)
    folds = np.full(shape, -1, dtype=np.int64)
    folds.flat[idx] = rng.permutation(idx.size) % n_folds
    for k in range(n_folds):
        train = observed & (folds != k)
        if (train.sum(1) == 0).any() or (train.sum(0) == 0).any():
            raise ValueError(
                f"n_folds: with {n_folds} folds, fold {k} hides every observed entry "
                "of a row or column. Use more folds or a larger matrix."
            )
    return folds


def heldout_log_density(
    X,
    model: NMFModel,
    *,
    mask=None,
    n_folds: int = 5,
    n_restarts: int = 5,
    seed: int = 0,
    **fit_kwargs,
) -> np.ndarray:
    """Pointwise held-out predictive log density by entry-wise K-fold.

    Each fold's entries are masked, the model is fitted to the rest by MAP, and
    every held-out entry is scored by the likelihood at the fitted mean:
    :math:`\\log p(x_{ij} \\mid (\\hat W \\hat H)_{ij}, \\hat\\theta)`.

    Returns
    -------
    ndarray of shape (n_features, n_samples)
        The held-out log density of each entry; NaN where X is unobserved.
    """
    import jax
    import jax.numpy as jnp

    from .._precision import precision_scope

    data = as_nmf_data(X, mask=mask)
    folds = entry_folds(data.mask, data.shape, n_folds, seed)
    pointwise = np.full(data.shape, np.nan)
    for k in range(n_folds):
        train = ((folds >= 0) & (folds != k)).astype(float)
        fit = fit_map(data.X, model, mask=train, n_restarts=n_restarts,
                      seed=_rank_seed(seed, model.rank, 100 + k), warn=False,
                      **fit_kwargs)
        with precision_scope(np.float64):
            params = {kk: jnp.asarray(v) for kk, v in fit.params.items()}
            lp = model.likelihood.log_prob(
                jnp.asarray(data.X), jnp.asarray(fit.W_raw @ fit.H_raw), params
            )
            lp = np.asarray(jax.device_get(lp))
        held = folds == k
        pointwise[held] = lp[held]
    return pointwise


def _elbo(X, mask, model: NMFModel, n_restarts, seed, max_iter):
    """Best ELBO + log r! over restarts, from the closed-form engines."""
    lik = model.likelihood
    if lik.kind == "poisson":
        from ..vi import fit_vi_poisson

        fit = fit_vi_poisson(X, model, mask=mask, n_restarts=n_restarts, seed=seed,
                             max_iter=max_iter, num_draws=1, warn=False)
    elif lik.kind == "gaussian":
        from ..vi._gaussian_tn import fit_vi_gaussian

        fit = fit_vi_gaussian(X, model, mask=mask, n_restarts=n_restarts, seed=seed,
                              max_iter=max_iter, num_draws=1, warn=False)
    else:
        raise NotImplementedError(
            f"criteria: no closed-form ELBO for the {lik.kind} likelihood; drop "
            "'elbo' from criteria."
        )
    return -fit.objective + math.lgamma(model.rank + 1)


def default_evidence_priors(X, rank: int, likelihood: Likelihood):
    """Weakly informative priors for evidence when the model's priors are flat.

    Exponential(1) on W and Exponential(rank / mean(X)) on H, so that the prior
    mean of every entry of WH equals the mean of X at every rank.
    """
    from ..priors import Exponential, Gamma

    mean = float(np.mean(X))
    if likelihood.kind == "poisson":
        return Gamma(1.0, 1.0), Gamma(1.0, rank / mean)
    return Exponential(1.0), Exponential(rank / mean)


def rank_survey(
    X,
    ranks,
    *,
    likelihood: Likelihood | None = None,
    prior_W: Prior | None = None,
    prior_H: Prior | None = None,
    mask=None,
    n_restarts: int = 50,
    seed: int = 0,
    criteria=("stability", "heldout"),
    n_folds: int = 5,
    heldout_restarts: int = 5,
    evidence_restarts: int = 10,
    max_iter: int = 2000,
    tol: float = 1e-5,
    dtype="float32",
    allow_nan: bool = False,
    progress: bool = False,
) -> RankSurvey:
    """Fit a list of ranks and report evidence and stability criteria.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data; labels are kept.
    ranks : sequence of int
        Ranks to compare (for example ``range(2, 9)``).
    likelihood : Likelihood, default Poisson()
        Noise model; priors default to flat (classical NMF).
    prior_W, prior_H : Prior, optional
        Priors of the MAP fits.
    mask : array-like, optional
        Observed entries.
    n_restarts : int, default 50
        Restarts per rank (batched in one compiled call per rank).
    seed : int, default 0
        One seed for the whole survey: the same seed gives the same table.
    criteria : sequence of {"stability", "heldout", "elbo"}
        Criteria to compute besides the fit. ``"stability"``: consensus and
        silhouette; ``"heldout"``: K-fold held-out log density; ``"elbo"``: the
        variational bound (Poisson or Gaussian likelihood; flat priors are
        replaced by :func:`default_evidence_priors`).
    n_folds : int, default 5
        Folds of entry-wise cross-validation.
    heldout_restarts, evidence_restarts : int
        Restarts per fold and per variational fit.
    max_iter, tol, dtype
        Settings of the MAP fits (see :func:`~bayesnmf.fit_map`). float32 is
        the default here; criteria are computed in float64.

    Returns
    -------
    RankSurvey
        Table columns: ``neg_loglik`` (best over restarts), ``cophenetic``,
        ``dispersion``, ``pac``, ``silhouette_mean``, ``silhouette_min``,
        ``heldout_lpd`` and ``heldout_se`` (sum over entries and its standard
        error), ``heldout_lpd_per_entry``, ``elbo`` (+ log r!).

    Notes
    -----
    Rule for the recommendation: among ranks whose restarts agree (cophenetic
    correlation >= 0.95 and minimum component silhouette >= 0.5), take the
    smallest rank whose held-out log density is within one standard error of
    the best; without held-out evidence, the largest stable rank whose
    cophenetic correlation has not yet begun to fall (Brunet et al. 2004).
    """
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    ranks = sorted({check_rank(r) for r in ranks})
    if not ranks:
        raise ValueError("ranks: expected at least one rank.")
    if max(ranks) > min(data.shape):
        raise ValueError(
            f"ranks: expected ranks <= min(n_features, n_samples) = {min(data.shape)}, "
            f"got {max(ranks)}."
        )
    unknown = set(criteria) - set(CRITERIA)
    if unknown:
        raise ValueError(f"criteria: expected a subset of {CRITERIA}, got {sorted(unknown)}.")
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    if "stability" in criteria and n_restarts < 2:
        raise ValueError("n_restarts: stability criteria need at least 2 restarts.")
    likelihood = likelihood or Poisson()
    prior_W, prior_H = prior_W or Flat(), prior_H or Flat()

    rows, consensus, fits, heldout = [], {}, {}, {}
    iterator = ranks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ranks, desc="ranks", leave=False)
    for r in iterator:
        model = NMFModel(r, likelihood, prior_W, prior_H)
        fit = fit_map(data, model, n_restarts=n_restarts, seed=_rank_seed(seed, r, 0),
                      max_iter=max_iter, tol=tol, dtype=dtype, warn=False)
        fits[r] = fit
        row = {"rank": r, "neg_loglik": _best_neg_loglik(data, fit),
               "restarts_converged": float(np.mean(fit.restarts["converged"]))}
        if "stability" in criteria:
            C = consensus_matrix(fit.restarts["H_raw"])
            consensus[r] = C
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row["cophenetic"] = cophenetic_correlation(C)
            row["dispersion"] = dispersion(C)
            row["pac"] = pac(C)
            sil = silhouette_stability(fit.restarts["W_raw"], seed=_rank_seed(seed, r, 1))
            row["silhouette_mean"] = sil.average
            row["silhouette_min"] = sil.minimum
        if "heldout" in criteria:
            lpd = heldout_log_density(
                data, model, n_folds=n_folds, n_restarts=heldout_restarts,
                seed=_rank_seed(seed, 0, 2), max_iter=max_iter, tol=tol, dtype=dtype,
            )
            pts = lpd[np.isfinite(lpd)]
            heldout[r] = pts
            row["heldout_lpd"] = float(pts.sum())
            row["heldout_se"] = float(np.sqrt(pts.size) * pts.std(ddof=1))
            row["heldout_lpd_per_entry"] = float(pts.mean())
        if "elbo" in criteria:
            pW, pH = prior_W, prior_H
            if not (pW.proper and pH.proper):
                pW, pH = default_evidence_priors(data.X, r, likelihood)
            vmodel = NMFModel(r, likelihood, pW, pH)
            row["elbo"] = _elbo(data, None, vmodel, evidence_restarts,
                                _rank_seed(seed, r, 3), max_iter)
        rows.append(row)

    table = pd.DataFrame(rows).set_index("rank")
    if heldout:
        # Paired comparison with the best rank, as ArviZ's compare does for LOO.
        best = max(heldout, key=lambda r: heldout[r].sum())
        for r, pts in heldout.items():
            diff = pts - heldout[best]
            table.loc[r, "heldout_diff"] = float(diff.sum())
            table.loc[r, "heldout_diff_se"] = float(np.sqrt(diff.size) * diff.std(ddof=1))
    rec, rule = _recommend(table)
    return RankSurvey(
        table=table,
        recommended_rank=rec,
        rule=rule,
        consensus=consensus,
        fits=fits,
        sample_names=list(data.sample_names),
        settings={
            "model": f"{likelihood.describe()} likelihood, W ~ {prior_W.describe()}, "
            f"H ~ {prior_H.describe()}",
            "ranks": ranks, "n_restarts": n_restarts, "seed": seed,
            "criteria": list(criteria), "n_folds": n_folds, "max_iter": max_iter,
            "tol": tol, "dtype": str(np.dtype(dtype)),
        },
    )


def _best_neg_loglik(data, fit: NMFResult) -> float:
    """``-log p(X | WH)`` of the best restart, in float64."""
    import jax.numpy as jnp

    from .._precision import precision_scope

    lik = fit.model.likelihood
    with precision_scope(np.float64):
        X = jnp.asarray(data.X)
        M = None if data.mask is None else jnp.asarray(data.mask)
        params = {k: jnp.asarray(v) for k, v in fit.params.items()}
        W, H = jnp.asarray(fit.W_raw), jnp.asarray(fit.H_raw)
        value = lik.loss(X, M, W, H, params) + lik.data_constant(X, M, params)
        return float(value)


STABLE_COPHENETIC = 0.95
STABLE_SILHOUETTE = 0.5


def _recommend(table: pd.DataFrame) -> tuple[int | None, str]:
    ranks = list(table.index)
    has_stab = "cophenetic" in table
    stable = ranks
    if has_stab:
        coph = table["cophenetic"].fillna(0.0)
        sil = table["silhouette_min"].fillna(1.0)  # rank 1: nothing to disagree on
        stable = [r for r in ranks
                  if coph[r] >= STABLE_COPHENETIC and sil[r] >= STABLE_SILHOUETTE]
    if "heldout_lpd" in table:
        pool = stable or ranks
        lpd = table.loc[pool, "heldout_lpd"]
        best = int(lpd.idxmax())
        # Standard error of each rank's difference from the best, paired over
        # entries (the difference to the overall best when that is in the pool).
        diff = lpd - lpd[best]
        se = table.loc[pool, "heldout_diff_se"] if best == int(
            table["heldout_lpd"].idxmax()) else table.loc[pool, "heldout_se"]
        rec = min(r for r in pool if diff[r] >= -se[r] or r == best)
        where = (
            f"among the ranks whose restarts agree (cophenetic >= {STABLE_COPHENETIC}, "
            f"min silhouette >= {STABLE_SILHOUETTE}: {stable})" if has_stab and stable
            else "among all ranks (none met the stability thresholds)" if has_stab
            else "among all ranks"
        )
        if rec == best:
            rule = (f"Rank {rec}: the best held-out log density ({lpd[best]:.1f}) "
                    f"{where}; no smaller rank comes within one standard error of it.")
        else:
            rule = (
                f"Rank {rec}: the smallest rank {where} whose held-out log density "
                f"({lpd[rec]:.1f}) is within one standard error ({se[rec]:.1f}) of "
                f"the difference from the best, {lpd[best]:.1f} at rank {best}."
            )
        return rec, rule
    if has_stab:
        if not stable:
            return None, ("No rank met the stability thresholds (cophenetic >= "
                          f"{STABLE_COPHENETIC}, min silhouette >= {STABLE_SILHOUETTE}).")
        coph = table["cophenetic"]
        rec = stable[0]
        for r in stable[1:]:
            if coph[r] >= coph[rec] - 0.005:
                rec = r
            else:
                break
        return rec, (
            f"Rank {rec}: the largest stable rank before the cophenetic correlation "
            f"begins to fall (Brunet et al. 2004): {coph[rec]:.4f} at rank {rec}."
        )
    if "elbo" in table:
        rec = int(table["elbo"].idxmax())
        return rec, f"Rank {rec}: the largest ELBO + log r! ({table['elbo'][rec]:.1f})."
    return None, "No criterion to choose a rank was computed."
