"""Fast digamma and log-gamma for positive arguments against SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from bayesnmf._special import digamma_pos, gammaln_pos

X = np.concatenate([np.logspace(-8, 12, 4001), np.linspace(0.01, 30.0, 3001),
                    np.arange(1.0, 60.0)])


def _scaled_error(got, want):
    # Absolute error where |f| < 1, relative error above.
    return np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))


@pytest.mark.parametrize(
    ("fast", "reference"),
    [(digamma_pos, special.digamma), (gammaln_pos, special.gammaln)],
    ids=["digamma", "gammaln"],
)
def test_values_match_scipy(fast, reference):
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(fast)(jnp.asarray(X)))
    assert _scaled_error(got, reference(X)) < 5e-14


def test_derivatives_of_gammaln_match_digamma_and_trigamma():
    # The negative binomial's Newton steps differentiate through gammaln_pos.
    x = np.concatenate([np.logspace(-3, 6, 400), np.linspace(0.5, 25.0, 200)])
    with jax.enable_x64(True):
        d1 = jax.vmap(jax.grad(gammaln_pos))(jnp.asarray(x))
        d2 = jax.vmap(jax.grad(jax.grad(gammaln_pos)))(jnp.asarray(x))
    assert _scaled_error(np.asarray(d1), special.digamma(x)) < 1e-12
    rel = np.abs(np.asarray(d2) - special.polygamma(1, x)) / special.polygamma(1, x)
    assert rel.max() < 1e-11


def test_limits():
    with jax.enable_x64(True):
        assert np.isposinf(float(gammaln_pos(jnp.asarray(0.0))))
        assert np.isneginf(float(digamma_pos(jnp.asarray(0.0))))
        # Gamma(1) = Gamma(2) = 1 to rounding, psi(1) = -Euler's constant.
        np.testing.assert_allclose(np.asarray(gammaln_pos(jnp.asarray([1.0, 2.0]))),
                                   0.0, atol=5e-15)
        np.testing.assert_allclose(float(digamma_pos(jnp.asarray(1.0))),
                                   -np.euler_gamma, rtol=1e-15)
