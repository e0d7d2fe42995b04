r"""Choosing the rank: evidence and stability side by side.

:func:`rank_survey` fits every rank in a list with many restarts (one compiled
call per rank; restarts batched) and reports, per rank:

* **fit**: the best negative log-likelihood and divergence over restarts (must
  not rise with the rank; ``METHODS.md`` §5.1);
* **stability**: consensus clustering of samples across restarts (cophenetic
  correlation computed as the R package NMF does, dispersion, PAC) and the
  silhouette of components matched across restarts (SigProfilerExtractor;
  §5.2-5.4);
* **held-out evidence**: entry-wise K-fold cross-validation (each fold's
  entries are masked, the model is fitted to the rest, and the predictive log
  density of the held-out entries is summed; Wold 1978) and bi-cross-validation
  of row and column blocks (Owen and Perry 2009; §5.5);
* **variational evidence**: the best evidence lower bound over restarts plus
  :math:`\log r!` (§5.6), and PSIS-LOO of the variational draws through ArviZ
  with its Pareto-k diagnostics (§5.8);
* **ARD**: the effective rank of one automatic-relevance-determination fit
  started at the largest rank (§4), reported beside the table.

The recommendation rule is stated in words in the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import (
    as_nmf_data,
    check_positive,
    check_positive_int,
    check_rank,
    check_seed,
)
from .._warnings import ConvergenceWarning
from ..likelihoods import Gaussian, Likelihood, Poisson
from ..model import NMFModel
from ..priors import Exponential, Flat, Gamma, Prior
from ..result import NMFResult
from ._ard import ARDResult, fit_ard
from ._bcv import bcv_log_density, bcv_max_rank, derived_seed, floor_mean
from ._restarts import fit_restarts
from ._consensus import (
    consensus_matrix,
    cophenetic_correlation,
    dispersion,
    pac,
    silhouette_stability,
)

__all__ = [
    "RankSurvey",
    "default_evidence_priors",
    "entry_folds",
    "heldout_log_density",
    "rank_survey",
]

CRITERIA = ("stability", "heldout", "bcv", "elbo", "loo", "ard")


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
    ard : ARDResult or None
        The ARD fit started at the largest rank (criterion ``"ard"``).
    loo : dict of int to arviz_stats ELPDData
        PSIS-LOO of each rank's variational draws (criterion ``"loo"``), with
        pointwise values and Pareto k, ready for :func:`arviz_stats.compare`.
    """

    table: pd.DataFrame
    recommended_rank: int | None
    rule: str
    consensus: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    sample_names: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    ard: ARDResult | None = None
    loo: dict = field(default_factory=dict)

    @property
    def ard_rank(self) -> int | None:
        """Effective rank found by ARD (0 if it pruned everything), or None."""
        return None if self.ard is None else self.ard.effective_rank

    def summary(self) -> str:
        """The table, the recommendation and its rule, and ARD's rank, as text."""
        with pd.option_context("display.width", 120, "display.max_columns", 40):
            text = self.table.to_string(float_format=lambda v: f"{v:.4g}")
        rec = self.recommended_rank
        lines = [
            f"Rank survey ({self.settings.get('model', '')})",
            text,
            "",
            f"Recommended rank: {rec if rec is not None else 'none'}",
            self.rule,
        ]
        if self.ard is not None:
            lines += [
                "",
                f"ARD effective rank: {self.ard_rank} (started at rank "
                f"{self.ard.fit.rank}). {self.ard.message}",
            ]
        if self.loo:
            lines += ["", _LOO_CAVEAT]
        return "\n".join(lines)

    def save(self, folder) -> Path:
        """Write the table, the recommendation and the consensus matrices.

        Files: ``criteria.tsv``, ``recommendation.txt``,
        ``consensus_rank{r}.tsv`` and, with ARD, ``ard_relevance.tsv``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(folder / "criteria.tsv", sep="\t")
        (folder / "recommendation.txt").write_text(self.summary() + "\n")
        for r, C in self.consensus.items():
            pd.DataFrame(C, index=self.sample_names, columns=self.sample_names).to_csv(
                folder / f"consensus_rank{r}.tsv", sep="\t"
            )
        if self.ard is not None:
            self.ard.relevance.to_csv(folder / "ard_relevance.tsv", sep="\t")
        return folder


_LOO_CAVEAT = (
    "PSIS-LOO columns come from draws of the variational approximation, not of "
    "the posterior: mean-field draws are narrower than the posterior, so many "
    "Pareto k are high (loo_khat_bad) and loo_elpd is then unreliable. Prefer "
    "the held-out columns for the decision."
)


def _rank_seed(seed: int, rank: int, stream: int) -> int:
    return derived_seed(seed, rank, stream)


def entry_folds(mask: np.ndarray | None, shape, n_folds: int, seed: int) -> np.ndarray:
    """Assign every observed entry to one of ``n_folds`` folds at random.

    Parameters
    ----------
    mask : ndarray of shape (n_features, n_samples) or None
        1 where X is observed; None when everything is.
    shape : tuple of int
        ``(n_features, n_samples)``.
    n_folds : int
        Number of folds, at least 2.
    seed : int
        Seed of the assignment.

    Returns
    -------
    ndarray of shape (n_features, n_samples)
        The fold of each observed entry, -1 for unobserved ones.

    Raises
    ------
    ValueError
        If a fold would hide every observed entry of a row or column.
    """
    n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
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
    restart_batch: int | None = None,
    **fit_kwargs,
) -> np.ndarray:
    r"""Pointwise held-out predictive log density by entry-wise K-fold.

    Each fold's entries are masked, the model is fitted to the rest by MAP, and
    every held-out entry is scored by the likelihood at the fitted mean:
    :math:`\log p(x_{ij} \mid (\hat W \hat H)_{ij}, \hat\theta)`.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data.
    model : NMFModel
        Rank, likelihood and priors.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; only observed entries are held out and scored.
    n_folds : int, default 5
        Number of folds of entries.
    n_restarts : int, default 5
        Restarts of each fit.
    seed : int, default 0
        Seed of the folds and of the restarts.
    restart_batch : int, optional
        Restarts per compiled call (see :func:`rank_survey`).
    **fit_kwargs
        Passed to :func:`~bayesnmf.fit_map` (``max_iter``, ``tol``, ``dtype``).

    Returns
    -------
    ndarray of shape (n_features, n_samples)
        The held-out log density of each entry; NaN where X is unobserved. A
        predicted mean of exactly 0 is floored at ``sqrt(tiny)``, as in the
        MAP loss, so that it scores a large finite penalty rather than -inf.
    """
    import jax.numpy as jnp

    from .._precision import precision_scope

    data = as_nmf_data(X, mask=mask)
    if not isinstance(model, NMFModel):
        raise TypeError(f"model: expected an NMFModel, got {model!r}.")
    folds = entry_folds(data.mask, data.shape, n_folds, seed)
    pointwise = np.full(data.shape, np.nan)
    for k in range(n_folds):
        train = ((folds >= 0) & (folds != k)).astype(float)
        fit = fit_restarts(as_nmf_data(data.X, mask=train), model,
                           n_restarts=n_restarts,
                           seed=_rank_seed(seed, model.rank, 100 + k),
                           batch=restart_batch, **fit_kwargs)
        with precision_scope(np.float64):
            params = {kk: jnp.asarray(v) for kk, v in fit.params.items()}
            lp = model.likelihood.log_prob(
                jnp.asarray(data.X), jnp.asarray(floor_mean(fit.W_raw @ fit.H_raw)),
                params,
            )
            lp = np.asarray(lp)
        held = folds == k
        pointwise[held] = lp[held]
    return pointwise


def default_evidence_priors(X, rank: int, likelihood: Likelihood):
    """Weakly informative priors for evidence when the model's priors are flat.

    Gamma(1, 1) on W and Gamma(1, rank / mean(X)) on H (exponential priors,
    written as gammas for the Poisson engine), so that the prior mean of every
    entry of WH equals the mean of X at every rank.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        The data (only its mean is used).
    rank : int
        The rank.
    likelihood : Likelihood
        Poisson gets gamma priors, other likelihoods exponential ones.

    Returns
    -------
    prior_W, prior_H : Prior
    """
    mean = float(np.nanmean(np.asarray(X, dtype=float)))
    if likelihood.kind == "poisson":
        return Gamma(1.0, 1.0), Gamma(1.0, rank / mean)
    return Exponential(1.0), Exponential(rank / mean)


def _evidence_model(data, rank: int, likelihood: Likelihood, prior_W: Prior,
                    prior_H: Prior) -> NMFModel:
    """The model whose variational fit gives the evidence columns.

    Flat priors become :func:`default_evidence_priors`; a Gaussian noise
    variance estimated without a prior gets a weak inverse-gamma prior (shape
    1, rate 1% of the mean square of X), which VI needs.
    """
    if not (prior_W.proper and prior_H.proper):
        prior_W, prior_H = default_evidence_priors(_observed(data), rank, likelihood)
    if (isinstance(likelihood, Gaussian) and likelihood.estimates_noise
            and not likelihood.has_noise_prior):
        mean_square = float(np.nanmean(_observed(data) ** 2))
        likelihood = Gaussian(None, noise_var_shape=1.0,
                              noise_var_rate=0.01 * mean_square)
    return NMFModel(rank, likelihood, prior_W, prior_H)


def _observed(data) -> np.ndarray:
    return data.X if data.mask is None else np.where(data.mask > 0, data.X, np.nan)


def _variational_fit(data, model: NMFModel, n_restarts: int, seed: int,
                     max_iter: int, num_draws: int, need_elbo: bool) -> NMFResult:
    """Variational fit of one rank: closed form where it exists."""
    from .._api import fit, vi_engine

    engine = vi_engine(model)
    if need_elbo and engine == "svi":
        raise NotImplementedError(
            "criteria: 'elbo' needs a closed-form variational engine (Poisson "
            "likelihood with gamma or exponential priors, or Gaussian likelihood "
            f"with exponential priors); the survey's model is {model.describe()}. "
            "Drop 'elbo' from criteria or use flat priors (replaced by "
            "default_evidence_priors)."
        )
    kwargs = {"n_restarts": n_restarts, "seed": seed, "max_iter": max_iter,
              "num_draws": num_draws, "warn": False}
    if engine == "svi":
        kwargs = {"seed": seed, "num_draws": max(num_draws, 1), "warn": False}
    return fit(data, model, method="vi", **kwargs)


def _psis_loo(data, fit: NMFResult):
    """PSIS-LOO of the entry-wise log-likelihood of a fit's draws (ArviZ).

    ArviZ's own high-Pareto-k warning is held back: the survey reports the
    counts once, for all ranks (:func:`_warn_pareto`). Other warnings pass.
    """
    import xarray as xr
    from arviz_stats import loo

    from ..inference_data import to_datatree

    tree = to_datatree(fit, data.X, mask=data.mask, log_likelihood=True)
    if data.mask is not None:
        # Unobserved entries have NaN log-likelihood: drop them.
        ll = tree["log_likelihood"]["X"].stack(entry=("feature", "observation"))
        ll = ll.dropna("entry", how="all").reset_index("entry", drop=True)
        tree["log_likelihood"] = xr.DataTree(xr.Dataset({"X": ll}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Draws from q are independent: relative efficiency 1.
        elpd = loo(tree, var_name="X", reff=1.0, pointwise=True)
    for w in caught:
        if "Pareto" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return elpd


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
    bcv_folds: tuple[int, int] = (2, 2),
    heldout_restarts: int = 5,
    evidence_restarts: int = 10,
    loo_draws: int = 400,
    max_iter: int = 2000,
    tol: float = 1e-5,
    dtype="float32",
    restart_batch: int | None = None,
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
    criteria : sequence of str
        Criteria to compute besides the fit, any of:

        * ``"stability"``: consensus clustering and silhouette of the restarts;
        * ``"heldout"``: entry-wise K-fold held-out log density;
        * ``"bcv"``: bi-cross-validated held-out log density (row and column
          blocks, :func:`bcv_log_density`);
        * ``"elbo"``: the best variational bound + log r! (Poisson or Gaussian
          likelihood, closed-form engines);
        * ``"loo"``: PSIS-LOO (ArviZ) of the variational draws, with Pareto-k
          diagnostics (see the warning below);
        * ``"ard"``: the effective rank of an ARD fit started at
          ``max(ranks)`` (:func:`fit_ard`), reported beside the table.

        For ``"elbo"`` and ``"loo"``, flat priors are replaced by
        :func:`default_evidence_priors` (VI needs proper priors).
    n_folds : int, default 5
        Folds of entry-wise cross-validation.
    bcv_folds : (int, int), default (2, 2)
        Row and column folds of bi-cross-validation.
    heldout_restarts : int, default 5
        Restarts of each held-out fit (entry-wise folds and BCV blocks).
    evidence_restarts : int, default 10
        Restarts of each variational fit and of the ARD fit.
    loo_draws : int, default 400
        Draws from the variational approximation for PSIS-LOO.
    max_iter, tol, dtype
        Settings of the MAP fits (see :func:`~bayesnmf.fit_map`). float32 is
        the default here; criteria are computed in float64.
    restart_batch : int, optional
        Restarts per compiled call. By default all of them on an accelerator;
        on a CPU as many as keep ``restart_batch * n_features * n_samples``
        under 2**17 entries, since a batched loop runs until its slowest
        restart converges and a large batch falls out of the cache. Every
        batch has the same size, so each rank compiles once.
    allow_nan : bool, default False
        Treat NaN entries of X as missing.
    progress : bool, default False
        Show a progress bar over ranks.

    Returns
    -------
    RankSurvey
        Table columns, present when their criterion was asked for:

        * ``neg_loglik``: :math:`-\\log p(X \\mid WH)` of the best restart;
          ``divergence``: its β-divergence, the loss without the data constant
          (half the squared Frobenius norm for Gaussian noise, generalised KL
          for Poisson, Itakura-Saito for gamma noise);
          ``restarts_converged``: fraction of restarts that met ``tol``;
        * ``cophenetic``, ``dispersion``, ``pac``, ``silhouette_mean``,
          ``silhouette_min``;
        * ``heldout_lpd`` and ``heldout_se`` (sum over entries and its
          standard error), ``heldout_lpd_per_entry``, ``heldout_diff`` and
          ``heldout_diff_se`` (paired difference from the best rank);
        * ``bcv_lpd``, ``bcv_se``, ``bcv_lpd_per_entry``, ``bcv_diff``,
          ``bcv_diff_se``: the same for bi-cross-validation;
        * ``elbo``: the best ELBO + log r!;
        * ``loo_elpd``, ``loo_se``, ``loo_p`` and ``loo_khat_bad`` (fraction
          of entries whose Pareto k exceeds ArviZ's threshold
          :math:`\\min(1 - 1/\\log_{10} S, 0.7)`).

    Warns
    -----
    ConvergenceWarning
        With ``"loo"``, when Pareto k is high for some entries; the warning
        lists the count per rank.

    Warnings
    --------
    The ``"loo"`` columns use draws from the variational approximation, not
    from the posterior. Mean-field draws are narrower than the posterior, so
    PSIS often reports many high Pareto k and the estimate is then unreliable
    (``ARVIZ.md``). Treat them as a diagnostic; decide with held-out evidence.

    Notes
    -----
    Rule for the recommendation: among ranks whose components agree across
    restarts (minimum cluster silhouette >= 0.5; all ranks without
    ``"stability"``), take the smallest rank whose held-out log density
    (entry-wise, else BCV) is within one standard error of the best, the
    standard error being that of the paired difference. Without held-out
    evidence: among those ranks with cophenetic correlation >= 0.95, the
    largest before the cophenetic correlation begins to fall (drops by more
    than 0.005; Brunet et al. 2004). Then the largest ELBO, then the largest
    PSIS-LOO elpd. The cophenetic correlation measures how crisply samples
    cluster, which mixtures of components lower at every rank, so it does not
    filter ranks for the held-out rule. ARD's effective rank is reported
    beside the table and does not enter the rule.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesnmf.selection import rank_survey
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(rng.gamma(1.0, 1.0, (30, 2)) @ rng.gamma(1.0, 30.0, (2, 20)))
    >>> survey = rank_survey(X, [1, 2, 3], n_restarts=10, criteria=("heldout",))
    >>> survey.table.columns[:2].tolist()
    ['neg_loglik', 'divergence']
    """
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    if isinstance(ranks, (int, np.integer)):
        ranks = [ranks]
    ranks = sorted({check_rank(r) for r in ranks})
    if not ranks:
        raise ValueError("ranks: expected at least one rank.")
    if max(ranks) > min(data.shape):
        raise ValueError(
            f"ranks: expected ranks <= min(n_features, n_samples) = {min(data.shape)}, "
            f"got {max(ranks)}."
        )
    if isinstance(criteria, str):
        criteria = (criteria,)
    criteria = tuple(criteria)
    unknown = set(criteria) - set(CRITERIA)
    if unknown:
        raise ValueError(
            f"criteria: expected a subset of {CRITERIA}, got {sorted(unknown)}."
        )
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    if "stability" in criteria and n_restarts < 2:
        raise ValueError("n_restarts: stability criteria need at least 2 restarts.")
    heldout_restarts = check_positive_int(heldout_restarts, "heldout_restarts")
    evidence_restarts = check_positive_int(evidence_restarts, "evidence_restarts")
    loo_draws = check_positive_int(loo_draws, "loo_draws", minimum=10)
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol", allow_zero=True)
    if "heldout" in criteria:
        n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
    if "bcv" in criteria:
        h, l_ = _check_bcv_folds(bcv_folds, data.shape, max(ranks))
    likelihood = Poisson() if likelihood is None else likelihood
    prior_W = Flat() if prior_W is None else prior_W
    prior_H = Flat() if prior_H is None else prior_H
    model_max = NMFModel(max(ranks), likelihood, prior_W, prior_H)  # checks types

    rows, consensus, fits, loo_results = [], {}, {}, {}
    heldout = {"heldout": {}, "bcv": {}}
    iterator = ranks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ranks, desc="ranks", leave=False)
    for r in iterator:
        model = model_max.with_rank(r)
        fit = fit_restarts(data, model, n_restarts=n_restarts,
                           seed=_rank_seed(seed, r, 0), batch=restart_batch,
                           max_iter=max_iter, tol=tol, dtype=dtype)
        fits[r] = fit
        neg_loglik, divergence = _best_fit_loss(data, fit)
        row = {"rank": r, "neg_loglik": neg_loglik, "divergence": divergence,
               "restarts_converged": float(np.mean(fit.restarts["converged"]))}
        if "stability" in criteria:
            C = consensus_matrix(fit.restarts["H_raw"])
            consensus[r] = C
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row["cophenetic"] = cophenetic_correlation(C)
            row["dispersion"] = dispersion(C)
            row["pac"] = pac(C)
            sil = silhouette_stability(fit.restarts["W_raw"],
                                       seed=_rank_seed(seed, r, 1))
            row["silhouette_mean"] = sil.average
            row["silhouette_min"] = sil.minimum
        if "heldout" in criteria:
            lpd = heldout_log_density(
                data, model, n_folds=n_folds, n_restarts=heldout_restarts,
                seed=_rank_seed(seed, 0, 2), restart_batch=restart_batch,
                max_iter=max_iter, tol=tol, dtype=dtype,
            )
            row.update(_pointwise_columns("heldout", lpd, heldout["heldout"], r))
        if "bcv" in criteria:
            lpd = bcv_log_density(
                data, model, n_row_folds=h, n_col_folds=l_,
                n_restarts=heldout_restarts, seed=_rank_seed(seed, 0, 5),
                restart_batch=restart_batch, max_iter=max_iter, tol=tol,
                fold_in_iter=max_iter, dtype=dtype,
            )
            row.update(_pointwise_columns("bcv", lpd, heldout["bcv"], r))
        if "elbo" in criteria or "loo" in criteria:
            vmodel = _evidence_model(data, r, likelihood, prior_W, prior_H)
            vfit = _variational_fit(
                data, vmodel, evidence_restarts, _rank_seed(seed, r, 3), max_iter,
                num_draws=loo_draws if "loo" in criteria else 0,
                need_elbo="elbo" in criteria,
            )
            if "elbo" in criteria:
                row["elbo"] = -vfit.objective + math.lgamma(r + 1)
            if "loo" in criteria:
                elpd = _psis_loo(data, vfit)
                loo_results[r] = elpd
                k = np.asarray(elpd.pareto_k).ravel()
                row["loo_elpd"] = float(elpd.elpd)
                row["loo_se"] = float(elpd.se)
                row["loo_p"] = float(elpd.p)
                row["loo_khat_bad"] = float(np.mean(k > elpd.good_k))
        rows.append(row)

    table = pd.DataFrame(rows).set_index("rank")
    for prefix, points in heldout.items():
        if points:
            _paired_differences(table, prefix, points)
    if loo_results:
        _warn_pareto(loo_results)
    ard = None
    if "ard" in criteria:
        ard = fit_ard(data, max(ranks), likelihood=likelihood,
                      n_restarts=evidence_restarts, seed=_rank_seed(seed, 0, 4),
                      restart_batch=restart_batch, dtype=dtype, warn=False)
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
            "criteria": list(criteria), "n_folds": n_folds,
            "bcv_folds": tuple(bcv_folds), "heldout_restarts": heldout_restarts,
            "evidence_restarts": evidence_restarts, "loo_draws": loo_draws,
            "max_iter": max_iter, "tol": tol, "dtype": str(np.dtype(dtype)),
            "restart_batch": restart_batch,
        },
        ard=ard,
        loo=loo_results,
    )


def _check_bcv_folds(bcv_folds, shape, max_rank: int) -> tuple[int, int]:
    try:
        h, l_ = bcv_folds
    except (TypeError, ValueError):
        raise TypeError(
            f"bcv_folds: expected a pair (row folds, column folds), got {bcv_folds!r}."
        ) from None
    h = check_positive_int(h, "bcv_folds", minimum=2)
    l_ = check_positive_int(l_, "bcv_folds", minimum=2)
    if h > shape[0] or l_ > shape[1]:
        raise ValueError(
            f"bcv_folds: expected at most {shape} folds (rows, columns), got {(h, l_)}."
        )
    limit = bcv_max_rank(shape, h, l_)
    if max_rank > limit:
        raise ValueError(
            f"ranks: bi-cross-validation with {h} x {l_} folds fits ranks up to "
            f"{limit} (the size of the smallest held-in block), got {max_rank}. Use "
            "smaller ranks or more folds."
        )
    return h, l_


def _pointwise_columns(prefix: str, lpd: np.ndarray, store: dict, rank: int) -> dict:
    pts = lpd[np.isfinite(lpd)]
    store[rank] = pts
    return {
        f"{prefix}_lpd": float(pts.sum()),
        f"{prefix}_se": float(np.sqrt(pts.size) * pts.std(ddof=1)),
        f"{prefix}_lpd_per_entry": float(pts.mean()),
    }


def _paired_differences(table: pd.DataFrame, prefix: str, points: dict) -> None:
    # Paired comparison with the best rank, as ArviZ's compare does for LOO.
    best = max(points, key=lambda r: points[r].sum())
    for r, pts in points.items():
        diff = pts - points[best]
        table.loc[r, f"{prefix}_diff"] = float(diff.sum())
        table.loc[r, f"{prefix}_diff_se"] = float(np.sqrt(diff.size) * diff.std(ddof=1))


def _warn_pareto(loo_results: dict) -> None:
    counts = {}
    for r, elpd in loo_results.items():
        k = np.asarray(elpd.pareto_k).ravel()
        bad = int(np.sum(k > elpd.good_k))
        if bad:
            counts[r] = (bad, k.size, float(elpd.good_k))
    if not counts:
        return
    listing = "; ".join(f"rank {r}: {bad} of {n} entries" for r, (bad, n, _)
                        in counts.items())
    good_k = next(iter(counts.values()))[2]
    warnings.warn(
        f"PSIS-LOO: Pareto k above {good_k:.2f} for {listing}. These draws come "
        "from the variational approximation, not from the posterior, and "
        "mean-field draws are narrower than the posterior, so high k are expected "
        "and loo_elpd is unreliable there; compare ranks with the held-out "
        "criteria ('heldout', 'bcv') instead.",
        ConvergenceWarning,
        stacklevel=3,
    )


def _best_fit_loss(data, fit: NMFResult) -> tuple[float, float]:
    """``-log p(X | WH)`` and the β-divergence of the best restart, in float64."""
    import jax.numpy as jnp

    from .._precision import precision_scope

    lik = fit.model.likelihood
    with precision_scope(np.float64):
        X = jnp.asarray(data.X)
        M = None if data.mask is None else jnp.asarray(data.mask)
        params = {k: jnp.asarray(v) for k, v in fit.params.items()}
        W, H = jnp.asarray(fit.W_raw), jnp.asarray(fit.H_raw)
        loss = lik.loss(X, M, W, H, params)
        neg_loglik = float(loss + lik.data_constant(X, M, params))
        if lik.kind == "gaussian":
            divergence = 0.5 * float(lik.rss(X, M, W, H))
        elif lik.kind == "gamma":
            divergence = float(loss) / float(lik._alpha(params))
        else:
            divergence = float(loss)
    return neg_loglik, divergence


STABLE_COPHENETIC = 0.95
STABLE_SILHOUETTE = 0.5
#: Drop of the cophenetic correlation that counts as "beginning to fall".
COPHENETIC_DROP = 0.005

_HELDOUT_NAMES = {"heldout": "held-out log density",
                  "bcv": "bi-cross-validated log density"}


def _recommend(table: pd.DataFrame) -> tuple[int | None, str]:
    ranks = list(table.index)
    has_stab = "silhouette_min" in table
    stable = ranks
    if has_stab:
        # Rank 1 has nothing to disagree on (its silhouette is undefined).
        sil = table["silhouette_min"].fillna(1.0)
        stable = [r for r in ranks if sil[r] >= STABLE_SILHOUETTE]
    for prefix, what in _HELDOUT_NAMES.items():
        if f"{prefix}_lpd" in table:
            return _recommend_heldout(table, prefix, what, stable, has_stab)
    if has_stab:
        coph = table["cophenetic"]
        candidates = [r for r in stable if np.isfinite(coph[r])
                      and coph[r] >= STABLE_COPHENETIC]
        if not candidates:
            return None, (
                "No rank met the stability thresholds (min silhouette >= "
                f"{STABLE_SILHOUETTE}, cophenetic >= {STABLE_COPHENETIC})."
            )
        rec = candidates[0]
        for r in candidates[1:]:
            if coph[r] >= coph[rec] - COPHENETIC_DROP:
                rec = r
            else:
                break
        return rec, (
            f"Rank {rec}: the largest rank before the cophenetic correlation begins "
            f"to fall (by more than {COPHENETIC_DROP}; Brunet et al. 2004), "
            f"{coph[rec]:.4f}, among the ranks whose restarts agree (min silhouette "
            f">= {STABLE_SILHOUETTE}, cophenetic >= {STABLE_COPHENETIC}: "
            f"{candidates})."
        )
    if "elbo" in table:
        rec = int(table["elbo"].idxmax())
        return rec, f"Rank {rec}: the largest ELBO + log r! ({table['elbo'][rec]:.1f})."
    if "loo_elpd" in table:
        rec = int(table["loo_elpd"].idxmax())
        return rec, (
            f"Rank {rec}: the largest PSIS-LOO elpd ({table['loo_elpd'][rec]:.1f}), "
            "from variational draws; check loo_khat_bad before trusting it."
        )
    return None, "No criterion to choose a rank was computed."


def _recommend_heldout(table, prefix, what, stable, has_stab):
    ranks = list(table.index)
    pool = stable or ranks
    lpd = table.loc[pool, f"{prefix}_lpd"]
    best = int(lpd.idxmax())
    # Standard error of each rank's difference from the best, paired over
    # entries (the difference to the overall best when that is in the pool).
    diff = lpd - lpd[best]
    paired = best == int(table[f"{prefix}_lpd"].idxmax())
    se = table.loc[pool, f"{prefix}_diff_se" if paired else f"{prefix}_se"]
    rec = min(r for r in pool if diff[r] >= -se[r] or r == best)
    where = (
        "among the ranks whose components agree across restarts (min silhouette "
        f">= {STABLE_SILHOUETTE}: {stable})" if has_stab and stable
        else "among all ranks (none met the stability threshold)" if has_stab
        else "among all ranks"
    )
    if rec == best:
        return rec, (
            f"Rank {rec}: the best {what} ({lpd[best]:.1f}) {where}; no smaller "
            "rank comes within one standard error of it."
        )
    return rec, (
        f"Rank {rec}: the smallest rank {where} whose {what} ({lpd[rec]:.1f}) is "
        f"within one standard error ({se[rec]:.1f}) of the best, {lpd[best]:.1f} "
        f"at rank {best}."
    )
