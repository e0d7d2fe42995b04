"""ArviZ 1.x output: dimensions, labels, log-likelihood, summaries, NetCDF."""

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import bayesnmf as bn
from bayesnmf.inference_data import (
    load_datatree,
    posterior_summary,
    save_datatree,
    to_datatree,
)

MODEL = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Gamma(1.0, 0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    W = rng.gamma(2.0, 1.0, (7, 2))
    H = rng.gamma(2.0, 10.0, (2, 5))
    X = rng.poisson(W @ H).astype(float)
    return pd.DataFrame(X, index=[f"g{i}" for i in range(7)],
                        columns=[f"s{j}" for j in range(5)])


@pytest.fixture(scope="module")
def fits(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bn.ConvergenceWarning)
        return {
            "map": bn.fit(data, MODEL, method="map", n_restarts=2),
            "vi": bn.fit(data, MODEL, method="vi", n_restarts=2, num_draws=300),
            "nuts": bn.fit(data, MODEL, method="nuts", num_chains=2,
                           num_warmup=150, num_samples=150),
        }


@pytest.mark.parametrize("method", ["map", "vi", "nuts"])
def test_datatree_dims_labels_and_loglik(data, fits, method):
    res = fits[method]
    tree = to_datatree(res, data)
    post = tree["posterior"]
    assert post["W"].dims == ("chain", "draw", "feature", "component")
    assert post["H"].dims == ("chain", "draw", "component", "observation")
    assert list(post["feature"].values) == list(data.index)
    assert list(post["observation"].values) == list(data.columns)
    ll = tree["log_likelihood"]["X"]
    assert ll.dims == ("chain", "draw", "feature", "observation")
    # Reporting scale: every draw's W columns sum to one.
    assert_allclose(post["W"].sum("feature").values, 1.0, rtol=1e-10)
    # Pointwise log-likelihood equals SciPy's Poisson pmf at each draw's WH.
    W = post["W"].values[0, 0]
    H = post["H"].values[0, 0]
    ref = stats.poisson.logpmf(data.to_numpy(), W @ H)
    assert_allclose(ll.values[0, 0], ref, rtol=1e-10)
    assert np.array_equal(tree["observed_data"]["X"].values, data.to_numpy())
    if method == "nuts":
        assert "diverging" in tree["sample_stats"]


def test_netcdf_roundtrip_exact(data, fits, tmp_path):
    tree = to_datatree(fits["nuts"], data)
    path = tmp_path / "posterior.nc"
    save_datatree(tree, path)
    back = load_datatree(path)
    assert back.identical(tree)


def test_summary_gives_intervals_for_every_entry(data, fits):
    res = fits["vi"]
    table = posterior_summary(res, data, ci_prob=0.9)
    assert len(table) == 7 * 2 + 2 * 5
    assert {"mean", "sd", "eti90_lb", "eti90_ub", "r_hat"} <= set(table.columns)
    # The interval of one entry equals the quantiles of its normalised draws.
    W, H = bn.normalize(res.draws["W"], res.draws["H"])
    h = H[..., 0, 3].ravel()
    row = table.loc["H[C1, s3]"]
    assert_allclose(row["eti90_lb"], np.quantile(h, 0.05), rtol=1e-6)
    assert_allclose(row["eti90_ub"], np.quantile(h, 0.95), rtol=1e-6)
    assert_allclose(row["mean"], h.mean(), rtol=1e-10)


def test_map_has_no_intervals(data, fits):
    with pytest.raises(ValueError, match="MAP fit has no posterior draws"):
        posterior_summary(fits["map"], data)


def test_loo_runs_on_nuts_tree(data, fits):
    from arviz_stats import loo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = loo(to_datatree(fits["nuts"], data))
    assert np.isfinite(res.elpd) and res.pareto_k.size == data.size


def test_shape_mismatch_is_refused(data, fits):
    with pytest.raises(ValueError, match="X: expected shape"):
        to_datatree(fits["map"], data.iloc[:, :4])
