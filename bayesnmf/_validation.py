"""Input checks and the labelled data container shared by every engine.

Everything here runs in NumPy before any JAX tracing, so that bad input fails
fast with a message that names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NMFData", "as_nmf_data", "check_rank", "check_seed", "check_positive"]


@dataclass(frozen=True)
class NMFData:
    """A non-negative matrix with its labels and observation mask.

    Attributes
    ----------
    X : ndarray of shape (n_features, n_samples)
        The data as float64. Entries that are not observed hold 0.
    mask : ndarray of shape (n_features, n_samples) or None
        1.0 where an entry is observed, 0.0 where it is missing; ``None`` when
        every entry is observed.
    feature_names : list of str
        One label per row of ``X``.
    sample_names : list of str
        One label per column of ``X``.
    """

    X: np.ndarray
    mask: np.ndarray | None
    feature_names: list[str] = field(default_factory=list)
    sample_names: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    @property
    def n_observed(self) -> int:
        """Number of observed entries, ``|Omega|``."""
        return int(self.X.size if self.mask is None else self.mask.sum())


def _labels_from(obj, axis: int, n: int, given, what: str) -> list[str]:
    if given is not None:
        labels = [str(v) for v in given]
        if len(labels) != n:
            raise ValueError(
                f"{what}: expected {n} labels to match X, got {len(labels)}."
            )
        return labels
    index = None
    if hasattr(obj, "index") and hasattr(obj, "columns"):  # pandas DataFrame
        index = obj.index if axis == 0 else obj.columns
    elif hasattr(obj, "obs_names") and hasattr(obj, "var_names"):  # AnnData
        # AnnData is cells x genes; bayesnmf transposes it to genes x cells.
        index = obj.var_names if axis == 0 else obj.obs_names
    if index is not None:
        return [str(v) for v in index]
    prefix = "feature" if axis == 0 else "sample"
    return [f"{prefix}_{i}" for i in range(n)]


def as_nmf_data(
    X,
    *,
    mask=None,
    feature_names=None,
    sample_names=None,
    allow_nan: bool = False,
    name: str = "X",
) -> NMFData:
    """Check ``X`` and wrap it with its labels and mask.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data: a NumPy array, a pandas DataFrame (labels kept), an
        AnnData object (transposed to genes x cells), a bundled
        :class:`~bayesnmf.datasets.Dataset` or an :class:`NMFData`.
    mask : array-like of shape (n_features, n_samples), optional
        Observation mask, 1 (or True) where an entry is observed.
    feature_names, sample_names : sequence of str, optional
        Labels that override those carried by ``X``.
    allow_nan : bool, default False
        Treat NaN entries as missing data and add them to the mask (with a
        warning saying how many). Without it, NaN is an error.
    name : str
        Name of the argument, used in error messages.

    Returns
    -------
    NMFData
    """
    if isinstance(X, NMFData):
        if mask is None and feature_names is None and sample_names is None:
            return X
        mask = X.mask if mask is None else mask
        feature_names = feature_names or X.feature_names
        sample_names = sample_names or X.sample_names
        X = X.X

    if hasattr(X, "to_frame") and hasattr(X, "sample_names") and hasattr(X, "X"):
        X = X.to_frame()  # a bundled bayesnmf.datasets.Dataset
    source = X
    if hasattr(X, "obs_names") and hasattr(X, "var_names") and hasattr(X, "X"):
        values = X.X
        values = values.toarray() if hasattr(values, "toarray") else values
        values = np.asarray(values).T
    elif hasattr(X, "toarray"):  # scipy.sparse
        values = X.toarray()
    else:
        values = X.to_numpy() if hasattr(X, "to_numpy") else X
    try:
        arr = np.asarray(values)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name}: could not convert to an array ({err}).") from err

    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise TypeError(
            f"{name}: expected a numeric matrix, got dtype {arr.dtype}. "
            "Convert text columns (labels) to an index first."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D matrix (n_features, n_samples), got "
            f"{arr.ndim} dimension(s) with shape {arr.shape}."
        )
    m, n = arr.shape
    if m == 0 or n == 0:
        raise ValueError(f"{name}: expected a non-empty matrix, got shape {arr.shape}.")
    arr = arr.astype(np.float64)

    if np.isinf(arr).any():
        i, j = np.argwhere(np.isinf(arr))[0]
        raise ValueError(
            f"{name}: expected finite values, found inf at row {i}, column {j} "
            f"({int(np.isinf(arr).sum())} infinite entries)."
        )
    nan = np.isnan(arr)
    if nan.any() and not allow_nan:
        i, j = np.argwhere(nan)[0]
        raise ValueError(
            f"{name}: found NaN at row {i}, column {j} ({int(nan.sum())} in all). "
            "If these are missing entries, pass allow_nan=True (command line: "
            "--missing) or give a mask."
        )
    if (arr[~nan] < 0).any():
        i, j = np.argwhere(np.where(nan, 0.0, arr) < 0)[0]
        raise ValueError(
            f"{name}: expected non-negative entries, found {arr[i, j]:g} at row "
            f"{i}, column {j} ({int((arr[~nan] < 0).sum())} negative entries)."
        )

    M = None
    if mask is not None:
        M = np.asarray(mask.to_numpy() if hasattr(mask, "to_numpy") else mask)
        if M.shape != arr.shape:
            raise ValueError(
                f"mask: expected shape {arr.shape} to match {name}, got {M.shape}."
            )
        if not (np.issubdtype(M.dtype, np.number) or M.dtype == bool):
            raise TypeError(f"mask: expected booleans or 0/1, got dtype {M.dtype}.")
        M = M.astype(np.float64)
        if not np.isin(M, (0.0, 1.0)).all():
            raise ValueError("mask: expected only 0/1 (or False/True) entries.")
    if nan.any():
        warnings.warn(
            f"{name}: {int(nan.sum())} NaN entries are treated as missing data "
            "and excluded from the likelihood.",
            UserWarning,
            stacklevel=3,
        )
        M = (~nan).astype(np.float64) if M is None else M * (~nan)
        arr = np.where(nan, 0.0, arr)
    if M is not None:
        arr = arr * M  # unobserved entries carry no value
        if M.all():
            M = None
        else:
            empty_rows = np.flatnonzero(M.sum(axis=1) == 0)
            empty_cols = np.flatnonzero(M.sum(axis=0) == 0)
            if empty_rows.size or empty_cols.size:
                what = (
                    f"rows {empty_rows.tolist()}" if empty_rows.size else
                    f"columns {empty_cols.tolist()}"
                )
                raise ValueError(
                    f"mask: {what} have no observed entry, so their factors are "
                    "not identified. Drop them or observe at least one entry."
                )

    observed = arr if M is None else arr[M > 0]
    if not (observed > 0).any():
        raise ValueError(
            f"{name}: every observed entry is zero; there is nothing to factorise."
        )

    return NMFData(
        X=arr,
        mask=M,
        feature_names=_labels_from(source, 0, m, feature_names, "feature_names"),
        sample_names=_labels_from(source, 1, n, sample_names, "sample_names"),
    )


def check_rank(
    rank, shape: tuple[int, int] | None = None, *, init: str = "random"
) -> int:
    """Check that ``rank`` is an integer >= 1 (and fits an SVD-based start)."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank: expected a positive integer, got {rank!r}.")
    rank = int(rank)
    if rank < 1:
        raise ValueError(f"rank: expected an integer >= 1, got {rank}.")
    if shape is not None and init.startswith("nndsvd") and rank > min(shape):
        raise ValueError(
            f"rank: init={init!r} needs rank <= min(n_features, n_samples) = "
            f"{min(shape)}, got {rank}. Use init='random' for larger ranks."
        )
    return rank


def check_seed(seed) -> int:
    """Check that ``seed`` is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed: expected a non-negative integer, got {seed!r}.")
    return int(seed)


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Check a positive (or non-negative) finite scalar hyperparameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number, got {value!r}.")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and np.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}.")
    return value


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Check an integer setting such as ``max_iter`` or ``n_restarts``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}.")
    return int(value)
