"""ArviZ 1.x output: every fit as an ``xarray.DataTree`` with named dimensions.

Dimensions are ``feature`` (a row of X), ``observation`` (a column of X) and
``component``, with coordinates from the data's labels, plus ArviZ's ``chain``
and ``draw``. Groups:

* ``posterior``: ``W`` (chain, draw, feature, component) and ``H`` (chain, draw,
  component, observation) on the reporting scale (columns of W sum to one),
  components matched across chains, and the likelihood's own parameters;
* ``log_likelihood``: ``X``, the pointwise log density of every observed entry
  (chain, draw, feature, observation), what PSIS-LOO needs;
* ``observed_data``: ``X``; ``constant_data``: the ``mask`` when there is one;
* ``sample_stats``: the sampler's statistics (NUTS), when there are any.

A MAP fit becomes one chain of one draw: a point, not a posterior.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._validation import as_nmf_data
from .result import NMFResult, normalize

__all__ = ["to_datatree", "posterior_summary", "save_datatree", "load_datatree"]

#: sampler statistics stored in ``result.extra`` under ArviZ's names
_SAMPLE_STATS = ("diverging", "energy", "n_steps", "acceptance_rate", "step_size",
                 "lp", "tree_depth")


def _draws(result: NMFResult) -> dict:
    """Raw draws with (chain, draw) axes; a MAP point is one chain of one draw."""
    if result.draws:
        return {k: np.asarray(v) for k, v in result.draws.items()}
    out = {"W": result.W_raw[None, None], "H": result.H_raw[None, None]}
    out.update({k: np.full((1, 1), v) for k, v in result.params.items()})
    return out


def _aligned(result: NMFResult, draws: dict) -> tuple[np.ndarray, np.ndarray]:
    """W and H draws normalised and with components matched across chains."""
    W, H = normalize(draws["W"], draws["H"])
    if result.extra.get("draws_aligned", False) or W.shape[0] == 1:
        return W, H
    from .alignment import align_components

    aligned = align_components(W, H)
    return aligned.W, aligned.H


def _pointwise_log_likelihood(result: NMFResult, draws: dict, X, mask):
    import jax
    import jax.numpy as jnp
    from numpyro.infer import log_likelihood

    from ._precision import precision_scope

    # Every latent site with draws (W, H, likelihood parameters, and a custom
    # program's own sites); WH is unchanged by the reporting normalisation.
    latent = dict(draws)
    with precision_scope(np.float64):
        Xj = jnp.asarray(X)
        Mj = None if mask is None else jnp.asarray(mask)
        samples = jax.tree.map(jnp.asarray, latent)
        ll = log_likelihood(result.model, samples, Xj, Mj, batch_ndims=2)["X"]
        return np.asarray(ll, dtype=np.float64)


def to_datatree(result: NMFResult, X, *, mask=None, log_likelihood: bool = True):
    """Convert a fit to an ArviZ 1.x ``DataTree``.

    Parameters
    ----------
    result : NMFResult
        Any engine's result.
    X : array-like of shape (n_features, n_samples)
        The data the model was fitted to (for ``observed_data`` and the
        pointwise log-likelihood).
    mask : array-like of shape (n_features, n_samples), optional
        The mask used in the fit. Unobserved entries get NaN log-likelihood:
        drop them (``.stack(entry=...)`` then ``dropna``) before LOO.
    log_likelihood : bool, default True
        Compute the ``log_likelihood`` group (chains x draws x m x n numbers).

    Returns
    -------
    xarray.DataTree
    """
    from arviz_base import from_dict

    data = as_nmf_data(X, mask=mask)
    expected = (len(result.feature_names), len(result.sample_names))
    if data.shape != expected:
        raise ValueError(
            f"X: expected shape {expected} to match the fit, got {data.shape}."
        )
    draws = _draws(result)
    W, H = _aligned(result, draws)
    coords = {
        "feature": list(result.feature_names),
        "observation": list(result.sample_names),
        "component": result.component_names,
    }
    dims = {
        "W": ["feature", "component"],
        "H": ["component", "observation"],
        "X": ["feature", "observation"],
        "mask": ["feature", "observation"],
    }
    posterior = {"W": W, "H": H}
    for k, v in draws.items():
        if k not in ("W", "H") and np.ndim(v) == 2:
            posterior[k] = v
    groups = {"posterior": posterior, "observed_data": {"X": data.X}}
    if data.mask is not None:
        groups["constant_data"] = {"mask": data.mask}
    if log_likelihood:
        ll = _pointwise_log_likelihood(result, draws, data.X, data.mask)
        if data.mask is not None:
            ll = np.where(data.mask > 0, ll, np.nan)
        groups["log_likelihood"] = {"X": ll}
    stats = {k: np.asarray(result.extra[k]) for k in _SAMPLE_STATS
             if k in result.extra and np.ndim(result.extra[k]) == 2}
    if stats:
        groups["sample_stats"] = stats
    attrs = {
        "/": {
            "inference_library": "bayesnmf",
            "method": result.method,
            "engine": str(result.settings.get("engine", result.method)),
            "model": result.model.describe(),
            "point_estimate_only": int(not result.draws),
        }
    }
    return from_dict(groups, coords=coords, dims=dims, attrs=attrs)


def posterior_summary(result_or_tree, X=None, *, var_names=("W", "H"),
                      ci_prob: float = 0.9, **kwargs):
    """Posterior mean, sd, equal-tailed interval, R-hat and ESS per entry.

    Parameters
    ----------
    result_or_tree : NMFResult or xarray.DataTree
        A fit with draws (VI or NUTS), or its DataTree.
    X : array-like, optional
        The data, needed when ``result_or_tree`` is an NMFResult.
    var_names : sequence of str
        Variables to summarise.
    ci_prob : float, default 0.9
        Probability mass of the central interval.

    Returns
    -------
    pandas.DataFrame
        One row per entry, such as ``W[A[C>A]A, C1]``; columns from
        :func:`arviz_stats.summary` (interval columns named for ``ci_prob``).
    """
    from arviz_stats import summary

    if isinstance(result_or_tree, NMFResult):
        if not result_or_tree.draws:
            raise ValueError(
                "result_or_tree: a MAP fit has no posterior draws; fit with "
                "method='vi' or 'nuts' for intervals."
            )
        if X is None:
            raise ValueError("X: needed to summarise an NMFResult.")
        tree = to_datatree(result_or_tree, X, log_likelihood=False)
    else:
        tree = result_or_tree
    with warnings.catch_warnings():
        # Entries that are exactly constant across draws (a zero in every draw)
        # have no R-hat; ArviZ reports NaN for them after a division warning.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        return summary(tree, var_names=list(var_names), ci_prob=ci_prob,
                       ci_kind="eti", round_to="none", **kwargs)


def save_datatree(tree, path) -> None:
    """Write a DataTree to NetCDF (h5netcdf engine)."""
    tree.to_netcdf(path, engine="h5netcdf")


def load_datatree(path):
    """Read a DataTree written by :func:`save_datatree`."""
    import xarray as xr

    return xr.load_datatree(path, engine="h5netcdf")
