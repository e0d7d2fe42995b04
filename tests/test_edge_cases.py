"""Bad input gets clear errors before compiling; small cases behave correctly."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import bayesnmf as bn
from bayesnmf.likelihoods import _guard


@pytest.fixture
def no_compile(monkeypatch):
    """Fail if the MAP kernels are even built."""
    import bayesnmf.map as map_mod

    def boom(*args, **kwargs):
        raise AssertionError("kernel built before the input was checked")

    monkeypatch.setattr(map_mod, "_kernels", boom)


GOOD = np.ones((4, 3))


@pytest.mark.parametrize(
    "X, kwargs, error, match",
    [
        (np.array([[1.0, -2.0], [3.0, 4.0]]), {}, ValueError, "non-negative.*-2 at row 0, column 1"),
        (np.array([[1.0, np.nan], [3.0, 4.0]]), {}, ValueError, "NaN at row 0, column 1.*allow_nan"),
        (np.array([[1.0, np.inf], [3.0, 4.0]]), {}, ValueError, "finite.*inf at row 0"),
        (np.ones(5), {}, ValueError, "2-D matrix.*1 dimension"),
        (np.ones((2, 3, 4)), {}, ValueError, "2-D matrix.*3 dimension"),
        (np.zeros((4, 3)), {}, ValueError, "every observed entry is zero"),
        (np.array([["a", "b"], ["c", "d"]]), {}, TypeError, "numeric matrix.*dtype"),
        (pd.DataFrame({"a": ["x", "y"], "b": [1, 2]}), {}, TypeError, "numeric matrix"),
        (GOOD, {"model": 0}, ValueError, "rank: expected an integer >= 1, got 0"),
        (GOOD, {"model": -1}, ValueError, "rank: expected an integer >= 1"),
        (GOOD, {"model": 2.5}, TypeError, "model: expected an NMFModel or an int"),
        (GOOD, {"model": 4, "init": "nndsvda"}, ValueError, r"rank <= min.* = 3, got 4"),
        (GOOD, {"init": "svd"}, ValueError, "init: expected one of"),
        (GOOD, {"n_restarts": 0}, ValueError, "n_restarts: expected an integer >= 1"),
        (GOOD, {"seed": -3}, TypeError, "seed: expected a non-negative integer"),
        (GOOD, {"tol": -1.0}, ValueError, "tol: expected a finite number >= 0"),
        (GOOD, {"max_iter": 0}, ValueError, "max_iter"),
        (GOOD, {"dtype": "float16"}, ValueError, "dtype: expected 'float32' or 'float64'"),
        (GOOD, {"mask": np.ones((3, 3))}, ValueError, r"mask: expected shape \(4, 3\)"),
        (GOOD, {"mask": np.array([[0, 1, 1]] + [[0, 1, 1]] * 3)}, ValueError,
         r"mask: columns \[0\] have no observed entry"),
        (GOOD, {"init": "nndsvda", "n_restarts": 3}, ValueError, "deterministic"),
        (GOOD, {"model": bn.NMFModel(2, bn.Poisson(), bn.Gamma(0.5, 1.0))}, ValueError,
         "shape: MAP estimation needs a gamma prior with shape >= 1"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_rejected_before_compiling(no_compile, X, kwargs, error, match):
    kwargs = {"model": 2, **kwargs}
    model = kwargs.pop("model")
    with pytest.raises(error, match=match):
        bn.fit_map(X, model, **kwargs)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: bn.Exponential(rate=0.0), ValueError, "rate: expected a finite number > 0"),
        (lambda: bn.HalfNormal(scale=-1.0), ValueError, "scale"),
        (lambda: bn.Gamma(shape="a"), TypeError, "shape: expected a positive number"),
        (lambda: bn.Gaussian(noise_scale=0.0), ValueError, "noise_scale"),
        (lambda: bn.Gaussian(None, noise_var_shape=1.0), ValueError, "give both"),
        (lambda: bn.NMFModel(2, "poisson"), TypeError, "likelihood: expected"),
        (lambda: bn.NMFModel(2, bn.Poisson(), prior_W=1.0), TypeError, "prior_W"),
    ],
)
def test_bad_settings_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


LIKS = [bn.Gaussian(1.0), bn.Poisson()]


@pytest.mark.parametrize("lik", LIKS, ids=["gaussian", "poisson"])
@pytest.mark.parametrize("axis", [0, 1], ids=["zero-row", "zero-column"])
def test_all_zero_row_or_column(lik, axis):
    X = np.ones((5, 4))
    if axis == 0:
        X[2, :] = 0.0
    else:
        X[:, 1] = 0.0
    res = bn.fit_map(X, bn.NMFModel(2, lik), n_restarts=2, max_iter=500, warn=False)
    assert np.isfinite(res.W_raw).all() and np.isfinite(res.H_raw).all()
    if axis == 0:
        assert_allclose(res.W_raw[2], 0.0, atol=1e-12)
    else:
        assert_allclose(res.H_raw[:, 1], 0.0, atol=1e-12)
    # Rank 2 on rank-1 data: MU approaches the exact fit only sublinearly.
    assert_allclose(res.W_raw @ res.H_raw, X, atol=1e-2)


@pytest.mark.parametrize("lik", LIKS, ids=["gaussian", "poisson"])
def test_exact_rank_one(lik):
    X = np.array([[1.0, 3.0, 0.0], [2.0, 6.0, 0.0]])
    res = bn.fit_map(X, bn.NMFModel(1, lik), max_iter=5000, tol=1e-12, warn=False)
    err = np.linalg.norm(X - res.W_raw @ res.H_raw) / np.linalg.norm(X)
    assert err < 1e-6


@pytest.mark.parametrize("lik", LIKS, ids=["gaussian", "poisson"])
def test_int32_matrix_same_objective_as_float64(lik):
    X = np.full((3, 3), 50000, dtype=np.int32)
    W0, H0 = np.full((3, 1), 10.0), np.full((1, 3), 20.0)
    kw = dict(init="custom", W_init=W0, H_init=H0, max_iter=20, tol=0.0, warn=False)
    a = bn.fit_map(X, bn.NMFModel(1, lik), **kw)
    b = bn.fit_map(X.astype(np.float64), bn.NMFModel(1, lik), **kw)
    assert np.isfinite(a.objective)
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.trace, b.trace)


def test_poisson_objective_with_denormal_entry():
    X = np.array([[3.0, 1.0, 4.0], [1.0, 5.0, 9.0], [2.0, 6.0, 5.0]])
    W0, H0 = np.full((3, 1), 1.5), np.full((1, 3), 2.0)
    kw = dict(init="custom", W_init=W0, H_init=H0, max_iter=1, tol=0.0, warn=False)
    X0 = X.copy()
    X0[1, 1] = 0.0
    X1 = X.copy()
    X1[1, 1] = 1e-323
    a = bn.fit_map(X1, 1, **kw)
    b = bn.fit_map(X0, 1, **kw)
    assert np.isfinite(a.trace).all()
    assert_allclose(a.trace, b.trace, rtol=1e-9)


def test_kl_loss_at_zero_mean_is_not_smaller_than_near_zero():
    import jax.numpy as jnp
    from jax import enable_x64

    lik = bn.Poisson()
    with enable_x64(True):
        X = jnp.ones((1, 1))
        W = jnp.ones((1, 1))
        at_zero = float(lik.loss(X, None, W, jnp.zeros((1, 1)), {}))
        near_zero = float(lik.loss(X, None, W, jnp.full((1, 1), 1e-9), {}))
        assert _guard(jnp.float64) < 1e-9
    assert np.isfinite(at_zero)
    assert at_zero >= near_zero


def test_nan_as_missing_warns_and_masks():
    X = np.ones((4, 3))
    X[1, 2] = np.nan
    with pytest.warns(UserWarning, match="1 NaN entries are treated as missing"):
        data = bn.as_nmf_data(X, allow_nan=True)
    assert data.mask[1, 2] == 0 and data.X[1, 2] == 0 and data.n_observed == 11
