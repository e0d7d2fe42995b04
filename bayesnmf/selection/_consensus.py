"""Stability of restarts: consensus clustering and signature silhouettes.

Two views of how reproducible a rank-``r`` factorization is across ``T`` restarts:

* **Samples** (Brunet et al. 2004): each restart assigns sample ``j`` to the component
  with the largest coefficient ``H[k, j]``; the consensus matrix is the fraction of
  restarts that put two samples together. Its cophenetic correlation, dispersion and
  PAC summarise how crisp it is.
* **Signatures** (Alexandrov et al. 2013; SigProfilerExtractor): the ``r T`` columns of
  ``W`` are clustered into ``r`` clusters, each restart giving exactly one column to
  every cluster, and the silhouette of that clustering measures stability.

Orientation: ``X`` (n_features, n_samples) ~ ``W`` (n_features, rank) @ ``H`` (rank,
n_samples). Everything here is plain NumPy/SciPy.

References
----------
Brunet, J.-P., Tamayo, P., Golub, T. R. & Mesirov, J. P. (2004). Metagenes and molecular
pattern discovery using matrix factorization. *PNAS* 101(12), 4164-4169.
https://doi.org/10.1073/pnas.0308531101

Kim, H. & Park, H. (2007). Sparse non-negative matrix factorizations via alternating
non-negativity-constrained least squares for microarray data analysis.
*Bioinformatics* 23(12), 1495-1502. https://doi.org/10.1093/bioinformatics/btm134

Şenbabaoğlu, Y., Michailidis, G. & Li, J. Z. (2014). Critical limitations of consensus
clustering in class discovery. *Scientific Reports* 4, 6207.
https://doi.org/10.1038/srep06207

Alexandrov, L. B., Nik-Zainal, S., Wedge, D. C., Campbell, P. J. & Stratton, M. R.
(2013). Deciphering signatures of mutational processes operative in human cancer.
*Cell Reports* 3(1), 246-259. https://doi.org/10.1016/j.celrep.2012.12.008

Rousseeuw, P. J. (1987). Silhouettes: a graphical aid to the interpretation and
validation of cluster analysis. *J. Comput. Appl. Math.* 20, 53-65.
https://doi.org/10.1016/0377-0427(87)90125-7
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import cophenet, cut_tree, leaves_list, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform

__all__ = [
    "SilhouetteStability",
    "connectivity",
    "consensus_clusters",
    "consensus_matrix",
    "consensus_order",
    "cophenetic_correlation",
    "dispersion",
    "pac",
    "silhouette_stability",
]

# Tolerance on the symmetry and the [0, 1] range of a consensus matrix read from a file.
_CONSENSUS_ATOL = 1e-8


class SilhouetteStability(NamedTuple):
    """Clustering of signatures across restarts, from :func:`silhouette_stability`.

    The silhouette of a signature is NaN when it is undefined: with one restart
    (``T == 1``) no cluster has two members, and with one component (``rank == 1``)
    there is no other cluster. ``cluster_cosine`` is defined in every case.

    Attributes
    ----------
    average : float
        Mean silhouette over all ``rank * T`` signatures ("average stability").
    minimum : float
        Smallest cluster-mean silhouette ("minimum stability").
    cluster_silhouette : numpy.ndarray of shape (rank,)
        Mean silhouette of the members of each cluster.
    silhouette : numpy.ndarray of shape (T, rank)
        Silhouette of column ``j`` of restart ``t``, in input order.
    labels : numpy.ndarray of int of shape (T, rank)
        Cluster of column ``j`` of restart ``t``; every row is a permutation of
        ``0..rank-1``. Clusters are numbered after the columns of the first restart
        (``labels[0] == arange(rank)``).
    centroids : numpy.ndarray of shape (n_features, rank)
        Mean of the members of each cluster, columns summing to one (consensus
        signatures).
    cluster_cosine : numpy.ndarray of shape (rank,)
        Mean cosine similarity between the members of each cluster and its centroid.
    """

    average: float
    minimum: float
    cluster_silhouette: np.ndarray
    silhouette: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    cluster_cosine: np.ndarray


def connectivity(H: ArrayLike) -> np.ndarray:
    """Connectivity matrix of one factorization: do two samples share a cluster?

    Sample ``j`` belongs to cluster :math:`\\arg\\max_k H_{kj}` (the first maximum on
    ties, so an all-zero column goes to component 0), and

    .. math:: C_{jj'} = \\mathbb 1[\\arg\\max_k H_{kj} = \\arg\\max_k H_{kj'}].

    For a clustering of features, pass ``W.T``.

    Parameters
    ----------
    H : array_like of shape (rank, n_samples)
        Coefficients of one fit.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_samples)
        Symmetric 0/1 matrix (float64) with ones on the diagonal.

    Examples
    --------
    >>> connectivity([[3.0, 0.0, 2.0], [1.0, 5.0, 0.0]])
    array([[1., 0., 1.],
           [0., 1., 0.],
           [1., 0., 1.]])
    """
    H = _as_real(H, "H")
    if H.ndim != 2:
        raise ValueError(
            f"H must have shape (rank, n_samples); got shape {H.shape}. "
            "Use consensus_matrix for a stack of fits."
        )
    labels = np.argmax(H, axis=0)
    return (labels[:, None] == labels[None, :]).astype(np.float64)


def consensus_matrix(H_stack: ArrayLike) -> np.ndarray:
    """Consensus matrix: mean connectivity over restarts (Brunet et al. 2004).

    .. math:: \\bar C = \\frac1T \\sum_{t=1}^T C^{(t)},

    with :math:`C^{(t)}` the :func:`connectivity` of restart ``t``. Entry
    :math:`\\bar C_{jj'}` is the fraction of restarts that put samples ``j`` and ``j'``
    in the same cluster. Costs :math:`O(T n^2)` time, :math:`O(n^2 + T n r)` memory.

    Parameters
    ----------
    H_stack : array_like of shape (T, rank, n_samples)
        Coefficients of ``T`` restarts of the same rank.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_samples)
        Symmetric float64 matrix with entries in [0, 1] and ones on the diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> H_stack = np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    ...                     [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    >>> consensus_matrix(H_stack)
    array([[1. , 0.5, 0. ],
           [0.5, 1. , 0.5],
           [0. , 0.5, 1. ]])
    """
    H_stack = _as_real(H_stack, "H_stack")
    if H_stack.ndim != 3:
        raise ValueError(
            f"H_stack must have shape (T, rank, n_samples); got shape {H_stack.shape}. "
            "For a single fit use connectivity(H) or pass H[None]."
        )
    n_restarts, rank, n_samples = H_stack.shape
    if n_restarts == 0:
        raise ValueError("H_stack must hold at least one restart; got T = 0.")

    # One-hot membership of shape (n_samples, T * rank): its Gram matrix counts the
    # restarts in which two samples share a cluster, exactly in float64.
    labels = np.argmax(H_stack, axis=1)
    onehot = np.zeros((n_samples, n_restarts, rank))
    onehot[np.arange(n_samples)[None, :], np.arange(n_restarts)[:, None], labels] = 1.0
    onehot = onehot.reshape(n_samples, n_restarts * rank)
    return (onehot @ onehot.T) / n_restarts


def cophenetic_correlation(C: ArrayLike) -> float:
    """Cophenetic correlation coefficient of a consensus matrix (Brunet et al. 2004).

    The Pearson correlation between the distances :math:`D = 1 - \\bar C` (zero
    diagonal) and the cophenetic distances of the average-linkage dendrogram built
    from ``D``, over all pairs :math:`j < j'`. This follows the R package NMF
    (``cophcor``), i.e. ``linkage(squareform(D), "average")`` and ``cophenet``. Values
    near 1 mean a crisp, reproducible clustering; Brunet's rule picks the rank at which
    it begins to fall.

    Parameters
    ----------
    C : array_like of shape (n_samples, n_samples)
        Consensus matrix, symmetric with entries in [0, 1].

    Returns
    -------
    float
        The correlation, or NaN (with a :class:`RuntimeWarning`) when it is undefined:
        all off-diagonal entries are equal (e.g. every restart puts every sample in one
        cluster, as at rank 1), or there are fewer than three samples.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 1])
    >>> C = (labels[:, None] == labels[None, :]).astype(float)
    >>> cophenetic_correlation(C)
    1.0
    """
    distances = _condensed_distances(C)
    if distances.size == 0 or np.ptp(distances) == 0:
        warnings.warn(
            "cophenetic correlation is undefined for a consensus matrix whose "
            "off-diagonal entries are all equal; returning NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")

    tree = linkage(distances, method="average")
    correlation, _ = cophenet(tree, distances)
    return float(correlation)


def dispersion(C: ArrayLike) -> float:
    """Dispersion coefficient of a consensus matrix (Kim & Park 2007).

    .. math::

        \\rho = \\frac{1}{n^2} \\sum_{j=1}^n \\sum_{j'=1}^n
        4 \\left(\\bar C_{jj'} - \\tfrac12\\right)^2 \\in [0, 1],

    equal to 1 exactly when every entry is 0 or 1. This is the normalised form; the R
    package NMF computes the same number.

    Parameters
    ----------
    C : array_like of shape (n_samples, n_samples)
        Consensus matrix with entries in [0, 1].

    Returns
    -------
    float
        The dispersion.

    Examples
    --------
    >>> dispersion([[1.0, 0.5], [0.5, 1.0]])
    0.5
    """
    C = _check_consensus(C)
    return float(np.mean(4.0 * (C - 0.5) ** 2))


def pac(C: ArrayLike, lower: float = 0.1, upper: float = 0.9) -> float:
    """Proportion of ambiguous clustering (Şenbabaoğlu et al. 2014).

    The fraction of off-diagonal entries of the consensus matrix strictly inside
    ``(lower, upper)``: pairs of samples that the restarts neither clearly join nor
    clearly separate. Lower is better; 0 for a crisp consensus.

    Parameters
    ----------
    C : array_like of shape (n_samples, n_samples)
        Consensus matrix with entries in [0, 1], at least 2 x 2.
    lower, upper : float, default 0.1 and 0.9
        Bounds of the ambiguous interval, ``0 <= lower < upper <= 1``.

    Returns
    -------
    float
        The proportion, in [0, 1].

    Examples
    --------
    >>> pac([[1.0, 0.5, 0.0], [0.5, 1.0, 0.95], [0.0, 0.95, 1.0]])
    0.3333333333333333
    """
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(
            f"pac needs 0 <= lower < upper <= 1; got lower={lower}, upper={upper}."
        )
    C = _check_consensus(C)
    n_samples = len(C)
    if n_samples < 2:
        raise ValueError(f"pac needs at least 2 samples; got C of shape {C.shape}.")

    # C is symmetric, so the upper triangle holds every off-diagonal pair once.
    pairs = C[np.triu_indices(n_samples, k=1)]
    return float(np.mean((pairs > lower) & (pairs < upper)))


def consensus_order(C: ArrayLike) -> np.ndarray:
    """Order of the samples along the average-linkage dendrogram of ``1 - C``.

    Reordering rows and columns by it shows the clusters as diagonal blocks, as in the
    consensus heat maps of the R package NMF.

    Parameters
    ----------
    C : array_like of shape (n_samples, n_samples)
        Consensus matrix.

    Returns
    -------
    numpy.ndarray of int of shape (n_samples,)
        Leaf order; plot ``C[np.ix_(order, order)]``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 1, 0, 1])
    >>> C = (labels[:, None] == labels[None, :]).astype(float)
    >>> labels[consensus_order(C)]
    array([0, 0, 1, 1])
    """
    return leaves_list(_average_linkage(C))


def consensus_clusters(C: ArrayLike, k: int) -> np.ndarray:
    """Cut the average-linkage dendrogram of ``1 - C`` into ``k`` clusters.

    The equivalent of R's ``cutree(hclust(as.dist(1 - C), "average"), k)``, which the R
    package NMF uses for the consensus membership (``predict(fit, "consensus")``). The
    cut follows the merge order, so exactly ``k`` clusters come back even when merge
    heights tie.

    Parameters
    ----------
    C : array_like of shape (n_samples, n_samples)
        Consensus matrix.
    k : int
        Number of clusters, ``1 <= k <= n_samples``.

    Returns
    -------
    numpy.ndarray of int of shape (n_samples,)
        Labels ``0..k-1``, numbered in order of first appearance along the samples.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([1, 1, 0, 2, 0])
    >>> C = (labels[:, None] == labels[None, :]).astype(float)
    >>> consensus_clusters(C, 3)
    array([0, 0, 1, 2, 1])
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int; got {type(k).__name__}.")
    tree = _average_linkage(C)
    n_samples = len(tree) + 1
    if not 1 <= k <= n_samples:
        raise ValueError(f"k must lie in [1, {n_samples}] (n_samples); got {k}.")

    labels = cut_tree(tree, n_clusters=int(k))[:, 0]
    _, first = np.unique(labels, return_index=True)
    relabel = np.empty(k, dtype=np.intp)
    relabel[labels[np.sort(first)]] = np.arange(k)
    return relabel[labels]


def silhouette_stability(
    W_stack: ArrayLike,
    *,
    n_starts: int = 10,
    max_rounds: int = 100,
    seed: int = 0,
) -> SilhouetteStability:
    """Stability of signatures across restarts by constrained clustering (SigProfiler).

    The ``rank * T`` columns of ``W_stack`` (scaled to sum to one) are clustered into
    ``rank`` clusters so that every restart gives exactly one column to each cluster:

    1. take the columns of one restart, chosen at random, as centroids;
    2. for each restart, assign its columns to the centroids by the Hungarian algorithm
       on cosine distance; set each centroid to the mean of its members;
    3. repeat 2 until no assignment changes (at most ``max_rounds`` times).

    This runs from ``min(n_starts, T)`` different restarts, and the clustering with the
    largest average silhouette is kept. The silhouette (Rousseeuw 1987) of a signature
    with cosine distance :math:`d = 1 - \\cos` is

    .. math:: s = \\frac{b - a}{\\max(a, b)},

    with ``a`` its mean distance to the other members of its cluster and ``b`` the
    smallest mean distance to the members of another cluster. Average stability is the
    mean of ``s`` over all signatures; minimum stability is the smallest cluster mean.

    Parameters
    ----------
    W_stack : array_like of shape (T, n_features, rank)
        Non-negative bases of ``T`` restarts (or bootstrap replicates) of one rank.
    n_starts : int, default 10
        Number of random initial restarts to cluster from.
    max_rounds : int, default 100
        Cap on assignment rounds per start.
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same result.

    Returns
    -------
    SilhouetteStability
        Average and minimum stability, per-cluster and per-signature silhouettes,
        cluster labels, centroids and per-cluster cosine to the centroid.

    Notes
    -----
    The silhouette is undefined with a single restart (no cluster has two members) or
    a single component (no other cluster). Both cases return NaN silhouettes rather
    than a conventional 0 or 1: NaN says "not measured", so rank-selection code must
    decide explicitly how to treat rank 1 (SigProfilerExtractor-style thresholds, as in
    ``average >= 0.8``, are False for NaN). ``cluster_cosine`` still measures the
    spread around the centroids in those cases.

    SigProfilerExtractor resamples the data for every replicate and keeps the best of
    50 starts; pass such replicates as ``W_stack`` and raise ``n_starts`` to match.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> W = rng.gamma(0.3, size=(40, 3))
    >>> W_stack = np.stack([W[:, rng.permutation(3)] for _ in range(5)])
    >>> result = silhouette_stability(W_stack, seed=0)
    >>> round(result.average, 6)
    1.0
    """
    W_stack = _as_real(W_stack, "W_stack")
    if W_stack.ndim != 3:
        raise ValueError(
            "W_stack must have shape (T, n_features, rank); "
            f"got shape {W_stack.shape}."
        )
    if np.any(W_stack < 0):
        raise ValueError(
            f"W_stack must be non-negative; its minimum is {W_stack.min()}."
        )
    for name, value in (("n_starts", n_starts), ("max_rounds", max_rounds)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}.")
    n_restarts, n_features, rank = W_stack.shape
    if n_restarts == 0 or rank == 0:
        raise ValueError(
            f"W_stack needs at least one restart and one component; got shape "
            f"{W_stack.shape}."
        )

    # Signatures as rows: (T, rank, n_features), each scaled to sum to one.
    totals = W_stack.sum(axis=1, keepdims=True)
    signatures = np.swapaxes(W_stack / np.where(totals > 0, totals, 1.0), 1, 2)
    unit = _unit_rows(signatures)

    rng = np.random.default_rng(seed)
    starts = rng.permutation(n_restarts)[: min(n_starts, n_restarts)]
    if rank == 1 or n_restarts == 1:
        # The assignment is forced; silhouettes are undefined (see Notes).
        starts = starts[:1]

    best_labels, best_score, best_silhouette = None, -np.inf, None
    for start in starts:
        labels = _constrained_clustering(signatures, unit, start, max_rounds)
        silhouette = _stability_silhouette(unit, labels)
        score = -np.inf if np.isnan(silhouette).all() else np.mean(silhouette)
        if best_labels is None or score > best_score:
            best_labels, best_score, best_silhouette = labels, score, silhouette

    # Number clusters after the columns of the first restart.
    labels = np.argsort(best_labels[0])[best_labels]
    centroids = _centroids(signatures, labels)
    unit_centroids = _unit_rows(centroids)
    member_cosine = np.einsum("tjm,tjm->tj", unit, unit_centroids[labels])
    cluster_cosine = _cluster_means(member_cosine, labels)

    if np.isnan(best_silhouette).all():
        average, cluster_silhouette = float("nan"), np.full(rank, np.nan)
    else:
        average = float(np.mean(best_silhouette))
        cluster_silhouette = _cluster_means(best_silhouette, labels)
    return SilhouetteStability(
        average=average,
        minimum=float(np.min(cluster_silhouette)),
        cluster_silhouette=cluster_silhouette,
        silhouette=best_silhouette,
        labels=labels,
        centroids=centroids.T,
        cluster_cosine=cluster_cosine,
    )


def _constrained_clustering(
    signatures: np.ndarray, unit: np.ndarray, start: int, max_rounds: int
) -> np.ndarray:
    """Cluster labels (T, rank) with one column of each restart per cluster."""
    n_restarts, rank, _ = signatures.shape
    centroids = signatures[start]
    labels = np.tile(np.arange(rank), (n_restarts, 1))
    for round_ in range(max_rounds):
        distance = 1.0 - np.einsum("km,tjm->tkj", _unit_rows(centroids), unit)
        new_labels = np.empty_like(labels)
        for t in range(n_restarts):
            clusters, columns = linear_sum_assignment(distance[t])
            new_labels[t, columns] = clusters
        if round_ > 0 and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centroids = _centroids(signatures, labels)
    return labels


def _centroids(signatures: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cluster means of the signatures, shape (rank, n_features)."""
    order = np.argsort(labels, axis=1)
    return np.take_along_axis(signatures, order[:, :, None], axis=1).mean(axis=0)


def _cluster_means(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean of per-signature ``values`` (T, rank) within each cluster."""
    order = np.argsort(labels, axis=1)
    return np.take_along_axis(values, order, axis=1).mean(axis=0)


def _stability_silhouette(unit: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouettes (T, rank) of the signatures, NaN when undefined."""
    n_restarts, rank, _ = unit.shape
    if n_restarts == 1 or rank == 1:
        return np.full((n_restarts, rank), np.nan)
    points = unit.reshape(n_restarts * rank, -1)
    return _cosine_silhouette_samples(points, labels.reshape(-1)).reshape(
        n_restarts, rank
    )


def _cosine_silhouette_samples(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette of each row of ``points`` under cosine distance (Rousseeuw 1987).

    Matches ``sklearn.metrics.silhouette_samples(points, labels, metric="cosine")``:
    zero rows are at distance 1 from every other row, and members of singleton clusters
    get 0. The distance :math:`1 - u_i^{\\top} u_j` between unit rows is linear in
    :math:`u_j`, so the summed distance to a cluster is its size minus
    :math:`u_i^{\\top}` times the sum of its unit rows: :math:`O(N k m)` time and no
    ``N x N`` matrix.
    """
    unit = _unit_rows(points)
    cluster_ids, labels = np.unique(labels, return_inverse=True)
    n_clusters = len(cluster_ids)
    if not 2 <= n_clusters <= len(points) - 1:
        raise ValueError(
            f"the silhouette needs 2 <= n_clusters <= n_points - 1; got {n_clusters} "
            f"clusters for {len(points)} points."
        )

    onehot = np.zeros((len(points), n_clusters))
    onehot[np.arange(len(points)), labels] = 1.0
    sizes = onehot.sum(axis=0)
    summed = sizes - unit @ (unit.T @ onehot)

    # Remove each point's distance to itself (0 in the silhouette, 1 for a zero row).
    own = np.arange(len(points)), labels
    summed[own] -= 1.0 - np.einsum("im,im->i", unit, unit)
    summed = np.maximum(summed, 0.0)

    own_size = sizes[labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        intra = summed[own] / (own_size - 1)
        mean_to_other = summed / sizes
    mean_to_other[own] = np.inf
    inter = mean_to_other.min(axis=1)

    # 0 / 0 (a cluster of identical points at distance 0 from another) counts as 0.
    denominator = np.maximum(intra, inter)
    safe = np.where(denominator > 0, denominator, 1.0)
    silhouette = np.where(denominator > 0, (inter - intra) / safe, 0.0)
    return np.where(own_size > 1, silhouette, 0.0)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm along the last axis; zero rows stay zero."""
    norm = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norm > 0, norm, 1.0)


def _average_linkage(C: ArrayLike) -> np.ndarray:
    """Average-linkage tree of ``1 - C`` (zero diagonal), as R's ``hclust``."""
    distances = _condensed_distances(C)
    if distances.size == 0:
        raise ValueError(
            "a dendrogram needs at least 2 samples; got C of shape (1, 1)."
        )
    return linkage(distances, method="average")


def _condensed_distances(C: ArrayLike) -> np.ndarray:
    """Condensed form of ``D = 1 - C`` with the diagonal set to zero."""
    C = _check_consensus(C)
    D = 1.0 - C
    np.fill_diagonal(D, 0.0)
    return squareform(D, checks=False)


def _check_consensus(C: ArrayLike) -> np.ndarray:
    """Validate a consensus matrix: square, finite, symmetric, entries in [0, 1]."""
    C = _as_real(C, "C")
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise ValueError(
            f"C must be a non-empty square matrix (n_samples, n_samples); "
            f"got shape {C.shape}."
        )
    if not np.allclose(C, C.T, rtol=0.0, atol=_CONSENSUS_ATOL):
        raise ValueError("C must be symmetric; got a matrix with C != C.T.")
    if C.min() < -_CONSENSUS_ATOL or C.max() > 1.0 + _CONSENSUS_ATOL:
        raise ValueError(
            f"C must have entries in [0, 1]; got range [{C.min()}, {C.max()}]."
        )
    return C


def _as_real(value: ArrayLike, name: str) -> np.ndarray:
    """Convert to a finite float64 array, naming ``name`` in errors."""
    array = np.asarray(value)
    if not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, bool)
    ):
        raise TypeError(
            f"{name} must be a real numeric array; got dtype {array.dtype}."
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array
