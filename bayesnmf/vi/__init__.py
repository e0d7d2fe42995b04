"""Variational inference engines.

* :func:`fit_vi_poisson`: closed-form coordinate ascent for Poisson NMF with
  gamma priors (Cemgil 2009), with its exact evidence lower bound.
* :func:`fit_vi_gaussian`: coordinate ascent for Gaussian NMF with exponential
  priors and truncated-normal factors (Brouwer, Frellsen and Liò 2017), with
  its exact evidence lower bound.
* :func:`fit_svi`: NumPyro's stochastic VI for any NMF model written as a
  NumPyro program, with mean-field log-normal or gamma guides and minibatches
  over columns.
"""

from ._gaussian_tn import fit_vi_gaussian
from ._poisson_gamma import fit_vi_poisson
from ._svi import fit_svi

__all__ = ["fit_svi", "fit_vi_gaussian", "fit_vi_poisson"]
