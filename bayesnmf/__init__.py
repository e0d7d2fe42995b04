"""bayesnmf: probabilistic, Bayesian non-negative matrix factorization.

X (n_features, n_samples) ~ W (n_features, rank) @ H (rank, n_samples), with a
likelihood for X given WH and non-negative priors on W and H, written as a
NumPyro program and fitted by MAP multiplicative updates, variational inference
or NUTS.
"""

from ._api import fit
from ._validation import NMFData, as_nmf_data
from ._warnings import ConvergenceWarning
from .likelihoods import (
    GammaLikelihood,
    Gaussian,
    Likelihood,
    NegativeBinomial,
    Poisson,
)
from .map import fit_map
from .model import NMFModel
from .priors import ARD, Exponential, Flat, Gamma, HalfNormal, Prior, ard_defaults
from .result import NMFResult, normalize
from .mcmc import fit_nuts
from .vi import fit_svi, fit_vi_gaussian, fit_vi_poisson

__version__ = "0.1.0"

__all__ = [
    "ARD",
    "GammaLikelihood",
    "NegativeBinomial",
    "ard_defaults",
    "ConvergenceWarning",
    "Exponential",
    "Flat",
    "Gamma",
    "Gaussian",
    "HalfNormal",
    "Likelihood",
    "NMFData",
    "NMFModel",
    "NMFResult",
    "Poisson",
    "Prior",
    "as_nmf_data",
    "fit",
    "fit_map",
    "fit_nuts",
    "fit_svi",
    "fit_vi_gaussian",
    "fit_vi_poisson",
    "normalize",
]
