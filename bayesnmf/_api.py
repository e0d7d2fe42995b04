"""One entry point for every engine: :func:`fit`."""

from __future__ import annotations

from .model import NMFModel
from .priors import Exponential, Gamma
from .result import NMFResult

__all__ = ["fit", "vi_engine"]

METHODS = ("map", "vi", "svi", "nuts")


def vi_engine(model: NMFModel) -> str:
    """The variational engine :func:`fit` uses for ``model``.

    ``"cavi-poisson-gamma"`` for a Poisson likelihood with gamma or exponential
    priors, ``"cavi-gaussian-tn"`` for a Gaussian likelihood with exponential
    priors (closed-form updates, exact ELBO), ``"svi"`` (NumPyro's stochastic VI,
    Monte Carlo ELBO) otherwise.
    """
    if not isinstance(model, NMFModel):
        return "svi"
    priors = (model.prior_W, model.prior_H)
    kind = model.likelihood.kind
    if kind == "poisson" and all(isinstance(p, (Gamma, Exponential)) for p in priors):
        return "cavi-poisson-gamma"
    if kind == "gaussian" and all(isinstance(p, Exponential) for p in priors):
        lik = model.likelihood
        if not lik.estimates_noise or lik.has_noise_prior:
            return "cavi-gaussian-tn"
    return "svi"


def fit(X, model, *, method: str = "map", **kwargs) -> NMFResult:
    """Fit an NMF model with the chosen engine.

    Parameters
    ----------
    X : array-like of shape (n_features, n_samples)
        Non-negative data (NumPy, pandas, AnnData, :class:`~bayesnmf.NMFData`).
    model : NMFModel, int, or a NumPyro program
        The model; an int is the rank of classical KL NMF (MAP only). A NumPyro
        program with sites ``W``, ``H`` and ``X`` works with ``"svi"`` and
        ``"nuts"``.
    method : {"map", "vi", "svi", "nuts"}
        ``"map"``: multiplicative updates (:func:`~bayesnmf.fit_map`).
        ``"vi"``: closed-form variational inference where the model is
        conjugate (see :func:`vi_engine`), NumPyro's stochastic VI otherwise.
        ``"svi"``: NumPyro's stochastic VI always. ``"nuts"``: NUTS, for small
        problems.
    **kwargs
        Passed to the engine (``n_restarts``, ``seed``, ``max_iter``, ...).

    Returns
    -------
    NMFResult
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}.")
    if method == "map":
        from .map import fit_map

        return fit_map(X, model, **kwargs)
    if method == "nuts":
        from .mcmc import fit_nuts

        return fit_nuts(X, model, **kwargs)
    engine = "svi" if method == "svi" else vi_engine(model)
    if engine == "cavi-poisson-gamma":
        from .vi import fit_vi_poisson

        return fit_vi_poisson(X, model, **kwargs)
    if engine == "cavi-gaussian-tn":
        from .vi import fit_vi_gaussian

        return fit_vi_gaussian(X, model, **kwargs)
    from .vi._svi import fit_svi

    return fit_svi(X, model, **kwargs)
