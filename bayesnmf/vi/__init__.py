"""Variational inference engines.

* :func:`fit_vi_poisson`: closed-form coordinate ascent for Poisson NMF with
  gamma priors (Cemgil 2009), with its exact evidence lower bound.
"""

from ._poisson_gamma import fit_vi_poisson

__all__ = ["fit_vi_poisson"]
