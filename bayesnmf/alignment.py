"""Match components across restarts, chains and draws.

An NMF is identified only up to a permutation ``P`` and a positive diagonal scaling
``D`` of its components, :math:`WH = (WPD)(D^{-1}P^{\\top}H)`. Before restarts can be
compared or R-hat computed on posterior draws, every member of a stack of fits is

1. normalised: the columns of ``W`` sum to one and their scale moves into ``H``
   (:func:`normalize_factors`);
2. matched to a reference by the Hungarian algorithm on the cosine similarity between
   columns of ``W`` (:func:`align_to_reference`);
3. optionally re-matched to the mean of the aligned members until no permutation changes
   (:func:`align_components`).

Orientation: ``X`` (n_features, n_samples) ~ ``W`` (n_features, rank) @ ``H`` (rank,
n_samples). Everything here is plain NumPy/SciPy and works on any array-like input.

References
----------
Stephens, M. (2000). Dealing with label switching in mixture models.
*J. R. Stat. Soc. B* 62(4), 795-809. https://doi.org/10.1111/1467-9868.00265

Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.
https://doi.org/10.1214/20-BA1221
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from bayesnmf._warnings import ConvergenceWarning

__all__ = [
    "AlignmentResult",
    "ReferenceAlignment",
    "align_components",
    "align_to_reference",
    "normalize_factors",
]

# Number of members compared pairwise when the reference is the medoid of a stack.
_MAX_MEDOID_CANDIDATES = 32


class ReferenceAlignment(NamedTuple):
    """Factors permuted to follow a reference, from :func:`align_to_reference`.

    ``r_out = max(rank, n_reference)`` slots: slot ``k < n_reference`` holds the
    component matched to reference column ``k`` (zeros in ``W`` and ``H`` when no
    component was left for it); slots ``k >= n_reference`` exist only when the fit has
    more components than the reference and hold the unmatched ones in their original
    order. ``W @ H`` is unchanged by the alignment.

    Attributes
    ----------
    W : numpy.ndarray of shape (..., n_features, r_out)
        Columns of ``W`` in reference order.
    H : numpy.ndarray of shape (..., r_out, n_samples)
        Rows of ``H`` in the same order.
    permutation : numpy.ndarray of int of shape (..., r_out)
        ``permutation[..., k]`` is the input column placed in slot ``k``, or ``-1``
        for a reference component left without a match (fit with fewer components).
    matched_cosine : numpy.ndarray of shape (..., r_out)
        Cosine similarity between slot ``k`` of ``W`` and reference column ``k``; NaN
        for empty slots and for extra components beyond the reference.
    """

    W: np.ndarray
    H: np.ndarray
    permutation: np.ndarray
    matched_cosine: np.ndarray


class AlignmentResult(NamedTuple):
    """Normalised and aligned stack of factorizations, from :func:`align_components`.

    The leading dimensions ``...`` are those of the input stack: ``(T,)`` for ``T``
    restarts, ``(n_chains, n_draws)`` for posterior draws.

    Attributes
    ----------
    W : numpy.ndarray of shape (..., n_features, rank)
        Columns sum to one and follow the order of :attr:`reference`.
    H : numpy.ndarray of shape (..., rank, n_samples)
        Rows carry the column sums of the input ``W``, in the same order, so that every
        member still reproduces its own ``W @ H``.
    permutations : numpy.ndarray of int of shape (..., rank)
        ``permutations[..., k]`` is the input column of that member put in slot ``k``.
    cosine : numpy.ndarray of shape (..., rank)
        Cosine similarity between each member's aligned component ``k`` and column ``k``
        of :attr:`reference`.
    reference : numpy.ndarray of shape (n_features, rank)
        The reference of the final matching, columns summing to one: the (weighted) mean
        of the aligned members after refinement, or the initial reference when
        ``n_iter=0``.
    converged : bool
        True when a refinement round left every permutation unchanged; False when the
        ``n_iter`` rounds ended with permutations still changing (a
        :class:`~bayesnmf.ConvergenceWarning` is then issued) or when no refinement was
        asked for (``n_iter=0``).
    """

    W: np.ndarray
    H: np.ndarray
    permutations: np.ndarray
    cosine: np.ndarray
    reference: np.ndarray
    converged: bool

    @property
    def min_cosine(self) -> np.ndarray:
        """Smallest matched cosine of each component over all members, shape (rank,)."""
        return self.cosine.reshape(-1, self.cosine.shape[-1]).min(axis=0)

    @property
    def mean_cosine(self) -> np.ndarray:
        """Mean matched cosine of each component over all members, shape (rank,)."""
        return self.cosine.reshape(-1, self.cosine.shape[-1]).mean(axis=0)

    def unstable_components(self, threshold: float = 0.9) -> np.ndarray:
        """Flag components whose smallest matched cosine is below ``threshold``.

        Parameters
        ----------
        threshold : float, default 0.9
            Matched cosine under which a component counts as not reproduced.

        Returns
        -------
        numpy.ndarray of bool of shape (rank,)
            True for unstable components.
        """
        return self.min_cosine < threshold


def normalize_factors(W: ArrayLike, H: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scale the columns of ``W`` to sum to one and move their scale into ``H``.

    .. math::

        s = \\mathbf 1^{\\top} W, \\qquad W \\leftarrow W\\,\\mathrm{diag}(s)^{-1},
        \\qquad H \\leftarrow \\mathrm{diag}(s)\\,H,

    so ``W @ H`` is unchanged. A column of ``W`` that is all zeros stays zero, and the
    matching row of ``H`` becomes zero (its contribution was zero already).

    Parameters
    ----------
    W : array_like of shape (..., n_features, rank)
        Non-negative basis; leading dimensions index restarts, chains or draws.
    H : array_like of shape (..., rank, n_samples)
        Non-negative coefficients with the same leading dimensions as ``W``.

    Returns
    -------
    W_normalized : numpy.ndarray of shape (..., n_features, rank)
        ``W`` with unit column sums.
    H_scaled : numpy.ndarray of shape (..., rank, n_samples)
        ``H`` with row ``k`` multiplied by the sum of column ``k`` of ``W``.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0], [3.0, 2.0]])
    >>> H = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> Wn, Hn = normalize_factors(W, H)
    >>> Wn.sum(axis=0)
    array([1., 1.])
    >>> np.allclose(Wn @ Hn, W @ H)
    True
    """
    W = _as_factor(W, "W")
    H = _as_factor(H, "H")
    _check_pair(W, H)

    scale = W.sum(axis=-2)
    safe = np.where(scale > 0, scale, 1.0)
    W_normalized = np.where(scale[..., None, :] > 0, W / safe[..., None, :], 0.0)
    H_scaled = H * scale[..., :, None]
    return W_normalized, H_scaled


def align_to_reference(
    W: ArrayLike,
    H: ArrayLike,
    W_ref: ArrayLike,
    H_ref: ArrayLike | None = None,
) -> ReferenceAlignment:
    """Permute components to best match a reference basis (Hungarian algorithm).

    For each member of the stack, the assignment maximising the summed cosine
    similarity between columns of ``W_ref`` and ``W`` is solved with
    :func:`scipy.optimize.linear_sum_assignment`; the columns of ``W`` and rows of ``H``
    are then reordered. Scales are left as they are: call :func:`normalize_factors`
    first for the reporting convention, or use :func:`align_components`.

    Ranks may differ (e.g. after ARD pruning): with fewer components than the reference,
    some reference slots stay empty (``permutation == -1``, zero column and row); with
    more, the extra components follow the ``n_reference`` matched slots.

    Parameters
    ----------
    W : array_like of shape (..., n_features, rank)
        Non-negative basis; each leading index is aligned on its own.
    H : array_like of shape (..., rank, n_samples)
        Coefficients with the same leading dimensions as ``W``.
    W_ref : array_like of shape (n_features, n_reference)
        Reference basis, e.g. a MAP fit, the best restart or a posterior mean.
    H_ref : array_like of shape (n_reference, n_samples), optional
        When given, the similarity used for matching is the average of the cosine
        between columns of ``W`` and the cosine between rows of ``H``. The reported
        ``matched_cosine`` is always that of ``W``.

    Returns
    -------
    ReferenceAlignment
        Aligned ``W`` and ``H``, the permutation of each member and the matched cosine
        of each slot.

    Raises
    ------
    ValueError
        If shapes disagree, or an input is negative or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> W_ref = np.eye(3)
    >>> W, H = W_ref[:, [2, 0, 1]], np.arange(6.0).reshape(3, 2)
    >>> aligned = align_to_reference(W, H, W_ref)
    >>> aligned.permutation
    array([1, 2, 0])
    >>> np.array_equal(aligned.W, W_ref)
    True
    """
    W = _as_factor(W, "W")
    H = _as_factor(H, "H")
    _check_pair(W, H)
    W_ref = _as_factor(W_ref, "W_ref", exact_ndim=2)
    if W_ref.shape[0] != W.shape[-2]:
        raise ValueError(
            f"W_ref must have one row per feature of W ({W.shape[-2]}); "
            f"got W_ref of shape {W_ref.shape}."
        )

    batch_shape = W.shape[:-2]
    n_features, rank = W.shape[-2:]
    n_samples = H.shape[-1]
    n_reference = W_ref.shape[1]
    W_flat = W.reshape(-1, n_features, rank)
    H_flat = H.reshape(-1, rank, n_samples)

    cosine = _column_cosine(W_ref, W_flat)
    similarity = cosine
    if H_ref is not None:
        H_ref = _as_factor(H_ref, "H_ref", exact_ndim=2)
        if H_ref.shape != (n_reference, n_samples):
            raise ValueError(
                f"H_ref must have shape (n_reference, n_samples) = "
                f"{(n_reference, n_samples)}; got {H_ref.shape}."
            )
        row_cosine = _column_cosine(H_ref.T, np.swapaxes(H_flat, -1, -2))
        similarity = 0.5 * (cosine + row_cosine)

    n_slots = max(rank, n_reference)
    permutation = np.full((len(W_flat), n_slots), -1, dtype=np.intp)
    matched = np.full((len(W_flat), n_slots), np.nan)
    for b, sim in enumerate(similarity):
        rows, cols = linear_sum_assignment(sim, maximize=True)
        permutation[b, rows] = cols
        matched[b, rows] = cosine[b, rows, cols]
        if rank > n_reference:
            # Components without a reference partner keep their original order.
            permutation[b, n_reference:] = np.setdiff1d(np.arange(rank), cols)

    empty = permutation < 0
    index = np.where(empty, 0, permutation)
    W_aligned = np.take_along_axis(W_flat, index[:, None, :], axis=2)
    H_aligned = np.take_along_axis(H_flat, index[:, :, None], axis=1)
    W_aligned[np.broadcast_to(empty[:, None, :], W_aligned.shape)] = 0.0
    H_aligned[np.broadcast_to(empty[:, :, None], H_aligned.shape)] = 0.0

    return ReferenceAlignment(
        W=W_aligned.reshape(*batch_shape, n_features, n_slots),
        H=H_aligned.reshape(*batch_shape, n_slots, n_samples),
        permutation=permutation.reshape(*batch_shape, n_slots),
        matched_cosine=matched.reshape(*batch_shape, n_slots),
    )


def align_components(
    W_stack: ArrayLike,
    H_stack: ArrayLike,
    reference: str | int | ArrayLike = "best",
    *,
    n_iter: int = 10,
    weights: ArrayLike | None = None,
) -> AlignmentResult:
    """Normalise a stack of fits and align every member to a common reference.

    The procedure removes the scale and permutation symmetries before restarts are
    compared or R-hat/ESS are computed on posterior draws:

    1. normalise each member (columns of ``W`` sum to one, scale into ``H``);
    2. match each member to the initial reference by the Hungarian algorithm on the
       cosine similarity of the columns of ``W``;
    3. up to ``n_iter`` times: set the reference to the (weighted) mean of the aligned
       ``W`` and match again; stop as soon as no permutation changes.

    Parameters
    ----------
    W_stack : array_like of shape (..., n_features, rank)
        Non-negative bases; the leading dimensions (at least one) index restarts
        ``(T,)`` or posterior draws ``(n_chains, n_draws)``. Every member is matched on
        its own.
    H_stack : array_like of shape (..., rank, n_samples)
        Coefficients with the same leading dimensions as ``W_stack``.
    reference : "best" or int or array_like of shape (n_features, rank), default "best"
        Initial reference. ``"best"`` takes the member with the largest weight when
        ``weights`` is given, otherwise the medoid: the member with the largest mean
        matched cosine to the others (computed on at most 32 evenly spaced members). An
        int selects a member by its index in the flattened leading dimensions. An array
        is used as given (after scaling its columns to sum to one).
    n_iter : int, default 10
        Maximum number of refinement rounds; 0 keeps the initial reference.
    weights : array_like of shape (...), optional
        Non-negative weight of each member in the mean reference, e.g.
        ``exp(elbo - elbo.max())`` over restarts; equal weights when omitted.

    Returns
    -------
    AlignmentResult
        Aligned factors, permutations, matched cosines, the final reference and a
        convergence flag; ``min_cosine``/``mean_cosine`` summarise each component.

    Raises
    ------
    ValueError
        If shapes disagree, an input is negative or not finite, ``reference`` is an
        unknown string, an index out of range or an array of the wrong shape, or
        ``weights`` are negative or all zero.
    TypeError
        If ``reference`` or ``n_iter`` has the wrong type.

    See Also
    --------
    align_to_reference : one matching step, also for references of another rank.

    Notes
    -----
    Aligning each draw to a reference makes overlapping components look more certain
    than they are; report diagnostics of invariant quantities (``W @ H``, the
    log-likelihood) as well.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W, H = rng.gamma(1.0, size=(20, 3)), rng.gamma(1.0, size=(3, 8))
    >>> orders = [[0, 1, 2], [2, 0, 1], [1, 2, 0]]
    >>> W_stack = np.stack([W[:, o] * 2.0 for o in orders])
    >>> H_stack = np.stack([H[o] / 2.0 for o in orders])
    >>> result = align_components(W_stack, H_stack, reference=0)
    >>> bool(np.allclose(result.W, result.W[0]))
    True
    >>> result.min_cosine.round(6)
    array([1., 1., 1.])
    """
    W_stack = _as_factor(W_stack, "W_stack", min_ndim=3)
    H_stack = _as_factor(H_stack, "H_stack", min_ndim=3)
    _check_pair(W_stack, H_stack, names=("W_stack", "H_stack"))
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)):
        raise TypeError(f"n_iter must be an int; got {type(n_iter).__name__}.")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0; got {n_iter}.")

    batch_shape = W_stack.shape[:-2]
    n_features, rank = W_stack.shape[-2:]
    W_norm, H_norm = normalize_factors(
        W_stack.reshape(-1, n_features, rank),
        H_stack.reshape(-1, rank, H_stack.shape[-1]),
    )
    n_members = len(W_norm)
    member_weights = _check_weights(weights, batch_shape)

    W_ref = _initial_reference(reference, W_norm, member_weights)

    aligned = align_to_reference(W_norm, H_norm, W_ref)
    converged = False
    for _ in range(n_iter):
        if member_weights is None:
            candidate = aligned.W.mean(axis=0)
        else:
            candidate = np.tensordot(member_weights, aligned.W, axes=1)
        candidate = normalize_factors(candidate, np.ones((rank, 1)))[0]

        realigned = align_to_reference(W_norm, H_norm, candidate)
        unchanged = np.array_equal(realigned.permutation, aligned.permutation)
        W_ref, aligned = candidate, realigned
        if unchanged:
            converged = True
            break
    # A single member is its own mean: nothing can change.
    converged = converged or (n_members == 1 and n_iter > 0)
    if n_iter > 0 and not converged:
        warnings.warn(
            f"align_components: permutations still changed after n_iter={n_iter} "
            "refinement rounds; components may be ambiguous. Raise n_iter or check "
            "result.min_cosine.",
            ConvergenceWarning,
            stacklevel=2,
        )

    return AlignmentResult(
        W=aligned.W.reshape(W_stack.shape),
        H=aligned.H.reshape(H_stack.shape),
        permutations=aligned.permutation.reshape(*batch_shape, rank),
        cosine=aligned.matched_cosine.reshape(*batch_shape, rank),
        reference=W_ref,
        converged=converged,
    )


def _initial_reference(
    reference: str | int | ArrayLike,
    W_norm: np.ndarray,
    weights: np.ndarray | None,
) -> np.ndarray:
    """Resolve the ``reference`` argument of :func:`align_components` to a basis."""
    n_members, n_features, rank = W_norm.shape

    if isinstance(reference, str):
        if reference != "best":
            raise ValueError(
                f"reference must be 'best', an int or an array; got {reference!r}."
            )
        if weights is not None:
            return W_norm[int(np.argmax(weights))]
        return W_norm[_medoid(W_norm)]

    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not -n_members <= reference < n_members:
            raise ValueError(
                f"reference index must lie in [{-n_members}, {n_members}) for "
                f"{n_members} members; got {reference}."
            )
        return W_norm[int(reference)]

    if isinstance(reference, bool) or np.ndim(reference) != 2:
        raise TypeError(
            "reference must be 'best', an int or an array of shape "
            f"(n_features, rank) = {(n_features, rank)}; got {reference!r:.80}."
        )
    W_ref = _as_factor(reference, "reference", exact_ndim=2)
    if W_ref.shape != (n_features, rank):
        raise ValueError(
            f"reference must have shape (n_features, rank) = {(n_features, rank)}; "
            f"got {W_ref.shape}. Use align_to_reference for references of another rank."
        )
    if np.any(W_ref.sum(axis=0) == 0):
        raise ValueError("reference has a column of zeros; every column must be > 0.")
    return W_ref / W_ref.sum(axis=0)


def _medoid(W_norm: np.ndarray) -> int:
    """Index of the member with the largest mean matched cosine to the others."""
    n_members = len(W_norm)
    n_candidates = min(n_members, _MAX_MEDOID_CANDIDATES)
    candidates = np.unique(np.linspace(0, n_members - 1, n_candidates).round())
    candidates = candidates.astype(np.intp)
    if len(candidates) == 1:
        return int(candidates[0])

    # cosine[i, j] is the (r, r) similarity between candidates i and j.
    unit = _unit_columns(W_norm[candidates])
    cosine = np.einsum("imk,jml->ijkl", unit, unit)
    score = np.zeros(len(candidates))
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            rows, cols = linear_sum_assignment(cosine[i, j], maximize=True)
            total = cosine[i, j, rows, cols].sum()
            score[i] += total
            score[j] += total
    return int(candidates[np.argmax(score)])


def _check_weights(
    weights: ArrayLike | None, batch_shape: tuple[int, ...]
) -> np.ndarray | None:
    """Validate member weights and return them flattened and summing to one."""
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != batch_shape:
        raise ValueError(
            f"weights must have the leading shape of W_stack {batch_shape}; "
            f"got {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be finite and non-negative.")
    total = weights.sum()
    if total <= 0:
        raise ValueError("weights must not all be zero.")
    return weights.reshape(-1) / total


def _unit_columns(W: np.ndarray) -> np.ndarray:
    """Columns scaled to unit Euclidean norm; zero columns stay zero."""
    norm = np.linalg.norm(W, axis=-2, keepdims=True)
    return W / np.where(norm > 0, norm, 1.0)


def _column_cosine(W_ref: np.ndarray, W_flat: np.ndarray) -> np.ndarray:
    """Cosine similarity between columns, shape (batch, n_reference, rank)."""
    cosine = np.einsum("mk,bml->bkl", _unit_columns(W_ref), _unit_columns(W_flat))
    return np.clip(cosine, -1.0, 1.0)


def _as_factor(
    value: ArrayLike,
    name: str,
    *,
    min_ndim: int = 2,
    exact_ndim: int | None = None,
) -> np.ndarray:
    """Convert to a finite, non-negative floating array with enough dimensions."""
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        if not (
            np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, bool)
        ):
            raise TypeError(
                f"{name} must be a real numeric array; got dtype {array.dtype}."
            )
        array = array.astype(np.float64)

    if exact_ndim is not None and array.ndim != exact_ndim:
        raise ValueError(
            f"{name} must have {exact_ndim} dimensions; got shape {array.shape}."
        )
    if array.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions; got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative; its minimum is {array.min()}.")
    return array


def _check_pair(
    W: np.ndarray, H: np.ndarray, names: tuple[str, str] = ("W", "H")
) -> None:
    """Check that ``W`` (..., m, r) and ``H`` (..., r, n) fit together."""
    name_W, name_H = names
    if W.ndim != H.ndim or W.shape[:-2] != H.shape[:-2]:
        raise ValueError(
            f"{name_W} and {name_H} must have the same leading dimensions; got "
            f"{name_W} of shape {W.shape} and {name_H} of shape {H.shape}."
        )
    if W.shape[-1] != H.shape[-2]:
        raise ValueError(
            f"{name_W} has {W.shape[-1]} components (last axis) but {name_H} has "
            f"{H.shape[-2]} (second to last axis); expected shapes (..., n_features, "
            "rank) and (..., rank, n_samples)."
        )
