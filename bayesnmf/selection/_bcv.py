r"""Bi-cross-validation of a rank (Owen and Perry 2009), with NMF fits.

The rows are split at random into ``h`` folds and the columns into ``l``
folds. For held-out rows :math:`I` and columns :math:`J`, write

.. math::

    X = \begin{pmatrix} A & B \\ C & D \end{pmatrix}, \qquad
    A = X_{IJ},\; B = X_{IJ^c},\; C = X_{I^cJ},\; D = X_{I^cJ^c}.

The model is fitted to :math:`D \approx W_D H_D` alone; the held-out rows are
folded in with :math:`H_D` held fixed, :math:`W_I = \arg\max p(B \mid W H_D)`,
and the held-out columns with :math:`W_D` held fixed,
:math:`H_J = \arg\max p(C \mid W_D H)` (both with the model's priors, by
:func:`~bayesnmf.fit_map` with ``fixed=``); then :math:`A` is predicted by
:math:`\hat A = W_I H_J` and scored by its log density under the likelihood,
with the likelihood parameters (for example the noise variance) fitted on
:math:`D`. Every entry lies in exactly one block :math:`I \times J`, so the
:math:`hl` blocks give one held-out log density per entry (``METHODS.md``
§5.5). The rows and columns of :math:`A` never touch the fit of :math:`D`.

References
----------
Owen, A. B. and Perry, P. O. (2009). Bi-cross-validation of the SVD and the
nonnegative matrix factorization. Annals of Applied Statistics 3(2), 564-594.
https://doi.org/10.1214/08-AOAS227
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import as_nmf_data, check_positive_int, check_seed
from ..map import fit_map
from ..model import NMFModel
from ._restarts import fit_restarts

__all__ = ["bcv_folds", "bcv_log_density"]


def derived_seed(seed: int, *stream: int) -> int:
    """A seed for one independent stream of a seeded computation."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0] >> 1)


def bcv_folds(shape, n_row_folds: int = 2, n_col_folds: int = 2,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rows and columns at random into nearly equal folds.

    Parameters
    ----------
    shape : tuple of int
        ``(n_features, n_samples)``.
    n_row_folds, n_col_folds : int, default 2
        Number of row folds ``h`` and column folds ``l``.
    seed : int, default 0
        Seed of the permutations.

    Returns
    -------
    row_fold : ndarray of shape (n_features,)
        Fold of each row, in ``0 .. n_row_folds - 1``.
    col_fold : ndarray of shape (n_samples,)
        Fold of each column.
    """
    m, n = (int(v) for v in shape)
    h = _check_folds(n_row_folds, "n_row_folds", m, "rows")
    l_ = _check_folds(n_col_folds, "n_col_folds", n, "columns")
    rng = np.random.default_rng(check_seed(seed))
    row_fold = np.empty(m, dtype=np.int64)
    row_fold[rng.permutation(m)] = np.arange(m) % h
    col_fold = np.empty(n, dtype=np.int64)
    col_fold[rng.permutation(n)] = np.arange(n) % l_
    return row_fold, col_fold


def _check_folds(value, name: str, size: int, what: str) -> int:
    value = check_positive_int(value, name, minimum=2)
    if value > size:
        raise ValueError(
            f"{name}: expected at most {size} folds (the number of {what}), got "
            f"{value}."
        )
    return value


def bcv_max_rank(shape, n_row_folds: int = 2, n_col_folds: int = 2) -> int:
    """Largest rank the smallest held-in block ``D`` can carry."""
    m, n = shape
    rows = m - math.ceil(m / n_row_folds)
    cols = n - math.ceil(n / n_col_folds)
    return min(rows, cols)


def bcv_log_density(
    X,
    model: NMFModel,
    *,
    mask=None,
    n_row_folds: int = 2,
    n_col_folds: int = 2,
    n_restarts: int = 5,
    seed: int = 0,
    max_iter: int = 2000,
    tol: float = 1e-5,
    fold_in_iter: int = 2000,
    dtype="float64",
    restart_batch: int | None = None,
    allow_nan: bool = False,
) -> np.ndarray:
    r"""Pointwise held-out log density by bi-cross-validation.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data.
    model : NMFModel
        Rank, likelihood and priors. The rank must fit the held-in block
        :math:`D` (at most its number of rows and of columns).
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed. Unobserved entries are neither fitted nor scored.
    n_row_folds, n_col_folds : int, default 2
        Folds ``h`` of the rows and ``l`` of the columns; 2 x 2 (half the rows
        and half the columns held out at a time) is the common choice.
    n_restarts : int, default 5
        Restarts of each fit of :math:`D` (the fold-ins are convex in the
        factor they fit and start from one point).
    seed : int, default 0
        Seed of the folds and of the restarts; the folds do not depend on the
        rank, so that ranks are compared on the same split.
    max_iter, tol, dtype
        Settings of the MAP fits of :math:`D` (see :func:`~bayesnmf.fit_map`).
    fold_in_iter : int, default 2000
        Sweeps of each fold-in, run in full (``tol=0``): a relative tolerance
        stops the multiplicative updates of these convex problems early, far
        enough from the optimum to bias the score of small-noise data.
    restart_batch : int, optional
        Restarts per compiled call in the fits of :math:`D`
        (see :func:`rank_survey`).
    allow_nan : bool, default False
        Treat NaN entries of X as missing.

    Returns
    -------
    ndarray of shape (n_features, n_samples)
        :math:`\log p(x_{ij} \mid \hat a_{ij}, \hat\theta_D)` of every entry,
        predicted from the block fit that held it out; NaN where X is
        unobserved. Sum it for the BCV score (larger is better).

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> from bayesnmf.selection import bcv_log_density
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(rng.gamma(1.0, 1.0, (30, 2)) @ rng.gamma(1.0, 30.0, (2, 20)))
    >>> lpd = bcv_log_density(X, bn.NMFModel(2, bn.Poisson()), n_restarts=2)
    >>> lpd.shape
    (30, 20)
    """
    import jax.numpy as jnp

    from .._precision import precision_scope

    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    if not isinstance(model, NMFModel):
        raise TypeError(f"model: expected an NMFModel, got {model!r}.")
    seed = check_seed(seed)
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    fold_in_iter = check_positive_int(fold_in_iter, "fold_in_iter")
    row_fold, col_fold = bcv_folds(data.shape, n_row_folds, n_col_folds, seed)
    limit = bcv_max_rank(data.shape, n_row_folds, n_col_folds)
    if model.rank > limit:
        raise ValueError(
            f"model: rank {model.rank} is larger than the smallest held-in block of "
            f"bi-cross-validation with {n_row_folds} x {n_col_folds} folds allows "
            f"({limit}); use a smaller rank or more folds."
        )

    observed = np.ones(data.shape) if data.mask is None else data.mask
    pointwise = np.full(data.shape, np.nan)
    lik = model.likelihood
    for a in range(n_row_folds):
        rows = row_fold == a
        for b in range(n_col_folds):
            cols = col_fold == b
            blocks = {
                name: (np.ix_(r, c), observed[np.ix_(r, c)])
                for name, r, c in (("D", ~rows, ~cols), ("B", rows, ~cols),
                                   ("C", ~rows, cols))
            }
            for name, (_, M) in blocks.items():
                _check_block(M, name, n_row_folds, n_col_folds)

            def block(name):
                idx, M = blocks[name]
                return data.X[idx], (None if M.all() else M)

            # Fit D alone, then fold in the held-out rows and columns.
            X_D, M_D = block("D")
            fit_D = fit_restarts(as_nmf_data(X_D, mask=M_D), model,
                                 n_restarts=n_restarts,
                                 seed=derived_seed(seed, model.rank, a, b),
                                 batch=restart_batch, max_iter=max_iter, tol=tol,
                                 dtype=dtype)
            W_D, H_D = fit_D.W_raw, fit_D.H_raw

            X_B, M_B = block("B")
            W_start = np.broadcast_to(W_D.mean(axis=0), (int(rows.sum()), model.rank))
            W_I = fit_map(X_B, model, mask=M_B, init="custom", W_init=W_start,
                          H_init=H_D, fixed="H", max_iter=fold_in_iter, tol=0.0,
                          dtype=dtype, warn=False).W_raw

            X_C, M_C = block("C")
            H_start = np.broadcast_to(H_D.mean(axis=1)[:, None],
                                      (model.rank, int(cols.sum())))
            H_J = fit_map(X_C, model, mask=M_C, init="custom", W_init=W_D,
                          H_init=H_start, fixed="W", max_iter=fold_in_iter, tol=0.0,
                          dtype=dtype, warn=False).H_raw

            idx_A = np.ix_(rows, cols)
            with precision_scope(np.float64):
                params = {k: jnp.asarray(v) for k, v in fit_D.params.items()}
                lp = np.asarray(lik.log_prob(jnp.asarray(data.X[idx_A]),
                                             jnp.asarray(floor_mean(W_I @ H_J)),
                                             params))
            pointwise[idx_A] = np.where(observed[idx_A] > 0, lp, np.nan)
    return pointwise


def floor_mean(WH: np.ndarray) -> np.ndarray:
    """Floor a predicted mean at sqrt(tiny) (as the MAP loss does).

    A prediction of exactly 0 under an observed count would score ``-inf`` and
    swamp every sum; the floor makes it a large finite penalty instead.
    """
    return np.maximum(WH, math.sqrt(np.finfo(np.float64).tiny))


def _check_block(M: np.ndarray, name: str, h: int, l_: int) -> None:
    empty_rows = int((M.sum(axis=1) == 0).sum())
    empty_cols = int((M.sum(axis=0) == 0).sum())
    if empty_rows or empty_cols:
        raise ValueError(
            f"mask: with {h} x {l_} bi-cross-validation folds, block {name} has "
            f"{empty_rows} row(s) and {empty_cols} column(s) with no observed entry, "
            "so their factors cannot be fitted. Use fewer folds, or entry-wise "
            "hold-out (criterion 'heldout')."
        )
