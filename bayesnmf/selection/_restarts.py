"""Many MAP restarts of one model, in batches sized for the device.

:func:`~bayesnmf.fit_map` runs all its restarts in one :func:`jax.vmap`-ed
while-loop. On a CPU that is not always the fastest way: the batched loop runs
until the slowest restart has converged (finished restarts are carried along),
and for large matrices the batch's working set (``n_restarts`` copies of an
``n_features x n_samples`` array) falls out of the cache. :func:`fit_restarts`
therefore runs the restarts in equal batches, each one compiled call reused for
every batch, and merges them into one result, as if from one call.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._validation import NMFData
from ..map import fit_map
from ..model import NMFModel
from ..result import NMFResult

__all__ = ["fit_restarts", "restart_batch_size", "random_starts"]

#: On a CPU, batch restarts up to this many matrix entries in all (512 KiB of
#: float32 per working array: the batch stays in the cache).
CPU_BATCH_ENTRIES = 2**17


def restart_batch_size(shape, n_restarts: int) -> int:
    """Restarts per compiled call for a matrix of this shape.

    All of them on an accelerator; on a CPU as many as keep
    ``batch * n_features * n_samples <= CPU_BATCH_ENTRIES``.
    """
    import jax

    if jax.default_backend() != "cpu":
        return n_restarts
    m, n = shape
    return max(1, min(n_restarts, CPU_BATCH_ENTRIES // (m * n)))


def random_starts(data: NMFData, rank: int, n_restarts: int, seed: int):
    """Scaled absolute normals, ``|N(0, 1)| * sqrt(mean(X) / rank)``.

    The starts of :func:`~bayesnmf.fit_map`'s ``init="random"``, drawn with
    NumPy (nothing to compile). Restart ``i`` comes from its own stream
    ``(seed, i)``, so it is the same whatever ``n_restarts`` is.

    Returns
    -------
    W0 : ndarray of shape (n_restarts, n_features, rank)
    H0 : ndarray of shape (n_restarts, rank, n_samples)
    """
    m, n = data.shape
    n_obs = data.X.size if data.mask is None else data.mask.sum()
    scale = math.sqrt(data.X.sum() / n_obs / rank)
    floor = float(np.finfo(np.float32).eps)
    W0 = np.empty((n_restarts, m, rank))
    H0 = np.empty((n_restarts, rank, n))
    for i in range(n_restarts):
        rng = np.random.default_rng([seed, i])
        W0[i] = scale * np.maximum(np.abs(rng.standard_normal((m, rank))), floor)
        H0[i] = scale * np.maximum(np.abs(rng.standard_normal((rank, n))), floor)
    return W0, H0


def fit_restarts(
    data: NMFData,
    model: NMFModel,
    *,
    n_restarts: int,
    seed: int,
    batch: int | None = None,
    **fit_kwargs,
) -> NMFResult:
    """MAP fit from random starts, run in equal batches and merged.

    Parameters
    ----------
    data : NMFData
        Checked data (with its mask).
    model : NMFModel
        The model.
    n_restarts : int
        Random starts (:func:`random_starts`).
    seed : int
        Seed of the starts.
    batch : int, optional
        Restarts per compiled call; default :func:`restart_batch_size`. The
        last batch is padded with copies of its last start (dropped after), so
        that every call has the same shape and the kernel compiles once.
    **fit_kwargs
        Passed to :func:`~bayesnmf.fit_map` (``max_iter``, ``tol``, ``dtype``).

    Returns
    -------
    NMFResult
        As :func:`~bayesnmf.fit_map` with ``n_restarts`` restarts: the best
        restart as the point estimate, all of them in ``restarts``.
    """
    if batch is None:
        batch = restart_batch_size(data.shape, n_restarts)
    n_batches = -(-n_restarts // batch)
    batch = -(-n_restarts // n_batches)  # equal batches, the least padding
    W0, H0 = random_starts(data, model.rank, n_restarts, seed)
    pad = n_batches * batch - n_restarts
    if pad:
        W0 = np.concatenate([W0, np.repeat(W0[-1:], pad, axis=0)])
        H0 = np.concatenate([H0, np.repeat(H0[-1:], pad, axis=0)])

    fits = [
        fit_map(data, model, init="custom", W_init=W0[s:s + batch],
                H_init=H0[s:s + batch], warn=False, **fit_kwargs)
        for s in range(0, n_batches * batch, batch)
    ]
    restarts = {
        key: np.concatenate([f.restarts[key] for f in fits])[:n_restarts]
        for key in fits[0].restarts
    }
    best = int(np.nanargmin(restarts["objective"]))
    chunk = fits[best // batch]
    settings = {**chunk.settings, "init": "random", "seed": seed,
                "n_restarts": n_restarts, "restart_batch": batch}
    return dataclasses.replace(chunk, restarts=restarts, best_restart=best,
                               settings=settings)
