r"""Rank from one fit: automatic relevance determination (Tan and Févotte 2013).

:func:`fit_ard` fits an over-specified rank with an :class:`~bayesnmf.ARD`
prior by MAP and reads the effective rank off the relevances. Component
:math:`k` has a relevance :math:`\lambda_k` shared by column :math:`w_k` of W
and row :math:`h_k` of H; at the MAP estimate

.. math::

    \lambda_k = \frac{f(w_k) + f(h_k) + b}{c}, \qquad
    B = \frac{b}{c}, \qquad
    \text{relevance}_k = \frac{\lambda_k - B}{B} = \frac{f(w_k) + f(h_k)}{b},

with :math:`f` the L1 norm (exponential penalty) or half the squared L2 norm
(half-normal penalty), :math:`b` the prior's ``rate`` and
:math:`c = \kappa(m + n) + a + 1` (``METHODS.md`` §4). A pruned component has
:math:`w_k, h_k \to 0`, so :math:`\lambda_k` sinks to its floor :math:`B` and
its relevance to 0. Components whose relevance exceeds ``threshold`` are
active; their number is the effective rank.

References
----------
Tan, V. Y. F. and Févotte, C. (2013). Automatic relevance determination in
nonnegative matrix factorization with the β-divergence. IEEE Transactions on
Pattern Analysis and Machine Intelligence 35(7), 1592-1605.
https://doi.org/10.1109/TPAMI.2012.240
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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
from ..likelihoods import Likelihood, Poisson
from ..model import NMFModel
from ..priors import ARD, ard_defaults
from ..result import NMFResult
from ._restarts import fit_restarts

__all__ = ["ARDResult", "fit_ard", "relevance_table"]


@dataclass(frozen=True)
class ARDResult:
    """The effective rank found by :func:`fit_ard`.

    Attributes
    ----------
    fit : NMFResult
        The MAP fit at ``max_rank`` (all restarts); its components are in the
        order the fit left them, pruned ones included.
    relevance : pandas.DataFrame
        One row per component, indexed by its name in ``fit`` (``"C1"``, ...),
        sorted by decreasing relevance. Columns: ``relevance``
        (:math:`(\\lambda_k - B)/B`), ``lambda`` (:math:`\\lambda_k`),
        ``active`` (relevance above ``threshold``) and ``share`` (the
        component's share of the fitted total, :math:`\\sum_{ij} w_{ik}h_{kj} /
        \\sum_{ij}(WH)_{ij}`).
    effective_rank : int
        Number of active components; 0 when every component was pruned.
    message : str
        What happened, in words.
    threshold : float
        Relevance above which a component counts as active.
    prior : ARD
        The prior that was fitted (with its data-scaled hyperparameters).
    """

    fit: NMFResult
    relevance: pd.DataFrame
    effective_rank: int
    message: str
    threshold: float
    prior: ARD

    @property
    def active_components(self) -> list[str]:
        """Names of the active components, most relevant first."""
        return list(self.relevance.index[self.relevance["active"]])

    @property
    def all_pruned(self) -> bool:
        """Whether ARD switched off every component."""
        return self.effective_rank == 0

    def summary(self) -> str:
        """The message and the relevance table as text."""
        table = self.relevance.to_string(float_format=lambda v: f"{v:.4g}")
        return (
            f"ARD NMF: {self.prior.describe()}, max rank {self.fit.rank}\n"
            f"{table}\n\n{self.message}"
        )

    def __repr__(self) -> str:
        return (
            f"ARDResult(effective_rank={self.effective_rank}, "
            f"max_rank={self.fit.rank}, threshold={self.threshold:g})"
        )


def relevance_table(fit: NMFResult, threshold: float = 1e-3) -> pd.DataFrame:
    """Relevance, λ, activity and share of every component of an ARD fit.

    Parameters
    ----------
    fit : NMFResult
        A MAP fit of a model with an :class:`~bayesnmf.ARD` prior.
    threshold : float, default 1e-3
        Relevance above which a component is active.

    Returns
    -------
    pandas.DataFrame
        See :attr:`ARDResult.relevance`.
    """
    prior = fit.model.ard
    if prior is None:
        raise ValueError(
            "fit: expected a fit of a model with an ARD prior, got "
            f"{fit.model.describe()}."
        )
    W, H = np.asarray(fit.W_raw, np.float64), np.asarray(fit.H_raw, np.float64)
    m, n = W.shape[0], H.shape[1]
    if prior.penalty == "exponential":
        norms = W.sum(axis=0) + H.sum(axis=1)
    else:
        norms = 0.5 * ((W * W).sum(axis=0) + (H * H).sum(axis=1))
    # (λ - B) / B written without the cancellation: λ = (f + b) / c, B = b / c.
    relevance = norms / prior.rate
    lam = (norms + prior.rate) / (prior.kappa * (m + n) + prior.shape + 1.0)
    mass = W.sum(axis=0) * H.sum(axis=1)
    total = mass.sum()
    share = mass / total if total > 0 else np.zeros_like(mass)
    table = pd.DataFrame(
        {
            "relevance": relevance,
            "lambda": lam,
            "active": relevance > threshold,
            "share": share,
        },
        index=pd.Index(fit.component_names, name="component"),
    )
    return table.sort_values("relevance", ascending=False, kind="stable")


def fit_ard(
    X,
    max_rank: int,
    *,
    likelihood: Likelihood | None = None,
    penalty: str = "exponential",
    shape: float | None = None,
    rate: float | None = None,
    mask=None,
    n_restarts: int = 10,
    seed: int = 0,
    threshold: float = 1e-3,
    max_iter: int = 5000,
    tol: float = 1e-6,
    dtype="float64",
    restart_batch: int | None = None,
    allow_nan: bool = False,
    progress: bool = False,
    warn: bool = True,
) -> ARDResult:
    r"""Estimate the rank with automatic relevance determination NMF.

    Fits ``NMFModel(max_rank, likelihood, prior, prior)`` by MAP, where
    ``prior`` is one :class:`~bayesnmf.ARD` prior shared by W and H, and
    counts the components that keep a relevance above ``threshold``.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data; labels are kept.
    max_rank : int
        Number of components to start from; more than the data need.
    likelihood : Likelihood, default Poisson()
        Noise model of X given WH.
    penalty : {"exponential", "halfnormal"}
        Prior of the entries of W and H given the relevance: L1 or L2.
    shape : float, optional
        :math:`a` of the inverse-gamma prior on the relevances; smaller values
        prune more. Default :math:`\log(n_\text{features} + n_\text{samples})`.
    rate : float, optional
        :math:`b`; default Tan and Févotte's data-scaled choice
        (:func:`~bayesnmf.ard_defaults`). Larger values prune less.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed.
    n_restarts : int, default 10
        Random starts, batched; the one with the lowest objective is kept.
    seed : int, default 0
        Seed of the starts.
    threshold : float, default 1e-3
        A component is active when its relevance :math:`(\lambda_k - B)/B`
        exceeds this. Pruned components decay towards 0, far below it.
    max_iter, tol, dtype
        Settings of the MAP fit (see :func:`~bayesnmf.fit_map`); the tolerance
        is tighter than ``fit_map``'s default because pruned components decay
        slowly once the objective has nearly settled.
    restart_batch : int, optional
        Restarts per compiled call (see
        :func:`~bayesnmf.selection.rank_survey`).
    allow_nan : bool, default False
        Treat NaN entries of X as missing.
    progress : bool, default False
        Show a progress bar over sweeps.
    warn : bool, default True
        Emit a :class:`~bayesnmf.ConvergenceWarning` when the best restart hits
        ``max_iter`` before meeting ``tol``.

    Returns
    -------
    ARDResult
        The fit, the relevance table, the effective rank and a message. When
        every component is pruned, ``effective_rank`` is 0 and the message
        says so; no exception is raised.

    Notes
    -----
    The effective rank depends on the hyperparameters: it is a property of the
    model as much as of the data. Check that it holds for a range of
    ``shape`` (``METHODS.md`` §4).

    The exponential (L1) penalty switches surplus components off: their
    relevance decays to 0. The half-normal (L2) penalty, whose gradient
    vanishes at 0, may only shrink them: on count data they keep a relevance
    of order 0.1-1 and a fraction of a percent of the fit, and count as
    active. Read the ``relevance`` and ``share`` columns then, or use the
    exponential penalty to estimate the rank.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesnmf.selection import fit_ard
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(rng.gamma(1.0, 1.0, (30, 2)) @ rng.gamma(1.0, 30.0, (2, 20)))
    >>> ard = fit_ard(X, 6, n_restarts=4)
    >>> ard.relevance.columns.tolist()
    ['relevance', 'lambda', 'active', 'share']
    """
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    max_rank = check_rank(max_rank)
    likelihood = Poisson() if likelihood is None else likelihood
    if not isinstance(likelihood, Likelihood):
        raise TypeError(
            "likelihood: expected a bayesnmf likelihood such as Poisson() or "
            f"Gaussian(), got {likelihood!r}."
        )
    if penalty not in ("exponential", "halfnormal"):
        raise ValueError(
            f"penalty: expected 'exponential' or 'halfnormal', got {penalty!r}."
        )
    threshold = check_positive(threshold, "threshold")
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    if shape is not None:
        shape = check_positive(shape, "shape")
    if rate is None:
        prior = ard_defaults(_observed(data), max_rank, penalty, shape)
    else:
        rate = check_positive(rate, "rate")
        a = float(np.log(sum(data.shape))) if shape is None else shape
        prior = ARD(penalty, a, rate)

    model = NMFModel(max_rank, likelihood, prior, prior)
    fit = fit_restarts(data, model, n_restarts=n_restarts, seed=check_seed(seed),
                       batch=restart_batch, max_iter=max_iter, tol=tol, dtype=dtype,
                       progress=progress)
    if warn and not fit.converged:
        warnings.warn(
            f"ARD fit did not converge within max_iter={max_iter} sweeps "
            f"(tol={tol:g}); pruned components may not have decayed yet. "
            "Increase max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    table = relevance_table(fit, threshold)
    rank = int(table["active"].sum())
    return ARDResult(fit, table, rank, _message(table, rank, prior, threshold),
                     threshold, prior)


def _observed(data) -> np.ndarray:
    """X with unobserved entries as NaN (so that their mean is not taken)."""
    if data.mask is None:
        return data.X
    return np.where(data.mask > 0, data.X, np.nan)


def _message(table: pd.DataFrame, rank: int, prior: ARD, threshold: float) -> str:
    K = len(table)
    if rank == 0:
        return (
            f"ARD pruned every component: all {K} relevances are at most "
            f"{threshold:g}, so the model explains the data as noise around a "
            "zero mean (effective rank 0). The prior "
            f"({prior.describe()}) is too strong for the signal at this noise "
            "level: increase shape or rate to prune less, or check the "
            "likelihood's scale (a fixed Gaussian noise_scale that is too large "
            "makes every component look like noise)."
        )
    active = table.index[table["active"]]
    top = table.loc[active]
    listing = ", ".join(
        f"{name} ({rel:.3g}, {100 * share:.1f}%)"
        for name, rel, share in zip(active, top["relevance"], top["share"])
    )
    text = (
        f"ARD kept {rank} of {K} components (relevance > {threshold:g}; relevance "
        f"and share of the fit): {listing}."
    )
    if rank == K:
        text += (
            f" No component was pruned: the data may need more than {K}; refit with "
            "a larger max_rank."
        )
    else:
        largest = float(table.loc[~table["active"], "relevance"].max())
        text += f" {K - rank} pruned (largest pruned relevance {largest:.2g})."
    return text
