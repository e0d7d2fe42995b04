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

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import xlogy
from numpyro.distributions import constraints

from ._validation import check_positive

__all__ = [
    "ARD",
    "Exponential",
    "Flat",
    "Gamma",
    "HalfNormal",
    "Prior",
    "ard_defaults",
    "prior_from_dict",
]


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

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        """Minimise ``S z + P z~^2 / z + dispersion * penalty(z)`` over z > 0.

        The auxiliary function of the Itakura-Saito (β = 0) data term.
        """
        raise NotImplementedError

    def check_map(self) -> None:
        """Raise if the MAP estimate under this prior is not well defined."""

    def bind(self, params: dict, factor: str) -> "Prior":
        """The prior with its estimated hyperparameters (ARD) filled in."""
        return self

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in asdict(self).items()
                         if isinstance(v, (int, float)))
        return f"{self.kind}({args})"


def _safe_div(num, den):
    """``num / den`` with 0 / 0 = 0 (a factor entry that carries no signal)."""
    tiny = jnp.finfo(jnp.result_type(num, den)).tiny
    return num / jnp.maximum(den, tiny)


# Closed-form minimisers shared by the fixed priors and the ARD priors, whose
# rate or precision is an array (one value per component).
def _exp_solve_log(rate, tilde_P, S):
    return _safe_div(tilde_P, S + rate)


def _exp_solve_quadratic(rate, tilde_N, D, noise_var):
    return _safe_div(tilde_N, D + noise_var * rate)


def _exp_solve_reciprocal(rate, P, S, Z_tilde, dispersion):
    return Z_tilde * jnp.sqrt(_safe_div(P, S + dispersion * rate))


def _hn_solve_log(precision, tilde_P, S):
    # Positive root of a z^2 + S z - tilde_P = 0, written without cancellation.
    return _safe_div(2.0 * tilde_P, S + jnp.sqrt(S * S + 4.0 * precision * tilde_P))


def _hn_solve_quadratic(precision, tilde_N, D, Z_tilde, noise_var):
    return _safe_div(tilde_N, D + noise_var * precision * Z_tilde)


def _hn_solve_reciprocal(precision, P, S, Z_tilde, dispersion, n_newton=8):
    # Positive root of g(z) = a z^3 + S z^2 - P z~^2 (a = dispersion precision):
    # g is increasing and convex on z > 0, so Newton from the unpenalised root
    # (an upper bound) decreases monotonically onto the root.
    a = dispersion * precision
    c = P * Z_tilde * Z_tilde
    z = Z_tilde * jnp.sqrt(_safe_div(P, S))

    def newton(_, z):
        g = a * z**3 + S * z**2 - c
        dg = 3.0 * a * z**2 + 2.0 * S * z
        return jnp.maximum(z - _safe_div(g, dg), 0.0)

    return jax.lax.fori_loop(0, n_newton, newton, z)


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

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        return Z_tilde * jnp.sqrt(_safe_div(P, S))


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
        return _exp_solve_log(self.rate, tilde_P, S)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return _exp_solve_quadratic(self.rate, tilde_N, D, noise_var)

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        return _exp_solve_reciprocal(self.rate, P, S, Z_tilde, dispersion)


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
        return _hn_solve_log(self.precision, tilde_P, S)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return _hn_solve_quadratic(self.precision, tilde_N, D, Z_tilde, noise_var)

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        return _hn_solve_reciprocal(self.precision, P, S, Z_tilde, dispersion)


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

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        # Positive root of (S + d b) z^2 - d (a - 1) z - P z~^2 = 0.
        A = S + dispersion * self.rate
        c = dispersion * (self.shape - 1.0)
        root = jnp.sqrt(c * c + 4.0 * A * P * Z_tilde * Z_tilde)
        return _safe_div(c + root, 2.0 * A)


@dataclass(frozen=True)
class ARD(Prior):
    r"""Automatic relevance determination (Tan and Févotte 2013).

    Component :math:`k` has a relevance :math:`\lambda_k` shared by column
    :math:`w_k` and row :math:`h_k`; components the data do not need are driven
    to zero (pruned):

    .. math::

        \lambda_k \sim \mathrm{InvGamma}(a, b), \qquad
        w_{ik}, h_{kj} \mid \lambda_k \sim
        \begin{cases} \mathrm{Exponential}(\text{mean } \lambda_k) &
        \text{penalty = "exponential" (L1)} \\
        \mathrm{HalfNormal}(\text{variance } \lambda_k) &
        \text{penalty = "halfnormal" (L2)} \end{cases}

    Use the same ``ARD`` object as ``prior_W`` and ``prior_H``: the relevances
    are one NumPyro site, ``relevance``, on the ``component`` plate.

    Parameters
    ----------
    penalty : {"exponential", "halfnormal"}
        Shape of the prior given the relevance.
    shape : float
        :math:`a`; smaller values prune more. Tan and Févotte suggest
        ``log(n_features + n_samples)``.
    rate : float
        :math:`b`; :func:`ard_defaults` gives their data-scaled choice.
    """

    penalty: str = "exponential"
    shape: float = 5.0
    rate: float = 1.0
    kind = "ard"

    def __post_init__(self):
        if self.penalty not in ("exponential", "halfnormal"):
            raise ValueError(
                "penalty: expected 'exponential' or 'halfnormal', got "
                f"{self.penalty!r}."
            )
        object.__setattr__(self, "shape", check_positive(self.shape, "shape"))
        object.__setattr__(self, "rate", check_positive(self.rate, "rate"))

    @property
    def kappa(self) -> float:
        """Power of λ in each entry's density: 1 (exponential) or 1/2."""
        return 1.0 if self.penalty == "exponential" else 0.5

    def relevance_distribution(self):
        return dist.InverseGamma(self.shape, self.rate)

    def distribution_given(self, relevance):
        if self.penalty == "exponential":
            return dist.Exponential(1.0 / relevance)
        return dist.HalfNormal(jnp.sqrt(relevance))

    def norm(self, Z, axis):
        """:math:`f(z)`: the L1 norm, or half the squared L2 norm, per component."""
        if self.penalty == "exponential":
            return jnp.sum(Z, axis=axis)
        return 0.5 * jnp.sum(Z * Z, axis=axis)

    def neg_log_density_joint(self, W, H, relevance):
        """``-log p(W | λ) - log p(H | λ) - log p(λ)``, constants included."""
        m, n = W.shape[0], H.shape[1]
        lam = relevance
        per_entry = (0.0 if self.penalty == "exponential"
                     else 0.5 * math.log(math.pi / 2))
        data = (self.norm(W, 0) + self.norm(H, 1)) / lam
        data = data + self.kappa * (m + n) * jnp.log(lam) + (m + n) * per_entry
        a, b = self.shape, self.rate
        hyper = (a + 1.0) * jnp.log(lam) + b / lam + math.lgamma(a) - a * math.log(b)
        return jnp.sum(data + hyper)

    def update_relevance(self, W, H):
        """The exact minimiser over λ: ``(f(w_k) + f(h_k) + b) / c``."""
        m, n = W.shape[0], H.shape[1]
        c = self.kappa * (m + n) + self.shape + 1.0
        return (self.norm(W, 0) + self.norm(H, 1) + self.rate) / c

    def relevance_floor(self, n_features: int, n_samples: int) -> float:
        """``B = b / c``: the value λ reaches when its component is pruned."""
        return self.rate / (self.kappa * (n_features + n_samples) + self.shape + 1.0)

    def describe(self) -> str:
        return f"ard({self.penalty}, shape={self.shape:g}, rate={self.rate:g})"

    def bind(self, params: dict, factor: str) -> Prior:
        lam = params["relevance"]
        lam = lam[None, :] if factor == "W" else lam[:, None]
        return _BoundARD(self.penalty, 1.0 / lam)

    def neg_log_density(self, Z):
        raise TypeError(
            "ARD couples W and H through the relevances; use "
            "NMFModel.neg_log_prior(W, H, params)."
        )


class _BoundARD:
    """An ARD prior with its relevances filled in (inside a MAP kernel)."""

    def __init__(self, penalty: str, inv_relevance):
        self.penalty = penalty
        self.inv = inv_relevance  # rate (L1) or precision (L2), per component

    def solve_log(self, tilde_P, S, Z_tilde):
        if self.penalty == "exponential":
            return _exp_solve_log(self.inv, tilde_P, S)
        return _hn_solve_log(self.inv, tilde_P, S)

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        if self.penalty == "exponential":
            return _exp_solve_quadratic(self.inv, tilde_N, D, noise_var)
        return _hn_solve_quadratic(self.inv, tilde_N, D, Z_tilde, noise_var)

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        if self.penalty == "exponential":
            return _exp_solve_reciprocal(self.inv, P, S, Z_tilde, dispersion)
        return _hn_solve_reciprocal(self.inv, P, S, Z_tilde, dispersion)


class Frozen:
    """Stand-in prior whose updates leave the factor unchanged (held fixed)."""

    def solve_log(self, tilde_P, S, Z_tilde):
        return Z_tilde

    def solve_quadratic(self, tilde_N, D, Z_tilde, noise_var):
        return Z_tilde

    def solve_reciprocal(self, P, S, Z_tilde, dispersion):
        return Z_tilde


def ard_defaults(X, rank: int, penalty: str = "exponential", shape=None) -> ARD:
    """Tan and Févotte's data-scaled ARD hyperparameters (``METHODS.md`` §4).

    ``shape = log(n_features + n_samples)`` unless given, and
    ``rate = sqrt((a - 1)(a - 2) mean(X) / rank)`` for the exponential penalty,
    ``rate = (pi / 2)(a - 1) mean(X) / rank`` for the half-normal one.
    """
    import numpy as np

    X = np.asarray(X, dtype=float)
    a = float(np.log(sum(X.shape))) if shape is None else float(shape)
    mean = float(np.nanmean(X))
    if penalty == "exponential":
        if a <= 2:
            raise ValueError(
                f"shape: the exponential ARD default needs shape > 2, got {a:g}."
            )
        b = math.sqrt((a - 1.0) * (a - 2.0) * mean / rank)
    else:
        b = math.pi / 2 * (a - 1.0) * mean / rank
    return ARD(penalty, a, b)


_KINDS = {cls.kind: cls for cls in (Flat, Exponential, HalfNormal, Gamma, ARD)}


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
