"""Initial factors for the iterative engines (``METHODS.md`` §8)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["INITS", "random_init", "nndsvd", "restart_keys"]

INITS = ("random", "nndsvd", "nndsvda", "nndsvdar")


@functools.lru_cache(maxsize=256)
def restart_keys(seed: int, n_restarts: int):
    """One JAX key per restart: restart ``i`` gets ``fold_in(key(seed), i)``.

    Restart ``i`` is the same whatever the number of restarts. Cached: the
    eager ``vmap`` costs milliseconds per call, a visible share of a small fit.
    """
    key = jax.random.key(seed)
    index = jnp.arange(n_restarts, dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def random_init(key, X, mask, rank: int):
    """Scaled absolute normals, ``|N(0, 1)| * sqrt(mean(X) / rank)``.

    ``mean(X)`` is over the observed entries, so ``E[(WH)_ij]`` is of the order
    of the data. Entries are floored away from 0, since multiplicative updates
    cannot move an exact zero.
    """
    m, n = X.shape
    n_obs = X.size if mask is None else jnp.sum(mask)
    scale = jnp.sqrt(jnp.sum(X) / n_obs / rank)
    key_W, key_H = jax.random.split(key)
    floor = jnp.finfo(X.dtype).eps
    W = jnp.abs(jax.random.normal(key_W, (m, rank), X.dtype))
    H = jnp.abs(jax.random.normal(key_H, (rank, n), X.dtype))
    W, H = scale * jnp.maximum(W, floor), scale * jnp.maximum(H, floor)
    return W, H


def nndsvd(X: np.ndarray, rank: int, *, fill: str | None = "mean"):
    """Non-negative double SVD (Boutsidis and Gallopoulos 2008), in NumPy.

    Parameters
    ----------
    X : ndarray of shape (n_features, n_samples)
        Data with missing entries already set to 0.
    rank : int
        ``rank <= min(X.shape)``.
    fill : {"mean", None}
        ``"mean"`` replaces exact zeros by the mean of X (NNDSVDa), which
        multiplicative updates need; ``None`` keeps them (plain NNDSVD).

    Returns
    -------
    W : ndarray of shape (n_features, rank)
    H : ndarray of shape (rank, n_samples)

    Notes
    -----
    Ties between the positive and negative parts go to the positive part
    (``>=``), as in the original code. The construction does not depend on the
    signs the SVD returns (except on exact ties).
    """
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    m, n = X.shape
    W = np.zeros((m, rank))
    H = np.zeros((rank, n))
    W[:, 0] = np.sqrt(s[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(s[0]) * np.abs(Vt[0, :])
    for k in range(1, rank):
        u, v = U[:, k], Vt[k, :]
        up, un = np.maximum(u, 0), np.maximum(-u, 0)
        vp, vn = np.maximum(v, 0), np.maximum(-v, 0)
        up_n, un_n = np.linalg.norm(up), np.linalg.norm(un)
        vp_n, vn_n = np.linalg.norm(vp), np.linalg.norm(vn)
        m_pos, m_neg = up_n * vp_n, un_n * vn_n
        if m_pos >= m_neg:
            x, y, mu = up / max(up_n, 1e-300), vp / max(vp_n, 1e-300), m_pos
        else:
            x, y, mu = un / max(un_n, 1e-300), vn / max(vn_n, 1e-300), m_neg
        W[:, k] = np.sqrt(s[k] * mu) * x
        H[k, :] = np.sqrt(s[k] * mu) * y
    W[W < 1e-10] = 0.0
    H[H < 1e-10] = 0.0
    if fill == "mean":
        avg = X.mean()
        W[W == 0] = avg
        H[H == 0] = avg
    return W, H


def nndsvdar_fill(key, W, H, X):
    """Fill the exact zeros of NNDSVD factors with ``U(0, mean(X) / 100)``."""
    avg = jnp.mean(X)
    key_W, key_H = jax.random.split(key)
    W = jnp.where(W == 0, avg / 100 * jax.random.uniform(key_W, W.shape, W.dtype), W)
    H = jnp.where(H == 0, avg / 100 * jax.random.uniform(key_H, H.shape, H.dtype), H)
    floor = jnp.finfo(W.dtype).tiny
    return jnp.maximum(W, floor), jnp.maximum(H, floor)
