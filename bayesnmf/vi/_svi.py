r"""Stochastic variational inference for any NMF program, through NumPyro's SVI.

The variational family is mean-field over every latent site of the program,

.. math::

    q(W, H, \theta) = \prod_{ik} q(W_{ik}) \prod_{kj} q(H_{kj}) \prod_l q(\theta_l),

and its parameters maximise a Monte Carlo estimate of the evidence lower bound

.. math::

    \mathrm{ELBO}(q) = \mathbb E_q[\log p(X, W, H, \theta)
        - \log q(W, H, \theta)] \le \log p(X)

by stochastic gradients (Kingma and Welling 2014; Ranganath, Gerrish and Blei
2014). Two built-in families cover the positive sites: ``"lognormal"``, a normal
on the log scale (what ``numpyro.infer.autoguide.AutoNormal`` does for positive
sites), and ``"gamma"``, a Gamma(concentration, rate) per entry whose KL term to a
gamma prior is analytic (``TraceMeanField_ELBO``). Latent sites with another
support get a normal on their unconstrained scale in either family.

With ``batch_size`` columns per step, the plate over columns draws a random
subset of fixed size each step and scales the likelihood and the local terms by
``n_samples / batch_size`` (Hoffman, Blei, Wang and Paisley 2013); the local
variational parameters of ``H`` are indexed by the plate's indices
(``METHODS.md`` §3.3 (b)).

References
----------
Hoffman, M. D., Blei, D. M., Wang, C. and Paisley, J. (2013). Stochastic
variational inference. JMLR 14, 1303-1347.
Kingma, D. P. and Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
https://doi.org/10.48550/arXiv.1312.6114
Ranganath, R., Gerrish, S. and Blei, D. M. (2014). Black box variational
inference. AISTATS.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import numbers
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO

from .._precision import precision_scope, resolve_dtype
from .._program import Program, inspect_program, point_init, resolve_model
from .._validation import (
    as_nmf_data,
    check_positive,
    check_positive_int,
    check_seed,
)
from .._warnings import ConvergenceWarning
from ..model import NMFModel
from ..result import NMFResult

__all__ = ["fit_svi", "mean_field_guide"]

GUIDES = ("lognormal", "gamma")

#: Coefficient of variation of every q at the start.
_INIT_CV = 0.1
#: Floor of a starting value, relative to the mean of its site (log of 0).
_INIT_FLOOR = 1e-2
#: Particles of the final ELBO estimate, evaluated 10 at a time.
_EVAL_PARTICLES = 100
_EVAL_BATCH = 10
#: Chunks of steps: the loss trace has one (averaged) entry per chunk.
_MAX_CHUNKS = 100
#: The step size decays exponentially to this fraction of ``learning_rate``.
_LR_DECAY = 0.1
_CLIP_NORM = 10.0
#: Sweeps of the MAP fit that centres the starting q.
_MAP_MAX_ITER = 300

# Times each compiled chunk function was traced (read by the tests).
_step_traces: collections.Counter = collections.Counter()


# -- the mean-field guides -----------------------------------------------------------
def _is_gamma(site, family: str) -> bool:
    return family == "gamma" and site.positive


def _unconstrained_shape(site) -> tuple:
    if site.positive:
        return site.shape
    return tuple(biject_to(site.support).inverse_shape(site.shape))


def _site_params(site, family: str) -> dict:
    """Declare the variational parameters of one site (full shapes)."""
    name = site.name
    if _is_gamma(site, family):
        start = jnp.full(site.shape, 1.0 / _INIT_CV**2)
        return {
            "concentration": numpyro.param(
                f"{name}_concentration", start, constraint=constraints.positive
            ),
            "rate": numpyro.param(
                f"{name}_rate", start, constraint=constraints.positive
            ),
        }
    shape = _unconstrained_shape(site)
    return {
        "loc": numpyro.param(f"{name}_loc", jnp.zeros(shape)),
        "scale": numpyro.param(
            f"{name}_scale", jnp.full(shape, _INIT_CV), constraint=constraints.positive
        ),
    }


def _site_distribution(site, q: dict):
    if "concentration" in q:
        d = dist.Gamma(q["concentration"], q["rate"])
    elif site.positive:
        d = dist.LogNormal(q["loc"], q["scale"])
    else:
        base = dist.Normal(q["loc"], q["scale"]).to_event(site.event_dim)
        return dist.TransformedDistribution(base, biject_to(site.support))
    return d.to_event(site.event_dim) if site.event_dim else d


def _sample_site(site, q: dict, skip: str | None = None):
    with contextlib.ExitStack() as stack:
        for plate in site.plates:
            if plate.name != skip:
                plate_cm = numpyro.plate(plate.name, plate.size, dim=plate.dim)
                stack.enter_context(plate_cm)
        numpyro.sample(site.name, _site_distribution(site, q))


def mean_field_guide(program: Program, family: str = "lognormal"):
    """Build a mean-field NumPyro guide over every latent site of ``program``.

    Parameters
    ----------
    program : Program
        The inspected model (:func:`bayesnmf._program.inspect_program`).
    family : {"lognormal", "gamma"}
        Variational family of the positive sites. Others get a normal on their
        unconstrained scale.

    Returns
    -------
    callable
        ``guide(X, mask=None, *, subsample_size=None)``. Its parameters are
        ``{site}_loc`` and ``{site}_scale`` (normal on the unconstrained scale)
        or ``{site}_concentration`` and ``{site}_rate`` (gamma), all of the
        site's full shape; sites local to the plate over columns are indexed by
        that plate's subsample indices, which NumPyro replays into the model.
    """
    if family not in GUIDES:
        raise ValueError(f"guide: expected one of {GUIDES}, got {family!r}.")
    column = program.column_plate

    def guide(X, mask=None, *, subsample_size=None):
        q = {site.name: _site_params(site, family) for site in program.sites}
        for site in program.global_sites:
            _sample_site(site, q[site.name])
        if not program.local_sites:
            return
        with numpyro.plate(
            column.name, column.size, subsample_size=subsample_size, dim=column.dim
        ) as idx:
            for site in program.local_sites:
                axis = column.dim - site.event_dim
                local = {
                    k: jnp.take(v, idx, axis=axis) for k, v in q[site.name].items()
                }
                _sample_site(site, local, skip=column.name)

    return guide


def _floored(v):
    mean = jnp.mean(v)
    floor = jnp.where(mean > 0, _INIT_FLOOR * mean, jnp.finfo(v.dtype).tiny)
    return jnp.maximum(v, floor)


def _guide_start(program: Program, family: str, values: dict) -> dict:
    """Variational parameters centred on ``values`` with a small spread."""
    out = {}
    for site in program.sites:
        v = jnp.asarray(values[site.name])
        name = site.name
        if _is_gamma(site, family):
            c = jnp.full(site.shape, 1.0 / _INIT_CV**2, v.dtype)
            out[f"{name}_concentration"] = c
            out[f"{name}_rate"] = c / _floored(v)
        else:
            if site.positive:
                loc = jnp.log(_floored(v))
            else:
                loc = biject_to(site.support).inv(v)
            out[f"{name}_loc"] = loc
            out[f"{name}_scale"] = jnp.full(loc.shape, _INIT_CV, v.dtype)
    return out


def _guide_means(program: Program, family: str, params: dict) -> dict:
    """Exact means of q for the positive sites of a built-in family."""
    means = {}
    for site in program.sites:
        name = site.name
        if _is_gamma(site, family):
            means[name] = params[f"{name}_concentration"] / params[f"{name}_rate"]
        elif site.positive:
            loc, scale = params[f"{name}_loc"], params[f"{name}_scale"]
            means[name] = np.exp(loc + 0.5 * scale**2)
    return means


# -- compiled kernels ------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _kernels(model_fn, guide_spec, program: Program, *, num_particles: int,
             learning_rate: float, num_steps: int, chunk_len: int, num_draws: int):
    """SVI object and compiled chunk, evaluation and sampling functions.

    Everything the compiled functions close over is part of the cache key, so
    fits that differ only in data values, seed or starting point share them.
    """
    builtin = isinstance(guide_spec, str)
    guide = mean_field_guide(program, guide_spec) if builtin else guide_spec
    elbo_cls = TraceMeanField_ELBO if guide_spec == "gamma" else Trace_ELBO

    def step_size(t):
        return learning_rate * _LR_DECAY ** (t / num_steps)

    optim = numpyro.optim.ClippedAdam(step_size, clip_norm=_CLIP_NORM)
    svi = SVI(model_fn, guide, optim, elbo_cls(num_particles=num_particles))
    kwargs = {"subsample_size": program.batch_size} if program.batch_size else {}

    @jax.jit
    def run_chunk(state, X, mask, n_active):
        _step_traces[id(run_chunk)] += 1

        def body(s, i):
            new, loss = svi.stable_update(s, X, mask, **kwargs)
            active = i < n_active
            s = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, s)
            return s, jnp.where(active & jnp.isfinite(loss), loss, jnp.nan)

        return jax.lax.scan(body, state, jnp.arange(chunk_len))

    eval_elbo = elbo_cls(num_particles=1)

    @jax.jit
    def evaluate(params, keys, X, mask):
        def one(key):
            return eval_elbo.loss(key, params, model_fn, guide, X, mask)

        return jax.lax.map(one, keys, batch_size=_EVAL_BATCH)

    names = [site.name for site in program.sites]

    @jax.jit
    def sample(params, key, X, mask):
        predictive = Predictive(
            guide, params=params, num_samples=num_draws, return_sites=names
        )
        return predictive(key, X, mask)

    return svi, run_chunk, evaluate, sample, kwargs


# -- checks ---------------------------------------------------------------------------
def _check_batch_size(batch_size, n):
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"batch_size: expected None or an integer in [1, n_samples={n}], got "
            f"{batch_size!r}."
        )
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size: expected None or an integer in [1, n_samples={n}], got "
            f"{batch_size}."
        )
    return None if batch_size == n else int(batch_size)


def _converged(trace: np.ndarray, tol: float) -> tuple[bool, float]:
    """Apply the stopping rule of ``fit_svi`` (Notes): (flag, relative change)."""
    k = max(1, trace.size // 10)
    if trace.size < 2 * k or not np.isfinite(trace[-2 * k:]).all():
        return False, math.nan
    last, prev = trace[-k:], trace[-2 * k: -k]
    change = abs(prev.mean() - last.mean())
    noise = 0.0
    if k > 1:
        noise = 2.0 * math.sqrt(last.var(ddof=1) / k + prev.var(ddof=1) / k)
    scale = max(abs(last.mean()), np.finfo(np.float64).tiny)
    return bool(change <= tol * scale + noise), change / scale


def _map_values(data, model, seed, dtype):
    """A quick MAP estimate (NNDSVDa start, 300 sweeps at most) to centre q."""
    from ..map import fit_map

    start = "nndsvda" if model.rank <= min(data.shape) else "random"
    res = fit_map(data, model, init=start, seed=seed, max_iter=_MAP_MAX_ITER,
                  tol=1e-4, warn=False)
    values = {"W": jnp.asarray(res.W_raw, dtype), "H": jnp.asarray(res.H_raw, dtype)}
    values.update({k: jnp.asarray(v, dtype) for k, v in res.params.items()})
    return values


# -- the public function -------------------------------------------------------------
def fit_svi(
    X,
    model,
    *,
    mask=None,
    guide="lognormal",
    num_steps: int = 5000,
    learning_rate: float = 0.02,
    batch_size: int | None = None,
    num_particles: int = 1,
    seed: int = 0,
    init: str = "map",
    num_draws: int = 500,
    tol: float = 1e-4,
    dtype="float64",
    progress: bool = False,
    warn: bool = True,
) -> NMFResult:
    r"""Fit any NMF program by stochastic variational inference (NumPyro SVI).

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data (NumPy array, pandas DataFrame, AnnData or
        :class:`~bayesnmf.NMFData`); labels are kept.
    model : NMFModel or callable
        A built-in model with proper priors, or a user's NumPyro program
        ``model(X, mask=None, *, subsample_size=None)`` with latent sites ``W``
        of shape (n_features, rank) and ``H`` of shape (rank, n_samples), both
        non-negative, and an observed site ``X`` inside plates over rows and
        columns. Other continuous latent sites are allowed. The rank is read
        from ``W``.
    mask : array-like of shape (n_features, n_samples), optional
        1 where X is observed; passed to the program as its second argument.
    guide : {"lognormal", "gamma"} or callable, default "lognormal"
        Mean-field family of the positive sites: a normal on the log scale
        (loss ``Trace_ELBO``) or a gamma per entry (``TraceMeanField_ELBO``,
        analytic KL terms against gamma priors). Non-positive sites get a normal
        on their unconstrained scale. A callable is used as the NumPyro guide
        as it is (with ``Trace_ELBO``), called with the model's arguments.
    num_steps : int, default 5000
        Optimisation steps.
    learning_rate : float, default 0.02
        Initial step size of Adam (gradients clipped at 10); it decays
        exponentially to a tenth of this value over ``num_steps``.
    batch_size : int, optional
        Columns per step. The program's plate over columns draws a random subset
        of this fixed size each step and scales its terms by
        ``n_samples / batch_size``; the program must honour ``subsample_size``.
        ``None`` (or ``n_samples``) uses all columns.
    num_particles : int, default 1
        Draws from q per ELBO gradient estimate.
    seed : int, default 0
        Seed of the MAP start, the optimisation, the final ELBO estimate and the
        draws; the same seed gives the same result bit for bit.
    init : {"map", "prior"}, default "map"
        Centre of the starting q (coefficient of variation 0.1). ``"map"`` uses
        a quick :func:`~bayesnmf.fit_map` (NNDSVDa start, at most 300 sweeps)
        for built-in models whose priors allow a MAP estimate; otherwise, and
        for ``"prior"``, W and H start at data-scaled random values and other sites at their prior
        median. Entries below 1% of their site's mean are raised to it (the log
        of 0 does not exist). Ignored by a custom guide.
    num_draws : int, default 500
        Draws from q stored in ``result.draws`` (one chain); 0 stores none
        (then the built-in families need only positive sites).
    tol : float, default 1e-4
        Relative tolerance of the convergence rule (Notes).
    dtype : {"float64", "float32"}, default "float64"
        Precision of the fit, in a scoped ``jax.enable_x64`` for float64.
    progress : bool, default False
        Show a progress bar over chunks of steps (never when ``CI`` is set).
    warn : bool, default True
        Emit a :class:`~bayesnmf.ConvergenceWarning` when the rule is not met.

    Returns
    -------
    NMFResult
        ``method="vi"``, ``settings["engine"] = "svi"``. ``W_raw`` and ``H_raw``
        are means of q (exact for the built-in families: :math:`e^{\mu +
        \sigma^2/2}` or :math:`\alpha/\rho`; the mean of the draws otherwise),
        so that ``W_raw @ H_raw`` is the mean of ``WH`` under the factorised q.
        ``objective`` is the negative ELBO on the full data estimated with 100
        draws from q (its Monte Carlo standard error in
        ``extra["objective_se"]``). ``trace`` holds the loss (single-step
        negative ELBO estimates) averaged over each chunk of steps, at the steps
        in ``trace_iter``. ``draws`` holds every latent site with shape
        ``(1, num_draws, ...)``. ``extra`` holds the variational parameters
        (``q_W_loc``, ``q_W_scale``, ... on the constrained scale) and the
        means of non-scalar sites other than W and H (``mean_<site>``); scalar
        sites' means go to ``params``.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, a model without the sites described above, flat
        priors on W or H, or minibatches the model cannot subsample. All checks
        run (and the program is traced once) before anything is compiled.

    Notes
    -----
    The steps run in chunks of ``ceil(num_steps / 100)`` inside one compiled
    ``lax.scan``; the same compiled chunk serves every fit with the same model,
    guide, settings and data shape. Convergence rule: with ``L`` the chunk
    averages and ``k = max(1, len(L) // 10)``, the fit has converged when the
    means of the last ``k`` and the previous ``k`` chunk averages differ by at
    most ``tol * |mean of the last k|`` plus twice the standard error of that
    difference (the Monte Carlo noise of the loss, estimated from the chunk
    averages): a drift the noise cannot explain is not convergence.

    A single-particle ELBO is too noisy to compare ranks; ``objective`` uses
    100 particles, and the closed-form engines give exact bounds where they
    exist. Mean-field q ignores the strong coupling between W and H along the
    scale ridge :math:`(WD, D^{-1}H)`; its spread of scale-invariant quantities
    can be wrong in either direction (``METHODS.md`` §3.3).

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> X = np.random.default_rng(0).poisson(5.0, size=(20, 10))
    >>> model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Gamma(1.0, 0.1))
    >>> res = fit_svi(X, model, num_steps=1000, warn=False)
    >>> res.W.shape, res.draws["H"].shape
    ((20, 2), (1, 500, 2, 10))
    """
    # -- checks, all before anything is compiled -----------------------------------
    data = as_nmf_data(X, mask=mask)
    model_fn, finish_model = resolve_model(model, "SVI")
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(
                f"guide: expected one of {GUIDES} or a NumPyro guide callable, got "
                f"{guide!r}."
            )
    elif not callable(guide):
        raise TypeError(
            f"guide: expected one of {GUIDES} or a NumPyro guide callable, got "
            f"{guide!r}."
        )
    num_steps = check_positive_int(num_steps, "num_steps")
    learning_rate = check_positive(learning_rate, "learning_rate")
    batch_size = _check_batch_size(batch_size, data.shape[1])
    num_particles = check_positive_int(num_particles, "num_particles")
    seed = check_seed(seed)
    if init not in ("map", "prior"):
        raise ValueError(f"init: expected 'map' or 'prior', got {init!r}.")
    num_draws = check_positive_int(num_draws, "num_draws", minimum=0)
    if num_draws == 0 and not isinstance(guide, str):
        raise ValueError(
            "num_draws: a custom guide's means are estimated from draws; expected "
            "num_draws >= 1, got 0."
        )
    tol = check_positive(tol, "tol", allow_zero=True)
    dtype = resolve_dtype(dtype)
    masked = data.mask is not None

    with precision_scope(dtype):
        Xj = jnp.asarray(data.X, dtype)
        Mj = jnp.asarray(data.mask, dtype) if masked else None
        program = inspect_program(model_fn, Xj, Mj, batch_size=batch_size,
                                  what=_describe(model))
        result_model = finish_model(program)
        if num_draws == 0 and not all(s.positive for s in program.sites):
            raise ValueError(
                "num_draws: the means of sites that are not positive are estimated "
                "from draws; expected num_draws >= 1, got 0."
            )

        key_init, key_svi, key_eval, key_draws = jax.random.split(
            jax.random.PRNGKey(seed), 4
        )
        builtin = isinstance(guide, str)
        init_used = "guide"
        start = None
        if builtin:
            values, init_used = None, "prior"
            if init == "map" and isinstance(model, NMFModel) and _map_ok(model):
                values, init_used = _map_values(data, model, seed, dtype), "map"
            if values is None:
                values = point_init(model, model_fn, program, Xj, Mj, key_init)
            start = _guide_start(program, guide, values)

        n_chunks = min(num_steps, _MAX_CHUNKS)
        chunk_len = -(-num_steps // n_chunks)
        n_chunks = -(-num_steps // chunk_len)
        svi, run_chunk, evaluate, sample, kwargs = _kernels(
            model_fn, guide, program, num_particles=num_particles,
            learning_rate=learning_rate, num_steps=num_steps, chunk_len=chunk_len,
            num_draws=num_draws,
        )
        state = svi.init(key_svi, Xj, Mj, init_params=start, **kwargs)
        state, losses = _optimise(run_chunk, state, Xj, Mj, num_steps, chunk_len,
                                  n_chunks, progress)

        params = svi.get_params(state)
        particle_losses = np.asarray(
            evaluate(params, jax.random.split(key_eval, _EVAL_PARTICLES), Xj, Mj),
            np.float64,
        )
        draws = {}
        if num_draws:
            draws = {k: np.asarray(v, np.float64)[None]
                     for k, v in sample(params, key_draws, Xj, Mj).items()}
        params = {k: np.asarray(v, np.float64) for k, v in params.items()}

    trace = np.array([
        np.nanmean(c) if np.isfinite(c).any() else np.nan for c in losses
    ])
    trace_iter = np.minimum(np.arange(1, n_chunks + 1) * chunk_len, num_steps)
    converged, change = _converged(trace, tol)
    means = _guide_means(program, guide, params) if builtin else {}
    for name in draws:
        means.setdefault(name, draws[name].mean(axis=(0, 1)))

    objective = float(np.mean(particle_losses))
    W, H = means["W"], means["H"]
    scalars = {k: float(v) for k, v in means.items()
               if k not in ("W", "H") and np.ndim(v) == 0}
    extra = {f"q_{k}": v for k, v in params.items()}
    extra.update({f"mean_{k}": np.asarray(v) for k, v in means.items()
                  if k not in ("W", "H") and np.ndim(v) > 0})
    extra.update({
        "objective_se": float(np.std(particle_losses, ddof=1)
                              / math.sqrt(_EVAL_PARTICLES)),
        "nonfinite_steps": int(sum(np.isnan(c).sum() for c in losses)),
        "final_relative_change": float(change),
    })
    settings = {
        "method": "vi", "engine": "svi",
        "guide": guide if builtin else "custom",
        "elbo": "TraceMeanField_ELBO" if guide == "gamma" else "Trace_ELBO",
        "seed": seed, "num_steps": num_steps, "learning_rate": learning_rate,
        "lr_decay": _LR_DECAY, "clip_norm": _CLIP_NORM,
        "batch_size": batch_size, "num_particles": num_particles,
        "init": init, "init_used": init_used, "num_draws": num_draws, "tol": tol,
        "chunk_len": chunk_len, "eval_particles": _EVAL_PARTICLES,
        "dtype": np.dtype(dtype).name, "masked": masked,
        "n_observed": data.n_observed, "custom_model": not isinstance(model, NMFModel),
    }
    restarts = {
        "W_raw": W[None], "H_raw": H[None],
        "objective": np.array([objective]),
        "n_iter": np.array([num_steps]),
        "converged": np.array([converged]),
        "trace": trace[None],
        **{k: np.array([v]) for k, v in scalars.items()},
    }
    result = NMFResult(
        model=result_model,
        method="vi",
        W_raw=W,
        H_raw=H,
        params=scalars,
        objective=objective,
        objective_name=f"negative ELBO (Monte Carlo, {_EVAL_PARTICLES} particles)",
        trace=trace,
        trace_iter=trace_iter,
        n_iter=num_steps,
        converged=converged,
        feature_names=list(data.feature_names),
        sample_names=list(data.sample_names),
        restarts=restarts,
        best_restart=0,
        settings=settings,
        draws=draws,
        extra=extra,
    )
    if warn and not converged:
        warnings.warn(
            f"SVI did not converge in num_steps={num_steps}: the chunk-averaged "
            f"loss still changed by a relative {change:.3g} over the last 10% of "
            f"the steps (tol={tol:g}). Increase num_steps or learning_rate.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


def _describe(model) -> str:
    if isinstance(model, NMFModel):
        return "the NMFModel"
    return f"the model {getattr(model, '__qualname__', repr(model))}"


def _map_ok(model: NMFModel) -> bool:
    try:
        model.prior_W.check_map()
        model.prior_H.check_map()
    except ValueError:
        return False
    return True


def _optimise(run_chunk, state, X, mask, num_steps, chunk_len, n_chunks, progress):
    """Run the chunks; one (chunk_len,) array of step losses per chunk."""
    bar = None
    if progress and not os.environ.get("CI"):
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc="SVI", unit="step", leave=False)
    losses = []
    try:
        for c in range(n_chunks):
            n_active = min(chunk_len, num_steps - c * chunk_len)
            state, chunk = run_chunk(state, X, mask, jnp.asarray(n_active, jnp.int32))
            chunk = np.asarray(chunk, np.float64)
            losses.append(chunk[:n_active] if n_active < chunk_len else chunk)
            if bar is not None:
                bar.update(n_active)
                bar.set_postfix(loss=f"{np.nanmean(chunk):.6g}")
    finally:
        if bar is not None:
            bar.close()
    return state, losses
