r"""Digamma and log-gamma for positive arguments, fast on the CPU.

The closed-form VI sweeps evaluate :math:`\psi` on every variational shape at
every sweep, and its ELBO :math:`\log\Gamma` as well; the likelihoods'
log densities use :math:`\log\Gamma` on every entry of X, and the negative
binomial's Newton steps for its concentration differentiate through it (its
first and second derivatives match :math:`\psi` and :math:`\psi'` to about
:math:`10^{-11}`, tested). ``jax.scipy.special``'s general-purpose versions
cost about 45 ns per float64 entry on the CPU, as much as the rest of a
sweep; these are about 4 times faster.

Both shift small arguments up by ten with the recurrences
:math:`\psi(x) = \psi(x + 10) - \sum_{i=0}^{9} 1/(x + i)` and
:math:`\log\Gamma(x) = \log\Gamma(x + 10) - \log\prod_{i=0}^{9}(x + i)`, then
use the asymptotic (Stirling) series at :math:`x \ge 10`, truncated where the
next term is below :math:`10^{-16}` of the leading ones. Absolute error below
about :math:`10^{-14}` (tested against SciPy over :math:`10^{-8}` to
:math:`10^{12}`); only for ``x > 0``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["digamma_pos", "gammaln_pos"]

_SHIFT = 10

# psi(x) ~ log x - 1/(2x) - sum_k B_2k / (2k x^2k), k = 1..7.
_PSI = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)
# log Gamma(x) ~ (x - 1/2) log x - x + log(2 pi)/2
#                + sum_k B_2k / (2k (2k - 1) x^(2k-1)), k = 1..7.
_LGAMMA = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _series(coefficients, z):
    """``sum_k c_k z^k`` for k = 0.. by Horner's rule."""
    total = jnp.zeros_like(z) + coefficients[-1]
    for c in coefficients[-2::-1]:
        total = total * z + c
    return total


def digamma_pos(x):
    r""":math:`\psi(x)` for ``x > 0`` (elementwise)."""
    small = x < _SHIFT
    y = jnp.where(small, x + _SHIFT, x)
    inv = 1.0 / y
    inv2 = inv * inv
    psi = jnp.log(y) - 0.5 * inv - inv2 * _series(_PSI, inv2)
    # sum_i 1/(x + i) as one fraction: prod of the terms is at most 20^10.
    num = jnp.zeros_like(x)
    den = jnp.ones_like(x)
    for i in range(_SHIFT):
        t = x + i
        num = num * t + den
        den = den * t
    return jnp.where(small, psi - num / den, psi)


def gammaln_pos(x):
    r""":math:`\log\Gamma(x)` for ``x > 0`` (elementwise)."""
    small = x < _SHIFT
    y = jnp.where(small, x + _SHIFT, x)
    inv = 1.0 / y
    lg = ((y - 0.5) * jnp.log(y) - y + _HALF_LOG_2PI
          + inv * _series(_LGAMMA, inv * inv))
    prod = jnp.ones_like(x)
    for i in range(_SHIFT):
        prod = prod * (x + i)
    # Where x >= 10 the product is unused; keep its log finite.
    return jnp.where(small, lg - jnp.log(jnp.where(small, prod, 1.0)), lg)
