r"""The NMF model as a NumPyro program: the single source of truth.

.. math::

    W_{ik} \sim p_W, \qquad H_{kj} \sim p_H, \qquad
    X_{ij} \mid W, H \sim p(\,\cdot \mid (WH)_{ij}) \quad (i, j) \in \Omega

with X of shape (n_features, n_samples), W of shape (n_features, rank) and H of
shape (rank, n_samples). Every engine (MAP, variational inference, NUTS) fits
this program; the MAP objective is its negative log joint density.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import jax.numpy as jnp
import numpyro

from ._validation import check_rank
from .likelihoods import Likelihood, Poisson, likelihood_from_dict
from .priors import ARD, Flat, Prior, prior_from_dict

__all__ = ["NMFModel", "PLATE_DIMS"]

#: How the program's plates map to ArviZ dimension names.
PLATE_DIMS = {
    "feature": "feature",
    "observation": "observation",
    "component": "component",
    "component_h": "component",
}


@dataclass(frozen=True)
class NMFModel:
    """An NMF model: rank, likelihood and the priors on W and H.

    Parameters
    ----------
    rank : int
        Number of components.
    likelihood : Likelihood, default Poisson()
        Noise model of X given ``WH``.
    prior_W, prior_H : Prior, default Flat()
        Prior on every entry of W and of H. Flat priors on both make MAP
        estimation classical (maximum-likelihood) NMF.

    Examples
    --------
    >>> from bayesnmf import NMFModel, Poisson, Gamma
    >>> model = NMFModel(3, Poisson(), Gamma(1.0, 1.0), Gamma(1.0, 0.01))
    """

    rank: int
    likelihood: Likelihood = field(default_factory=Poisson)
    prior_W: Prior = field(default_factory=Flat)
    prior_H: Prior = field(default_factory=Flat)

    def __post_init__(self):
        object.__setattr__(self, "rank", check_rank(self.rank))
        if not isinstance(self.likelihood, Likelihood):
            raise TypeError(
                "likelihood: expected a bayesnmf likelihood such as Poisson() or "
                f"Gaussian(), got {self.likelihood!r}."
            )
        for name in ("prior_W", "prior_H"):
            if not isinstance(getattr(self, name), Prior):
                raise TypeError(
                    f"{name}: expected a bayesnmf prior such as Exponential(1.0), "
                    f"got {getattr(self, name)!r}."
                )
        ard = [isinstance(p, ARD) for p in (self.prior_W, self.prior_H)]
        if any(ard) and self.prior_W != self.prior_H:
            raise ValueError(
                "prior_W, prior_H: an ARD prior shares one relevance per component "
                "between W and H; give the same ARD(...) as both, got "
                f"{self.prior_W.describe()} and {self.prior_H.describe()}."
            )

    @property
    def ard(self) -> ARD | None:
        """The ARD prior when the model has one."""
        return self.prior_W if isinstance(self.prior_W, ARD) else None

    def with_rank(self, rank: int) -> "NMFModel":
        return replace(self, rank=rank)

    @property
    def proper(self) -> bool:
        """Whether both priors are proper (needed by VI and NUTS)."""
        return self.prior_W.proper and self.prior_H.proper

    def __call__(
        self,
        X=None,
        mask=None,
        *,
        shape: tuple[int, int] | None = None,
        subsample_size: int | None = None,
    ):
        """The NumPyro program.

        Parameters
        ----------
        X : array of shape (n_features, n_samples), optional
            Observed data; ``None`` draws X from the prior predictive.
        mask : array of shape (n_features, n_samples), optional
            1 where X is observed. Unobserved entries do not enter the density.
        shape : tuple of int, optional
            ``(n_features, n_samples)`` when X is None.
        subsample_size : int, optional
            Minibatch of columns for stochastic VI: the ``observation`` plate
            draws this many columns and scales their log density by
            ``n_samples / subsample_size``.

        Notes
        -----
        Sites: ``W`` (plates ``feature`` x ``component``), ``H`` (plates
        ``component_h`` x ``observation``), ``X`` (``feature`` x
        ``observation``), and the likelihood's own parameters (for example
        ``noise_var``).
        """
        m, n = X.shape if X is not None else shape
        r = self.rank
        params = self.likelihood.sample_params()
        ard = self.ard
        if ard is not None:
            with numpyro.plate("component", r, dim=-1):
                relevance = numpyro.sample("relevance", ard.relevance_distribution())
            prior_W = ard.distribution_given(relevance)
            prior_H = ard.distribution_given(relevance[:, None])
        else:
            prior_W = self.prior_W.distribution()
            prior_H = self.prior_H.distribution()
        with numpyro.plate("feature", m, dim=-2), numpyro.plate("component", r, dim=-1):
            W = numpyro.sample("W", prior_W)
        with numpyro.plate("component_h", r, dim=-2), numpyro.plate(
            "observation", n, subsample_size=subsample_size, dim=-1
        ) as idx:
            H = numpyro.sample("H", prior_H)
        WH = W @ H
        with numpyro.plate("feature", m, dim=-2), numpyro.plate(
            "observation", n, subsample_size=subsample_size, dim=-1
        ) as idx:
            d = self.likelihood.distribution(WH, params)
            if mask is not None:
                d = d.mask(mask[:, idx] > 0 if subsample_size else mask > 0)
            obs = None if X is None else (X[:, idx] if subsample_size else X)
            numpyro.sample("X", d, obs=obs)

    def neg_log_prior(self, W, H, params: dict):
        """``-log p(W, H)`` (and of the relevances under ARD), constants included."""
        if self.ard is not None:
            return self.ard.neg_log_density_joint(W, H, params["relevance"])
        return self.prior_W.neg_log_density(W) + self.prior_H.neg_log_density(H)

    def init_prior_params(self, W, H) -> dict:
        """Estimated prior hyperparameters at the start of a MAP fit."""
        if self.ard is None:
            return {}
        return {"relevance": self.ard.update_relevance(W, H)}

    def update_prior_params(self, W, H, params: dict) -> dict:
        """Exact MAP update of the prior's own parameters (ARD relevances)."""
        if self.ard is None:
            return params
        return {**params, "relevance": self.ard.update_relevance(W, H)}

    def neg_log_joint(self, X, mask, W, H, params=None, cache=None):
        """``-log p(X, W, H, params)`` of the program, constants included."""
        params = params or {}
        lik = self.likelihood
        return (
            lik.loss(X, mask, W, H, params, cache)
            + lik.data_constant(X, mask, params, cache)
            + lik.params_neg_log_prior(params)
            + self.neg_log_prior(W, H, params)
        )

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "likelihood": self.likelihood.to_dict(),
            "prior_W": self.prior_W.to_dict(),
            "prior_H": self.prior_H.to_dict(),
        }

    @classmethod
    def from_dict(cls, spec: dict) -> "NMFModel":
        return cls(
            rank=int(spec["rank"]),
            likelihood=likelihood_from_dict(spec["likelihood"]),
            prior_W=prior_from_dict(spec["prior_W"]),
            prior_H=prior_from_dict(spec["prior_H"]),
        )

    def describe(self) -> str:
        return (
            f"rank {self.rank}, {self.likelihood.describe()} likelihood, "
            f"W ~ {self.prior_W.describe()}, H ~ {self.prior_H.describe()}"
        )


def as_jnp(x, dtype):
    return None if x is None else jnp.asarray(x, dtype=dtype)
