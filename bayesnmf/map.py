r"""MAP estimation by multiplicative (majorisation-minimisation) updates.

Each sweep updates H, then W, then the likelihood's own parameters, and never
increases the MAP objective

.. math::

    \mathcal C(W, H) = -\log p(X \mid WH) - \log p(W) - \log p(H),

the negative log joint density of the model's NumPyro program (constants
included). Restarts are batched with :func:`jax.vmap` into one compiled call;
each restart runs a :func:`jax.lax.while_loop` that stops when the decrease of
:math:`\mathcal C` over the last ``check_every`` sweeps falls below ``tol``
times its total decrease since the start, or at ``max_iter`` sweeps.

References
----------
Lee, D. D. and Seung, H. S. (2001). Algorithms for non-negative matrix
factorization. NIPS 13.
Févotte, C. and Idier, J. (2011). Algorithms for nonnegative matrix
factorization with the β-divergence. Neural Computation 23(9).
https://doi.org/10.1162/NECO_a_00168
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._init import INITS, nndsvd, nndsvdar_fill, random_init
from ._init import restart_keys as _restart_keys
from ._precision import precision_scope, resolve_dtype
from ._validation import (
    NMFData,
    as_nmf_data,
    check_positive,
    check_positive_int,
    check_rank,
    check_seed,
)
from ._warnings import ConvergenceWarning
from .model import NMFModel
from .priors import Frozen
from .result import NMFResult

__all__ = ["fit_map", "MAPState"]


class MAPState(NamedTuple):
    """Loop state of one restart (a leading restart axis when batched).

    Attributes
    ----------
    W : array of shape (n_features, rank)
    H : array of shape (rank, n_samples)
    params : dict
        Likelihood parameters being estimated (for example ``noise_var``).
    cache : dict
        Products carried from one sweep to the next (``WH`` for Poisson).
    n_iter : int array
        Sweeps done.
    objective : float array
        Objective after the last check.
    objective0 : float array
        Objective at the start.
    converged : bool array
        Whether the tolerance was met.
    trace : array of shape (n_checks,)
        Objective at each check, NaN after the last one.
    n_checks : int array
        Checks done (index of the last filled entry of ``trace``).
    """

    W: jax.Array
    H: jax.Array
    params: dict
    cache: dict
    n_iter: jax.Array
    objective: jax.Array
    objective0: jax.Array
    converged: jax.Array
    trace: jax.Array
    n_checks: jax.Array


@functools.lru_cache(maxsize=64)
def _kernels(model: NMFModel, masked: bool, n_trace: int, check_every: int,
             fixed: str | None = None):
    """Compiled ``init`` and ``run`` functions for one model and settings.

    The rank is part of ``model``; shapes and dtypes are handled by ``jit``'s
    own cache, so a kernel compiles once per model, shape and dtype.
    """
    lik, prior_W, prior_H = model.likelihood, model.prior_W, model.prior_H
    objective = model.neg_log_joint

    def start(X, mask, W, H):
        params = {**lik.init_params(X, mask, W, H), **model.init_prior_params(W, H)}
        cache = lik.init_cache(X, mask, W, H)
        obj = objective(X, mask, W, H, params, cache)
        trace = jnp.full((n_trace,), jnp.nan, X.dtype).at[0].set(obj)
        zero = jnp.zeros((), jnp.int32)
        return MAPState(W, H, params, cache, zero, obj, obj, jnp.array(False),
                        trace, zero)

    def start_all(X, mask, W, H):
        return jax.vmap(start, in_axes=(None, None, 0, 0))(X, mask, W, H)

    def run_all(X, mask, state, iter_limit, tol):
        # One unbatched loop over chunks of check_every sweeps, with the sweeps
        # vmapped over restarts: the trip count is a scalar, so the state of
        # finished restarts is selected once per chunk, not once per sweep.
        every_sweep = lik.update_params_every_sweep

        def sweep(W, H, params, cache):
            pW = Frozen() if fixed == "W" else prior_W.bind(params, "W")
            pH = Frozen() if fixed == "H" else prior_H.bind(params, "H")
            W, H, cache = lik.sweep(X, mask, W, H, params, pW, pH, cache)
            if every_sweep:
                params = lik.update_params(X, mask, W, H, params, cache)
            params = model.update_prior_params(W, H, params)
            return W, H, params, cache

        def chunk_params(W, H, params, cache):
            return lik.update_params(X, mask, W, H, params, cache)

        sweeps = jax.vmap(sweep)
        objectives = jax.vmap(objective, in_axes=(None, None, 0, 0, 0, 0))

        def cond(carry):
            s, it = carry
            return jnp.any(~s.converged) & (it < iter_limit)

        def body(carry):
            s, it = carry
            n = jnp.minimum(check_every, iter_limit - it)
            W, H, params, cache = jax.lax.fori_loop(
                0, n, lambda _, t: sweeps(*t), (s.W, s.H, s.params, s.cache)
            )
            if not every_sweep:
                params = jax.vmap(chunk_params)(W, H, params, cache)
            obj = objectives(X, mask, W, H, params, cache)
            decrease = s.objective - obj
            converged = (tol > 0) & (decrease <= tol * (s.objective0 - obj))
            k = s.n_checks + 1
            trace = jax.vmap(lambda t, i, o: t.at[i].set(o))(s.trace, k, obj)
            new = MAPState(W, H, params, cache, s.n_iter + n, obj, s.objective0,
                           converged, trace, k)
            active = ~s.converged  # finished restarts keep their state

            def keep(a, b):
                return jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

            return jax.tree.map(keep, new, s), it + n

        # Restarts still running have all done the same number of sweeps.
        state, _ = jax.lax.while_loop(cond, body, (state, jnp.max(state.n_iter)))
        return state

    @jax.jit
    def fit(X, mask, W, H, iter_limit, tol):
        return run_all(X, mask, start_all(X, mask, W, H), iter_limit, tol)

    # For progress bars: the same loop, resumable in chunks.
    return fit, jax.jit(start_all), jax.jit(run_all)


@functools.partial(jax.jit, static_argnames="rank")
def _random_starts(X, mask, keys, rank):
    return jax.vmap(lambda key: random_init(key, X, mask, rank))(keys)


@jax.jit
def _filled_starts(X, W, H, keys):
    return jax.vmap(lambda key: nndsvdar_fill(key, W, H, X))(keys)


def _check_init_arrays(W_init, H_init, shape, rank):
    m, n = shape
    out = []
    pairs = (("W_init", W_init, (m, rank)), ("H_init", H_init, (rank, n)))
    for name, arr, tail in pairs:
        if arr is None:
            raise ValueError(f"{name}: init='custom' needs both W_init and H_init.")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape[-2:] != tail or arr.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected shape {tail} (or (n_restarts, *{tail})), got "
                f"{arr.shape}."
            )
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name}: expected finite non-negative entries.")
        out.append(arr if arr.ndim == 3 else arr[None])
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(
            f"W_init, H_init: different numbers of restarts, {out[0].shape[0]} and "
            f"{out[1].shape[0]}."
        )
    return out


def fit_map(
    X,
    model: NMFModel | int,
    *,
    mask=None,
    n_restarts: int = 1,
    seed: int = 0,
    init: str = "random",
    W_init=None,
    H_init=None,
    max_iter: int = 2000,
    tol: float = 1e-5,
    check_every: int = 10,
    dtype="float64",
    allow_nan: bool = False,
    progress: bool = False,
    warn: bool = True,
    fixed: str | None = None,
) -> NMFResult:
    """Fit an NMF model by MAP estimation with multiplicative updates.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data (NumPy array, pandas DataFrame, AnnData or
        :class:`~bayesnmf.NMFData`); labels are kept.
    model : NMFModel or int
        The model to fit; an int is the rank of a Poisson model with flat
        priors (classical KL NMF).
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; unobserved entries do not influence the fit.
    n_restarts : int, default 1
        Independent starts, batched in one compiled call; the one with the
        lowest objective is kept and all are returned in ``result.restarts``.
    seed : int, default 0
        Seed of the random starts. Restart ``i`` is the same whatever
        ``n_restarts`` is.
    init : {"random", "nndsvda", "nndsvdar", "nndsvd", "custom"}
        Starting factors. ``"nndsvda"`` is deterministic (one restart);
        ``"nndsvdar"`` fills NNDSVD's zeros with small random values, one fill
        per restart; ``"custom"`` takes ``W_init`` and ``H_init``.
    W_init, H_init : array-like, optional
        Starting factors for ``init="custom"``, of shape (n_features, rank) and
        (rank, n_samples), or with a leading restart axis.
    max_iter : int, default 2000
        Cap on the number of sweeps (one sweep updates H, then W).
    tol : float, default 1e-5
        Stop when the decrease of the objective over the last ``check_every``
        sweeps is at most ``tol`` times its decrease since the start. ``0``
        runs exactly ``max_iter`` sweeps.
    check_every : int, default 10
        Sweeps between objective evaluations (the trace's resolution).
    dtype : {"float64", "float32"}
        Floating-point type of the iterations. float64 runs inside a scoped
        ``jax.enable_x64`` context; no global JAX setting changes.
    allow_nan : bool, default False
        Treat NaN entries of X as missing (added to the mask).
    progress : bool, default False
        Show a progress bar over sweeps (the fit then runs in chunks).
    warn : bool, default True
        Emit a :class:`~bayesnmf.ConvergenceWarning` when the best restart hits
        ``max_iter`` before meeting ``tol``.
    fixed : {"W", "H"}, optional
        Hold one factor at its starting value (``init="custom"``) and fit the
        other: refitting exposures to known signatures, or folding new rows or
        columns into a fitted model.

    Returns
    -------
    NMFResult
        ``method="map"``; ``objective`` is the negative log joint density.

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> X = np.random.default_rng(0).poisson(5.0, size=(20, 10))
    >>> res = bn.fit_map(X, bn.NMFModel(2, bn.Poisson()), n_restarts=4)
    >>> res.W.shape, res.H.shape
    ((20, 2), (2, 10))
    """
    # -- checks, all before anything is traced --------------------------------
    data = as_nmf_data(X, mask=mask, allow_nan=allow_nan)
    if isinstance(model, NMFModel):
        pass
    elif isinstance(model, (int, np.integer)) and not isinstance(model, bool):
        model = NMFModel(check_rank(model))
    else:
        raise TypeError(f"model: expected an NMFModel or an int rank, got {model!r}.")
    if init not in (*INITS, "custom"):
        raise ValueError(
            f"init: expected one of {(*INITS, 'custom')}, got {init!r}."
        )
    check_rank(model.rank, data.shape, init=init)
    model.likelihood.check_data(data.X, data.mask)
    model.prior_W.check_map()
    model.prior_H.check_map()
    n_restarts = check_positive_int(n_restarts, "n_restarts")
    seed = check_seed(seed)
    max_iter = check_positive_int(max_iter, "max_iter")
    check_every = check_positive_int(check_every, "check_every")
    tol = check_positive(tol, "tol", allow_zero=True)
    dtype = resolve_dtype(dtype)
    if init in ("nndsvda", "nndsvd") and n_restarts > 1:
        raise ValueError(
            f"n_restarts: init={init!r} is deterministic, so restarts would be "
            f"identical; got n_restarts={n_restarts}. Use init='nndsvdar' or "
            "'random' for several restarts."
        )
    if fixed not in (None, "W", "H"):
        raise ValueError(f"fixed: expected None, 'W' or 'H', got {fixed!r}.")
    if fixed is not None and init != "custom":
        raise ValueError(
            f"fixed: holding {fixed} fixed needs init='custom' with W_init and "
            f"H_init, got init={init!r}."
        )
    if init == "custom":
        W0, H0 = _check_init_arrays(W_init, H_init, data.shape, model.rank)
        n_restarts = W0.shape[0]
    elif W_init is not None or H_init is not None:
        raise ValueError("W_init, H_init: given, but init is not 'custom'.")

    n_trace = -(-max_iter // check_every) + 1
    masked = data.mask is not None
    kernels = _kernels(model, masked, n_trace, check_every, fixed)

    with precision_scope(dtype):
        Xj = jnp.asarray(data.X, dtype=dtype)
        Mj = jnp.asarray(data.mask, dtype=dtype) if masked else None
        if init == "random":
            W0, H0 = _random_starts(Xj, Mj, _restart_keys(seed, n_restarts),
                                    model.rank)
        elif init == "custom":
            W0, H0 = jnp.asarray(W0, dtype), jnp.asarray(H0, dtype)
        else:
            Ws, Hs = nndsvd(data.X, model.rank,
                            fill=None if init != "nndsvda" else "mean")
            Ws, Hs = jnp.asarray(Ws, dtype), jnp.asarray(Hs, dtype)
            if init == "nndsvdar":
                W0, H0 = _filled_starts(Xj, Ws, Hs, _restart_keys(seed, n_restarts))
            else:
                W0, H0 = Ws[None], Hs[None]
        tol_j = jnp.asarray(tol, dtype)
        state = _run(kernels, Xj, Mj, W0, H0, max_iter, tol_j, check_every, progress)
        state = jax.tree.map(np.asarray, state)

    result = _to_result(data, model, state, check_every, settings={
        "method": "map", "seed": seed, "n_restarts": n_restarts, "init": init,
        "max_iter": max_iter, "tol": tol, "check_every": check_every,
        "dtype": np.dtype(dtype).name, "masked": masked, "fixed": fixed,
        "n_observed": data.n_observed,
    })
    if warn and not result.converged:
        warnings.warn(
            f"MAP fit did not converge within max_iter={max_iter} sweeps "
            f"(tol={tol:g}); increase max_iter or loosen tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def _run(kernels, X, mask, W0, H0, max_iter, tol, check_every, progress):
    fit, start, run = kernels
    if not progress or os.environ.get("CI"):
        return fit(X, mask, W0, H0, max_iter, tol)
    from tqdm.auto import tqdm

    state = start(X, mask, W0, H0)
    # Chunks of whole checks: the checks fall where they would without a
    # progress bar, so the result is the same.
    chunk = check_every * max(1, max_iter // 50 // check_every)
    with tqdm(total=max_iter, desc="MAP sweeps", unit="sweep", leave=False) as bar:
        done = 0
        while done < max_iter:
            limit = min(max_iter, done + chunk)
            state = run(X, mask, state, limit, tol)
            bar.update(limit - done)
            done = limit
            if np.asarray(state.converged).all():
                break
            bar.set_postfix(objective=f"{float(np.min(state.objective)):.6g}")
    return state


def _to_result(data: NMFData, model, state: MAPState, check_every, settings):
    obj = state.objective.astype(np.float64)
    best = int(np.nanargmin(obj))
    n_checks = int(state.n_checks[best])
    iters = np.minimum(np.arange(n_checks + 1) * check_every, state.n_iter[best])
    params = {k: float(v[best]) for k, v in state.params.items() if v.ndim == 1}
    extra = {k: v[best].astype(np.float64) for k, v in state.params.items()
             if v.ndim > 1}
    restarts = {
        "W_raw": state.W.astype(np.float64),
        "H_raw": state.H.astype(np.float64),
        "objective": obj,
        "n_iter": state.n_iter.astype(np.int64),
        "converged": state.converged.astype(bool),
        "trace": state.trace.astype(np.float64),
        **{k: v.astype(np.float64) for k, v in state.params.items()},
    }
    return NMFResult(
        model=model,
        method="map",
        W_raw=restarts["W_raw"][best],
        H_raw=restarts["H_raw"][best],
        params=params,
        objective=float(obj[best]),
        objective_name="negative log joint density",
        trace=restarts["trace"][best, : n_checks + 1],
        trace_iter=iters,
        n_iter=int(state.n_iter[best]),
        converged=bool(state.converged[best]),
        feature_names=list(data.feature_names),
        sample_names=list(data.sample_names),
        restarts=restarts,
        best_restart=best,
        settings=settings,
        extra=extra,
    )
