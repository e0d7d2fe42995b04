r"""NUTS for small NMF problems, the reference the faster engines are checked against.

Any NMF program (the built-in :class:`~bayesnmf.NMFModel` or a user's own
NumPyro program) is sampled by NumPyro's No-U-Turn sampler (Hoffman and Gelman
2014) on the unconstrained (log) scale of its latent sites. An NMF posterior is
invariant under permutations :math:`P` and positive rescalings :math:`D` of the
components, :math:`WH = (WPD)(D^{-1}P^{\top}H)`: chains started at different
points settle on different labellings, and the scale ridge mixes slowly. Draws
are therefore reported on the normalised scale (columns of ``W`` sum to one,
scale into ``H``) and with components matched across chains (``METHODS.md`` §6),
and R-hat and ESS are computed on those aligned components and on the total
intensity :math:`\sum_{ij}(WH)_{ij}`, which needs no alignment.

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. JMLR 15,
1593-1623.
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. Bayesian Analysis 16(2), 667-718.
https://doi.org/10.1214/20-BA1221
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import os
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model, log_density

from ._precision import precision_scope, resolve_dtype
from ._program import inspect_program, point_init, resolve_model, unconstrained_zero
from ._validation import as_nmf_data, check_positive_int, check_seed
from ._warnings import ConvergenceWarning
from .alignment import align_components, normalize_factors
from .model import NMFModel
from .result import NMFResult

__all__ = ["fit_nuts", "SAMPLE_STATS"]

#: NumPyro's extra fields and the ArviZ ``sample_stats`` names under which they
#: are stored in ``result.extra`` (arrays of shape (n_chains, n_draws)).
SAMPLE_STATS = {
    "diverging": "diverging",
    "energy": "energy",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
}
CHAIN_METHODS = ("vectorized", "sequential", "parallel")
#: R-hat above this on aligned components or total intensity raises a warning.
RHAT_WARN = 1.01
_INIT_FLOOR = 1e-2
_LOG_JOINT_BATCH = 64
#: Transitions per compiled chunk (the progress bar's resolution).
_CHUNK_LEN = 50
_KERNELS: dict = {}
_KERNEL_CACHE_SIZE = 16
# Times each compiled chunk function was traced (read by the tests).
_chunk_traces: collections.Counter = collections.Counter()


class _Kernels(NamedTuple):
    init: Callable
    advance: Callable
    finish: Callable


def _kernels(key, model_fn, X, mask, *, num_chains, num_warmup, chunk_len,
             target_accept_prob, max_tree_depth, chain_method):
    """Compiled NUTS functions for one model, data shape and settings (cached).

    ``init(keys, z, X, mask)`` starts one NUTS state per chain at the
    unconstrained values ``z``; ``advance(states, X, mask, n_active)`` runs
    ``chunk_len`` transitions of every chain (only the first ``n_active``
    count) and returns the states and the collected fields; ``finish(z, X,
    mask)`` maps unconstrained draws to the constrained latent values and their
    log joint density. Data are arguments, so refits with other values or
    seeds reuse the compiled code.
    """
    if key in _KERNELS:
        return _KERNELS[key]

    info = initialize_model(
        jax.random.PRNGKey(0), model_fn,
        init_strategy=functools.partial(unconstrained_zero),
        dynamic_args=True, model_args=(X, mask),
    )
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    postprocess = info.postprocess_fn

    def init_one(rng_key, z, X, mask):
        return init_kernel(
            z, num_warmup, target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth, model_args=(X, mask), rng_key=rng_key,
        )

    def advance_one(state, X, mask, n_active):
        _chunk_traces[key] += 1

        def step(s, i):
            new = sample_kernel(s, model_args=(X, mask))
            s = jax.tree.map(lambda a, b: jnp.where(i < n_active, a, b), new, s)
            fields = (new.diverging, new.energy, new.num_steps, new.accept_prob,
                      new.adapt_state.step_size)
            return s, (new.z, fields)

        return jax.lax.scan(step, state, jnp.arange(chunk_len))

    if chain_method == "parallel":
        init = jax.pmap(init_one, in_axes=(0, 0, None, None))
        advance = jax.pmap(advance_one, in_axes=(0, None, None, None))
    elif chain_method == "vectorized":
        init = jax.jit(jax.vmap(init_one, in_axes=(0, 0, None, None)))
        advance = jax.jit(jax.vmap(advance_one, in_axes=(0, None, None, None)))
    else:
        @jax.jit
        def init(keys, z, X, mask):
            return jax.lax.map(lambda a: init_one(*a, X, mask), (keys, z))

        @jax.jit
        def advance(states, X, mask, n_active):
            return jax.lax.map(lambda s: advance_one(s, X, mask, n_active), states)

    @jax.jit
    def finish(z, X, mask):
        constrain = postprocess(X, mask)

        def one(u):
            values = constrain(u)
            values = {k: values[k] for k in u}
            return values, log_density(model_fn, (X, mask), {}, values)[0]

        return jax.lax.map(one, z, batch_size=_LOG_JOINT_BATCH)

    kernels = _Kernels(init, advance, finish)
    if len(_KERNELS) >= _KERNEL_CACHE_SIZE:
        _KERNELS.pop(next(iter(_KERNELS)))
    _KERNELS[key] = kernels
    return kernels


def _floored(v):
    mean = jnp.mean(v)
    floor = jnp.where(mean > 0, _INIT_FLOOR * mean, jnp.finfo(v.dtype).tiny)
    return jnp.maximum(v, floor)


def _chain_starts(data, model, model_fn, program, Xj, Mj, init, num_chains, seed,
                  dtype):
    """Constrained starting values, one per chain (leading axis)."""
    if init == "map" and isinstance(model, NMFModel) and _map_ok(model):
        from .map import fit_map

        res = fit_map(data, model, n_restarts=num_chains, seed=seed, warn=False)
        values = {
            "W": res.restarts["W_raw"], "H": res.restarts["H_raw"],
            **{k: res.restarts[k] for k in res.params},
        }
        return {k: jnp.asarray(v, dtype) for k, v in values.items()}, "map", res
    key = jax.random.PRNGKey(seed)
    starts = [
        point_init(model, model_fn, program, Xj, Mj, jax.random.fold_in(key, c))
        for c in range(num_chains)
    ]
    return jax.tree.map(lambda *v: jnp.stack(v), *starts), "prior", None


def _map_ok(model: NMFModel) -> bool:
    try:
        model.prior_W.check_map()
        model.prior_H.check_map()
    except ValueError:
        return False
    return True


def _check_probability(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in (0, 1), got {value!r}.")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}.")
    return float(value)


def fit_nuts(
    X,
    model,
    *,
    mask=None,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    init: str = "map",
    chain_method: str = "vectorized",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    align: str = "chain",
    dtype="float64",
    progress: bool = False,
    warn: bool = True,
) -> NMFResult:
    r"""Sample the posterior of an NMF program with NUTS (NumPyro).

    NUTS is for small problems: every gradient touches all
    :math:`mr + rn` parameters and all :math:`mn` entries, and the scale ridge
    needs long trajectories. Up to a few thousand parameters
    (``m * r + r * n``) and a few hundred thousand entries run in minutes on a
    CPU; beyond, use MAP or VI.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data; labels are kept.
    model : NMFModel or callable
        A built-in model with proper priors, or a NumPyro program
        ``model(X, mask=None, *, subsample_size=None)`` with non-negative latent
        sites ``W`` (n_features, rank) and ``H`` (rank, n_samples), proper priors
        on both, and an observed site ``X`` inside plates over rows and columns.
        Other continuous latent sites are sampled too.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; passed to the program.
    num_chains, num_warmup, num_samples : int
        Chains, adaptation steps per chain, kept draws per chain.
    seed : int, default 0
        Seed of the MAP starts and of the sampler; the same seed gives the same
        draws bit for bit.
    init : {"map", "prior"}, default "map"
        Chain ``c`` starts at MAP restart ``c`` (:func:`~bayesnmf.fit_map` with
        ``n_restarts=num_chains``) for built-in models whose priors allow a MAP
        estimate; otherwise, and for ``"prior"``, at data-scaled random W and H
        (a different draw per chain) and the prior mean elsewhere. Entries below
        1% of their site's mean are raised to it (log of 0).
    chain_method : {"vectorized", "sequential", "parallel"}, default "vectorized"
        Chains batched with ``vmap``, one after the other (``lax.map``), or on
        separate devices (``pmap``; with fewer JAX devices than chains it runs
        sequentially, as NumPyro does).
    target_accept_prob : float, default 0.8
        Step-size adaptation target; raise it (0.9, 0.95) after divergences.
    max_tree_depth : int, default 10
        Cap on the trajectory doubling.
    align : {"chain", "draw"}, default "chain"
        Match components across chains once per chain (the permutation that
        best matches the chain's mean W to the reference), or per draw (when
        labels switch within a chain; it also makes overlapping components look
        more certain than they are).
    dtype : {"float64", "float32"}, default "float64"
        Precision of the sampler, in a scoped ``jax.enable_x64`` for float64.
    progress : bool, default False
        Show a progress bar over chunks of transitions (never when ``CI`` is
        set).
    warn : bool, default True
        Emit a :class:`~bayesnmf.ConvergenceWarning` on divergent transitions
        and when R-hat exceeds 1.01.

    Returns
    -------
    NMFResult
        ``method="nuts"``. ``draws["W"]`` (C, S, m, r) and ``draws["H"]``
        (C, S, r, n) are normalised (columns of W sum to one) and aligned
        across chains (``extra["draws_aligned"] = True``); the column sums of
        the raw W, in aligned order, are ``extra["W_column_sums"]`` (C, S, r),
        so ``W * s`` and ``H / s`` give back raw draws up to the permutation
        in ``extra["alignment_permutation"]``. Other latent sites are in
        ``draws`` as sampled. ``W_raw`` and ``H_raw`` are means of the aligned
        normalised draws; ``extra["WH_mean"]`` is the posterior mean of ``WH``.
        ``objective`` is the mean negative log joint density over the draws
        (per draw: ``extra["lp"]``, the log joint). ``extra`` also holds the
        sampler statistics named as ArviZ's ``sample_stats`` (see
        :data:`SAMPLE_STATS`), the number of divergences, and R-hat / ESS:
        ``rhat_W``, ``rhat_H``, ``ess_bulk_W``, ``ess_bulk_H`` per entry,
        ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min`` over aligned W and H,
        and ``rhat_total_intensity``, ``ess_bulk_total_intensity``.
        ``restarts`` has one entry per chain; ``converged`` is True when no
        transition diverged and every R-hat is at most 1.01 (R-hat needs two
        chains; with one it is NaN and only divergences count).

    Raises
    ------
    ValueError, TypeError
        For bad arguments, flat priors on W or H, or a program without the sites
        described above; all before anything is compiled.

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> X = np.random.default_rng(0).poisson(5.0, size=(8, 6))
    >>> model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Gamma(1.0, 0.2))
    >>> res = fit_nuts(X, model, num_chains=2, num_warmup=200, num_samples=200,
    ...                warn=False)
    >>> res.draws["W"].shape
    (2, 200, 8, 2)
    """
    # -- checks, all before anything is compiled -----------------------------------
    data = as_nmf_data(X, mask=mask)
    model_fn, finish_model = resolve_model(model, "NUTS")
    num_chains = check_positive_int(num_chains, "num_chains")
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples")
    seed = check_seed(seed)
    if init not in ("map", "prior"):
        raise ValueError(f"init: expected 'map' or 'prior', got {init!r}.")
    if chain_method not in CHAIN_METHODS:
        raise ValueError(
            f"chain_method: expected one of {CHAIN_METHODS}, got {chain_method!r}."
        )
    target_accept_prob = _check_probability(target_accept_prob, "target_accept_prob")
    max_tree_depth = check_positive_int(max_tree_depth, "max_tree_depth")
    if align not in ("chain", "draw"):
        raise ValueError(f"align: expected 'chain' or 'draw', got {align!r}.")
    dtype = resolve_dtype(dtype)
    masked = data.mask is not None

    with precision_scope(dtype):
        Xj = jnp.asarray(data.X, dtype)
        Mj = jnp.asarray(data.mask, dtype) if masked else None
        what = "the NMFModel" if isinstance(model, NMFModel) else (
            f"the model {getattr(model, '__qualname__', repr(model))}"
        )
        program = inspect_program(model_fn, Xj, Mj, what=what)
        result_model = finish_model(program)

        starts, init_used, map_fit = _chain_starts(
            data, model, model_fn, program, Xj, Mj, init, num_chains, seed, dtype
        )
        starts = {k: (_floored(v) if k in ("W", "H") else v) for k, v in starts.items()}
        init_params = {
            s.name: jax.vmap(biject_to(s.support).inv)(starts[s.name])
            for s in program.sites
        }
        chunk_len = _CHUNK_LEN
        if chain_method == "parallel" and jax.local_device_count() < num_chains:
            chain_method_used = "sequential"
        else:
            chain_method_used = chain_method
        key = (model_fn, program, masked, np.dtype(dtype).name, num_chains,
               num_warmup, chunk_len, target_accept_prob, max_tree_depth,
               chain_method_used)
        kernels = _kernels(
            key, model_fn, Xj, Mj, num_chains=num_chains, num_warmup=num_warmup,
            chunk_len=chunk_len, target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth, chain_method=chain_method_used,
        )
        keys = jax.random.split(jax.random.PRNGKey(seed), num_chains)
        states = kernels.init(keys, init_params, Xj, Mj)
        z, fields = _sample(kernels.advance, states, Xj, Mj, num_warmup, num_samples,
                            chunk_len, progress)
        flat = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), z)
        samples, lp = kernels.finish(flat, Xj, Mj)
        draw_axes = (num_chains, num_samples)
        samples = {
            k: np.asarray(v, np.float64).reshape(draw_axes + v.shape[1:])
            for k, v in samples.items()
        }
        lp = np.asarray(lp, np.float64).reshape(num_chains, num_samples)
        stats = {SAMPLE_STATS[k]: v for k, v in zip(SAMPLE_STATS, fields, strict=True)}

    reference = None
    if map_fit is not None:
        reference = normalize_factors(map_fit.W_raw, map_fit.H_raw)[0]
    aligned = _align(samples["W"], samples["H"], reference, align)
    diagnostics = _diagnostics(aligned["W"], aligned["H"], samples["W"], samples["H"])
    n_div = int(np.sum(stats["diverging"]))

    W_mean = aligned["W"].mean(axis=(0, 1))
    H_mean = aligned["H"].mean(axis=(0, 1))
    WH_mean = np.einsum("csir,csrj->ij", samples["W"], samples["H"]) / (
        num_chains * num_samples
    )
    others = {k: v for k, v in samples.items() if k not in ("W", "H")}
    params = {k: float(v.mean()) for k, v in others.items() if v.ndim == 2}
    neg_lp = -lp
    rhats = [diagnostics["rhat_max"], diagnostics["rhat_total_intensity"]]
    converged = n_div == 0 and all(r <= RHAT_WARN for r in rhats if np.isfinite(r))

    extra = {
        **stats,
        "lp": lp,
        "num_divergent": n_div,
        "draws_aligned": True,
        "draws_normalized": True,
        "W_column_sums": aligned["scale"],
        "alignment_permutation": aligned["permutation"],
        "alignment_cosine": aligned["cosine"],
        "WH_mean": WH_mean,
        **diagnostics,
        **{f"mean_{k}": v.mean(axis=(0, 1)) for k, v in others.items() if v.ndim > 2},
    }
    draws = {"W": aligned["W"], "H": aligned["H"], **others}
    chain_W = aligned["W"].mean(axis=1)
    chain_H = aligned["H"].mean(axis=1)
    restarts = {
        "W_raw": chain_W,
        "H_raw": chain_H,
        "objective": neg_lp.mean(axis=1),
        "n_iter": np.full(num_chains, num_warmup + num_samples),
        "converged": np.array([
            not stats["diverging"][c].any() for c in range(num_chains)
        ]),
        "trace": neg_lp,
        **{k: v.mean(axis=1) for k, v in others.items() if v.ndim == 2},
    }
    settings = {
        "method": "nuts", "engine": "numpyro-nuts", "seed": seed,
        "num_chains": num_chains, "num_warmup": num_warmup,
        "num_samples": num_samples, "init": init, "init_used": init_used,
        "chain_method": chain_method, "chain_method_used": chain_method_used,
        "target_accept_prob": target_accept_prob,
        "max_tree_depth": max_tree_depth, "align": align,
        "draws_normalized": True, "draws_aligned": True,
        "dtype": np.dtype(dtype).name, "masked": masked,
        "n_observed": data.n_observed,
        "custom_model": not isinstance(model, NMFModel),
    }
    result = NMFResult(
        model=result_model,
        method="nuts",
        W_raw=W_mean,
        H_raw=H_mean,
        params=params,
        objective=float(neg_lp.mean()),
        objective_name="mean negative log joint density over draws",
        trace=neg_lp.mean(axis=0),
        trace_iter=num_warmup + np.arange(1, num_samples + 1),
        n_iter=num_warmup + num_samples,
        converged=bool(converged),
        feature_names=list(data.feature_names),
        sample_names=list(data.sample_names),
        restarts=restarts,
        best_restart=0,
        settings=settings,
        draws=draws,
        extra=extra,
    )
    if warn:
        _warn(n_div, num_chains * num_samples, diagnostics, target_accept_prob)
    return result


def _sample(advance, states, X, mask, num_warmup, num_samples, chunk_len, progress):
    """Warm up, then sample, in chunks; returns draws z and fields, (C, S, ...)."""
    bar = None
    total = num_warmup + num_samples
    if progress and not os.environ.get("CI"):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="NUTS", unit="step", leave=False)
    kept = []
    try:
        for phase, length in (("warmup", num_warmup), ("sample", num_samples)):
            done = 0
            while done < length:
                n_active = min(chunk_len, length - done)
                states, out = advance(states, X, mask, jnp.asarray(n_active, jnp.int32))
                if phase == "sample":
                    kept.append(jax.tree.map(lambda v, n=n_active: v[:, :n], out))
                done += n_active
                if bar is not None:
                    bar.update(n_active)
                    bar.set_description(f"NUTS {phase}")
    finally:
        if bar is not None:
            bar.close()
    z, fields = jax.tree.map(lambda *v: np.concatenate(v, axis=1), *kept)
    return z, [np.asarray(f) for f in fields]


def _align(W, H, reference, how):
    """Normalise every draw and match components across chains (or draws)."""
    C, S = W.shape[:2]
    Wn, Hn = normalize_factors(W, H)
    scale = W.sum(axis=-2)  # (C, S, r)
    ref = "best" if reference is None else reference
    if how == "draw":
        res = align_components(Wn, Hn, reference=ref)
        perm = res.permutations  # (C, S, r)
        Wa, Ha, cosine = res.W, res.H, res.cosine
    else:
        res = align_components(Wn.mean(axis=1), Hn.mean(axis=1), reference=ref)
        perm = res.permutations  # (C, r)
        index = np.broadcast_to(perm[:, None, None, :], Wn.shape)
        Wa = np.take_along_axis(Wn, index, axis=-1)
        Ha = np.take_along_axis(Hn, np.broadcast_to(perm[:, None, :, None], Hn.shape),
                                axis=-2)
        cosine = res.cosine
    order = perm[:, None, :] if perm.ndim == 2 else perm
    scale = np.take_along_axis(scale, np.broadcast_to(order, scale.shape), axis=-1)
    return {"W": Wa, "H": Ha, "permutation": perm, "cosine": cosine, "scale": scale}


def _diagnostics(Wa, Ha, W, H):
    """Split R-hat and ESS on aligned components and on the total intensity."""
    import arviz_stats

    C = Wa.shape[0]
    total = (W.sum(axis=-2) * H.sum(axis=-1)).sum(axis=-1)  # (C, S)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, v in (("W", Wa), ("H", Ha)):
            out[f"rhat_{name}"] = np.asarray(arviz_stats.rhat(v), np.float64)
            out[f"ess_bulk_{name}"] = np.asarray(arviz_stats.ess(v), np.float64)
            out[f"ess_tail_{name}"] = np.asarray(
                arviz_stats.ess(v, method="tail", prob=0.05), np.float64
            )
        out["rhat_total_intensity"] = float(arviz_stats.rhat(total))
        out["ess_bulk_total_intensity"] = float(arviz_stats.ess(total))

    def both(key):
        return np.concatenate([out[f"{key}_W"].ravel(), out[f"{key}_H"].ravel()])

    out["rhat_max"] = float(np.nanmax(both("rhat"))) if C > 1 else math.nan
    out["ess_bulk_min"] = float(np.nanmin(both("ess_bulk")))
    out["ess_tail_min"] = float(np.nanmin(both("ess_tail")))
    del out["ess_tail_W"], out["ess_tail_H"]
    return out


def _warn(n_div, n_draws, diagnostics, target_accept_prob):
    if n_div:
        warnings.warn(
            f"NUTS: {n_div} of {n_draws} transitions after warmup diverged; the "
            "draws may be biased. Raise target_accept_prob (now "
            f"{target_accept_prob:g}) or use more informative priors.",
            ConvergenceWarning,
            stacklevel=3,
        )
    bad = {k: diagnostics[k] for k in ("rhat_max", "rhat_total_intensity")
           if np.isfinite(diagnostics[k]) and diagnostics[k] > RHAT_WARN}
    if bad:
        text = ", ".join(f"{k}={v:.3f}" for k, v in bad.items())
        warnings.warn(
            f"NUTS: R-hat above {RHAT_WARN} ({text}) on the aligned components or "
            "the total intensity; run longer chains (num_warmup, num_samples) or "
            "check result.extra['alignment_cosine'] for components that do not "
            "match across chains.",
            ConvergenceWarning,
            stacklevel=3,
        )
