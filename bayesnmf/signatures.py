"""Compare NMF components with reference signatures.

Tools to name the columns of a fitted ``W`` of shape ``(n_features, rank)`` after the
columns of a reference matrix, such as the COSMIC mutational signatures from
:func:`bayesnmf.datasets.load_cosmic`, and to put the 96 single-base-substitution
(SBS96) channels in their conventional order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

__all__ = [
    "SBS96_CONTEXTS",
    "cosine_similarity",
    "match_components",
    "sbs96_order",
]

_SUBSTITUTIONS = ("C>A", "C>G", "C>T", "T>A", "T>C", "T>G")
_BASES = "ACGT"

#: The 96 SBS channel labels (``"A[C>A]A"``, ...) in the conventional plotting order:
#: grouped by substitution C>A, C>G, C>T, T>A, T>C, T>G; within each group by the 5'
#: base, then the 3' base, each in the order A, C, G, T.
SBS96_CONTEXTS: tuple[str, ...] = tuple(
    f"{five}[{substitution}]{three}"
    for substitution, five, three in product(_SUBSTITUTIONS, _BASES, _BASES)
)


def _as_matrix(name: str, value: ArrayLike) -> np.ndarray:
    """Return ``value`` as a finite float64 matrix, a 1-D input as one column."""
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D of shape (n_features, n_columns); "
            f"got shape {matrix.shape}."
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} must contain only finite values; found NaN or inf.")
    return matrix


def _unit_columns(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=0)
    # Zero columns stay zero, so their similarity to anything is 0, not NaN.
    return matrix / np.where(norms > 0, norms, 1.0)


def cosine_similarity(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """Cosine similarity between every column of ``A`` and every column of ``B``.

    .. math::

        C_{jk} = \\frac{a_j^\\top b_k}{\\lVert a_j \\rVert \\, \\lVert b_k \\rVert}

    Parameters
    ----------
    A : array_like of shape (n_features, p)
        First set of columns (e.g. a fitted ``W``). A 1-D input is one column.
    B : array_like of shape (n_features, q)
        Second set of columns (e.g. reference signatures). A 1-D input is one column.

    Returns
    -------
    numpy.ndarray of shape (p, q)
        ``C[j, k]`` is the cosine of the angle between ``A[:, j]`` and ``B[:, k]``,
        in [-1, 1] (in [0, 1] for non-negative inputs). A zero column has similarity
        0 with every column.

    Raises
    ------
    ValueError
        If the inputs are not 1-D or 2-D, hold NaN or inf, or have different numbers
        of rows.

    Notes
    -----
    Rows are matched by position. To match labelled rows (for example SBS96
    channels in different orders), align them first, or use :func:`match_components`,
    which aligns data frames by their row labels.

    Examples
    --------
    >>> import numpy as np
    >>> cosine_similarity(np.eye(2), np.array([[1.0], [1.0]])).round(3)
    array([[0.707],
           [0.707]])
    """
    A = _as_matrix("A", A)
    B = _as_matrix("B", B)
    if A.shape[0] != B.shape[0]:
        raise ValueError(
            f"A and B must have the same number of rows (features); got "
            f"{A.shape[0]} and {B.shape[0]}."
        )
    similarity = _unit_columns(A).T @ _unit_columns(B)
    return np.clip(similarity, -1.0, 1.0)


def _align_rows(W: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Reorder the rows of ``W`` to the row labels of ``reference``."""
    for name, frame in (("W", W), ("reference", reference)):
        if not frame.index.is_unique:
            duplicated = frame.index[frame.index.duplicated()].unique().tolist()
            raise ValueError(
                f"The row labels of {name} must be unique to align W with reference; "
                f"duplicated: {duplicated[:5]}."
            )
    missing = reference.index.difference(W.index)
    extra = W.index.difference(reference.index)
    if len(missing) or len(extra):
        raise ValueError(
            "The row labels of W and reference must be the same set to align them; "
            f"{len(missing)} reference labels are missing from W "
            f"(e.g. {missing[:3].tolist()}) and {len(extra)} labels of W are not in "
            f"reference (e.g. {extra[:3].tolist()}). Relabel W's rows, or pass "
            "W.to_numpy() to match rows by position."
        )
    return W.loc[reference.index]


def _names(values: list) -> pd.Series:
    # Object dtype keeps names as given (integers stay integers, None stays None).
    return pd.Series(values, dtype=object)


def match_components(
    W: np.ndarray | pd.DataFrame,
    reference: pd.DataFrame | np.ndarray,
    *,
    one_to_one: bool = True,
) -> pd.DataFrame:
    """Name each column of ``W`` after its most similar column of ``reference``.

    Similarity is the cosine between columns (:func:`cosine_similarity`), which
    ignores the scale of each column.

    Parameters
    ----------
    W : numpy.ndarray or pandas.DataFrame of shape (n_features, rank)
        Components to name, one per column (e.g. a fitted ``W``). Column labels of a
        data frame name the components; otherwise they are numbered from 0.
    reference : pandas.DataFrame or numpy.ndarray of shape (n_features, n_reference)
        Reference signatures, one per column, named by the column labels (e.g.
        :func:`bayesnmf.datasets.load_cosmic`); an array's columns are numbered.
    one_to_one : bool, default True
        If True, assign distinct reference columns so that the total cosine
        similarity is largest (Hungarian algorithm); when ``rank > n_reference``, the
        components left over get no match. If False, each component independently
        gets its best and second-best reference columns, and two components may share
        a match.

    Returns
    -------
    pandas.DataFrame
        One row per column of ``W``, in order, with columns ``component``, ``match``
        (the reference name, ``None`` when unmatched) and ``cosine`` (NaN when
        unmatched). With ``one_to_one=False`` also ``second_match`` and
        ``second_cosine`` (``None`` and NaN when ``reference`` has one column).
        Match columns have object dtype, so names keep their type.

    Raises
    ------
    ValueError
        If the shapes are not compatible, or if both inputs are data frames whose
        row label sets differ.

    Notes
    -----
    When both ``W`` and ``reference`` are data frames, the rows of ``W`` are
    reordered to the row labels of ``reference`` before comparing: this matters for
    SBS96 catalogs, whose channels come in different orders from different tools.
    Otherwise rows are matched by position.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> reference = pd.DataFrame(np.eye(3), columns=["a", "b", "c"])
    >>> match_components(np.eye(3)[:, [2, 0]], reference)
       component match  cosine
    0          0     c     1.0
    1          1     a     1.0
    """
    if isinstance(W, pd.DataFrame) and isinstance(reference, pd.DataFrame):
        W = _align_rows(W, reference)
    component_names = (
        list(W.columns) if isinstance(W, pd.DataFrame) else list(range(np.shape(W)[1]))
    )
    reference_names = (
        list(reference.columns)
        if isinstance(reference, pd.DataFrame)
        else list(range(np.shape(reference)[1]))
    )

    W_values = _as_matrix("W", W)
    reference_values = _as_matrix("reference", reference)
    if W_values.shape[0] != reference_values.shape[0]:
        raise ValueError(
            f"W and reference must have the same number of rows (features); got "
            f"W with {W_values.shape[0]} and reference with "
            f"{reference_values.shape[0]}."
        )
    if reference_values.shape[1] == 0:
        raise ValueError("reference must have at least one column; got none.")
    similarity = cosine_similarity(W_values, reference_values)
    n_components = similarity.shape[0]

    if one_to_one:
        match: list[object] = [None] * n_components
        cosine = np.full(n_components, np.nan)
        rows, cols = linear_sum_assignment(-similarity)
        for row, col in zip(rows, cols, strict=True):
            match[row] = reference_names[col]
            cosine[row] = similarity[row, col]
        return pd.DataFrame(
            {
                "component": component_names,
                "match": _names(match),
                "cosine": cosine,
            }
        )

    # Stable sort, so ties keep the reference order.
    ranking = np.argsort(-similarity, axis=1, kind="stable")
    best = ranking[:, 0]
    table = {
        "component": component_names,
        "match": _names([reference_names[k] for k in best]),
        "cosine": similarity[np.arange(n_components), best],
    }
    if ranking.shape[1] > 1:
        second = ranking[:, 1]
        table["second_match"] = _names([reference_names[k] for k in second])
        table["second_cosine"] = similarity[np.arange(n_components), second]
    else:
        table["second_match"] = _names([None] * n_components)
        table["second_cosine"] = np.full(n_components, np.nan)
    return pd.DataFrame(table)


def sbs96_order(labels: Sequence[str] | pd.Index | np.ndarray) -> np.ndarray:
    """Permutation that puts SBS96 channel labels into :data:`SBS96_CONTEXTS` order.

    Parameters
    ----------
    labels : sequence of str of length 96
        The 96 channel labels (``"A[C>A]A"``, ...) in any order, e.g. the rows of a
        catalog from SigProfiler, which sorts them alphabetically.

    Returns
    -------
    numpy.ndarray of shape (96,)
        Integer positions ``order`` such that ``[labels[i] for i in order]`` equals
        ``SBS96_CONTEXTS``; use ``X[order]`` or ``frame.iloc[order]`` to reorder.

    Raises
    ------
    ValueError
        If ``labels`` is not exactly the 96 SBS channels, each once.

    Examples
    --------
    >>> order = sbs96_order(sorted(SBS96_CONTEXTS))
    >>> [sorted(SBS96_CONTEXTS)[i] for i in order] == list(SBS96_CONTEXTS)
    True
    """
    labels = [str(label) for label in labels]
    if len(labels) != len(SBS96_CONTEXTS):
        raise ValueError(
            f"labels must be the {len(SBS96_CONTEXTS)} SBS96 channels; "
            f"got {len(labels)} labels."
        )
    position = {label: i for i, label in enumerate(labels)}
    if len(position) != len(labels):
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(
            f"labels must name each SBS96 channel once; duplicated: {duplicated[:5]}."
        )
    unknown = sorted(set(labels) - set(SBS96_CONTEXTS))
    if unknown:
        raise ValueError(
            "labels must be the 96 SBS channels written like 'A[C>A]A'; "
            f"not recognised: {unknown[:5]}."
        )
    return np.array([position[label] for label in SBS96_CONTEXTS], dtype=np.intp)
