r"""Non-negative priors on the entries of W and H.

Each prior is an independent density on every entry ``z`` of a factor. It knows
its NumPyro distribution, its exact negative log density (so that the MAP
objective equals NumPyro's log joint), and the closed-form minimiser of the
majorising auxiliary function used by the multiplicative updates.

Two auxiliary functions occur (``METHODS.md`` §2.1–2.2), per entry:

* log type (Poisson / KL data term): :math:`S z - \tilde z P \log z`
* quadratic type (Gaussian data term): :math:`\frac{D}{2\tilde z} z^2 - N z`

where :math:`\tilde z` is the current value. Adding the prior's penalty and
minimising over :math:`z \ge 0` gives each ``solve_*`` method.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import gammaln, xlogy
from numpyro.distributions import constraints

from ._validation import check_positive

__all__ = ["Prior", "Flat", "Exponential", "HalfNormal", "Gamma", "prior_from_dict"]


@dataclass(frozen=True)
class Prior:
    """Base class: an i.i.d. non-negative prior on every entry of a factor."""

    #: short name used on the command line and in saved results
    kind = "prior"
    proper = True

    def distribution(self):
        """NumPyro distribution of one entry (plates broadcast it)."""
        raise NotImplementedError

    def neg_log_density(self, Z):
        """Sum of ``-log p(z)`` over the entries of ``Z``, constants included."""
        raise NotImplementedError

    def solve_log(self, tilde_P, S, Z_tilde):
        """Minimise ``S z - tilde_P log z + penalty(z)`` over ``z >= 0``."""
        raise NotImplementedError

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        """Minimise ``(D / 2 z~) z^2 - N z + noise_var * penalty(z)`` over z >= 0.

        ``tilde_N`` is ``z~ * N``; the majorised linear parts of the penalty are
        folded into the curvature so that the update stays multiplicative.
        """
        raise NotImplementedError

    def check_map(self) -> None:
        """Raise if the MAP estimate under this prior is not well defined."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in asdict(self).items())
        return f"{self.kind}({args})"


def _safe_div(num, den):
    """``num / den`` with 0 / 0 = 0 (a factor entry that carries no signal)."""
    tiny = jnp.finfo(jnp.result_type(num, den)).tiny
    return num / jnp.maximum(den, tiny)


@dataclass(frozen=True)
class Flat(Prior):
    """Improper flat prior on ``[0, inf)``: MAP is maximum likelihood.

    With a flat prior on both factors the MAP engine is classical NMF (Lee and
    Seung's multiplicative updates). Variational inference and NUTS need a
    proper prior.
    """

    kind = "flat"
    proper = False

    def distribution(self):
        return dist.ImproperUniform(constraints.positive, (), ())

    def neg_log_density(self, Z):
        return jnp.zeros((), dtype=Z.dtype)

    def solve_log(self, tilde_P, S, Z_tilde):
        return _safe_div(tilde_P, S)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return _safe_div(tilde_N, D)


@dataclass(frozen=True)
class Exponential(Prior):
    r"""Exponential prior, :math:`p(z) = \lambda e^{-\lambda z}` (an L1 penalty).

    Parameters
    ----------
    rate : float
        :math:`\lambda > 0`; the prior mean is ``1 / rate``.
    """

    rate: float = 1.0
    kind = "exponential"

    def __post_init__(self):
        object.__setattr__(self, "rate", check_positive(self.rate, "rate"))

    def distribution(self):
        return dist.Exponential(self.rate)

    def neg_log_density(self, Z):
        return jnp.sum(self.rate * Z) - Z.size * math.log(self.rate)

    def solve_log(self, tilde_P, S, Z_tilde):
        return _safe_div(tilde_P, S + self.rate)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return _safe_div(tilde_N, D + noise_var * self.rate)


@dataclass(frozen=True)
class HalfNormal(Prior):
    r"""Half-normal prior, :math:`p(z) = \frac{\sqrt 2}{s\sqrt\pi} e^{-z^2/2s^2}`.

    An L2 (ridge) penalty with weight :math:`a = 1/s^2`.

    Parameters
    ----------
    scale : float
        :math:`s > 0`, the scale of the underlying normal.
    """

    scale: float = 1.0
    kind = "halfnormal"

    def __post_init__(self):
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    @property
    def precision(self) -> float:
        return 1.0 / self.scale**2

    def distribution(self):
        return dist.HalfNormal(self.scale)

    def neg_log_density(self, Z):
        const = 0.5 * math.log(math.pi / 2) + math.log(self.scale)
        return 0.5 * self.precision * jnp.sum(Z * Z) + Z.size * const

    def solve_log(self, tilde_P, S, Z_tilde):
        # Positive root of a z^2 + S z - tilde_P = 0, written without cancellation.
        a = self.precision
        return _safe_div(2.0 * tilde_P, S + jnp.sqrt(S * S + 4.0 * a * tilde_P))

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return _safe_div(tilde_N, D + noise_var * self.precision * Z_tilde)


@dataclass(frozen=True)
class Gamma(Prior):
    r"""Gamma prior, :math:`p(z) = \frac{b^a}{\Gamma(a)} z^{a-1} e^{-bz}`.

    Parameters
    ----------
    shape : float
        :math:`a > 0`. MAP estimation needs ``shape >= 1`` (below 1 the density
        is unbounded at 0 and the posterior has no finite mode).
    rate : float
        :math:`b > 0`; the prior mean is ``shape / rate``.
    """

    shape: float = 1.0
    rate: float = 1.0
    kind = "gamma"

    def __post_init__(self):
        object.__setattr__(self, "shape", check_positive(self.shape, "shape"))
        object.__setattr__(self, "rate", check_positive(self.rate, "rate"))

    def distribution(self):
        return dist.Gamma(self.shape, self.rate)

    def neg_log_density(self, Z):
        a, b = self.shape, self.rate
        const = math.lgamma(a) - a * math.log(b)
        return jnp.sum(b * Z - xlogy(a - 1.0, Z)) + Z.size * const

    def check_map(self) -> None:
        if self.shape < 1:
            raise ValueError(
                f"shape: MAP estimation needs a gamma prior with shape >= 1, got "
                f"{self.shape:g}; the density is unbounded at 0 below 1. Use "
                "shape >= 1, or variational inference for sparser priors."
            )

    def solve_log(self, tilde_P, S, Z_tilde):
        # MAP-EM of the augmented Poisson-Gamma model.
        return _safe_div(tilde_P + (self.shape - 1.0), S + self.rate)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        # Minimiser of (D' / 2 z~) z^2 - N z - c log z, with D' = D + var * b
        # (the linear part majorised into the curvature) and c = var (a - 1):
        # the positive root, multiplied through by z~ so that z~ = 0 is safe.
        D_prime = D + noise_var * self.rate
        c = noise_var * (self.shape - 1.0)
        root = jnp.sqrt(tilde_N * tilde_N + 4.0 * D_prime * c * Z_tilde)
        return _safe_div(tilde_N + root, 2.0 * D_prime)


_KINDS = {cls.kind: cls for cls in (Flat, Exponential, HalfNormal, Gamma)}


def prior_from_dict(spec: dict) -> Prior:
    """Rebuild a prior saved with :meth:`Prior.to_dict`."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in _KINDS:
        raise ValueError(f"prior kind: expected one of {sorted(_KINDS)}, got {kind!r}.")
    return _KINDS[kind](**spec)


def parse_prior(text: str) -> Prior:
    """Parse ``"exponential"``, ``"gamma:2,1"`` or ``"halfnormal:0.5"``.

    The numbers after the colon are the constructor's arguments in order.
    """
    name, _, args = text.partition(":")
    name = name.strip().lower().replace("-", "").replace("_", "")
    aliases = {"none": "flat", "ml": "flat", "exp": "exponential", "l1": "exponential",
               "l2": "halfnormal", "hn": "halfnormal"}
    name = aliases.get(name, name)
    if name not in _KINDS:
        raise ValueError(
            f"prior: expected one of {sorted(_KINDS)} (optionally with ':' and "
            f"comma-separated parameters), got {text!r}."
        )
    values = [float(v) for v in args.split(",") if v.strip()] if args else []
    return _KINDS[name](*values)
