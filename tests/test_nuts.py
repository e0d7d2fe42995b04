"""NUTS through NumPyro (``bayesnmf.mcmc.fit_nuts``) on tiny problems.

The reference is rank-1 Poisson NMF with gamma priors, whose posterior mean of
``WH`` is an exact one-dimensional integral (``_nmf_programs``). Fits are shared
through module-scoped fixtures; refits with the same settings reuse the
compiled sampler.
"""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import bayesnmf as bn
from _nmf_programs import exact_rank1_posterior_mean, zip_nmf
from bayesnmf._program import CustomModel
from bayesnmf.mcmc import SAMPLE_STATS, _align, _chunk_traces, _warn, fit_nuts
from conftest import planted

PRIORS = dict(shape_W=1.0, rate_W=1.0, shape_H=1.0, rate_H=0.1)


def _quiet_fit(X, model, **kwargs):
    # Two short chains: R-hat near 1.01 may warn, which these tests do not judge.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bn.ConvergenceWarning)
        return fit_nuts(X, model, **kwargs)


@pytest.fixture(scope="module")
def rank1():
    rng = np.random.default_rng(1)
    X = rng.poisson(np.outer(rng.gamma(2.0, 1.0, 8), rng.gamma(2.0, 3.0, 6)))
    X = X.astype(float)
    model = bn.NMFModel(
        1,
        bn.Poisson(),
        bn.Gamma(PRIORS["shape_W"], PRIORS["rate_W"]),
        bn.Gamma(PRIORS["shape_H"], PRIORS["rate_H"]),
    )
    settings = dict(num_chains=2, num_warmup=300, num_samples=500, seed=0)
    fit = _quiet_fit(X, model, **settings)
    return X, model, settings, fit


@pytest.fixture(scope="module")
def rank2():
    rng = np.random.default_rng(20261203)
    W, H = planted(rng, 8, 6, 2, scale=20.0)
    X = rng.poisson(W @ H).astype(float)
    model = bn.NMFModel(2, bn.Poisson(), bn.Gamma(1.0, 1.0), bn.Gamma(1.0, 0.05))
    fit = _quiet_fit(X, model, num_chains=2, num_warmup=300, num_samples=300)
    return X, fit


def _total_intensity(res):
    W, H = res.draws["W"], res.draws["H"]
    return (W.sum(axis=-2) * H.sum(axis=-1)).sum(axis=-1)


def test_total_intensity_matches_exact_posterior(rank1):
    X, _, _, res = rank1
    exact = exact_rank1_posterior_mean(X, **PRIORS)
    total = _total_intensity(res)
    assert total.shape == (2, 500)
    mcse = total.std() / np.sqrt(res.extra["ess_bulk_total_intensity"])
    # Within four Monte Carlo standard errors (about 0.5% here).
    assert abs(total.mean() - exact.sum()) < 4 * mcse
    # Entry-wise posterior mean of WH: MC error ~0.3%, no bias.
    assert_allclose(res.extra["WH_mean"], exact, rtol=0.02)


def test_seed_reproducible_and_sampler_compiled_once(rank1):
    X, model, settings, res = rank1
    before = dict(_chunk_traces)
    again = _quiet_fit(X, model, **settings)
    other = _quiet_fit(X, model, **{**settings, "seed": 1})
    assert dict(_chunk_traces) == before
    assert all(count == 1 for count in _chunk_traces.values())
    for name in ("W", "H"):
        assert_array_equal(again.draws[name], res.draws[name])
    assert_array_equal(again.extra["energy"], res.extra["energy"])
    assert not np.array_equal(other.draws["H"], res.draws["H"])


def test_aligned_components_mix(rank2):
    _, res = rank2
    assert res.extra["num_divergent"] == 0
    assert res.extra["rhat_max"] < 1.05
    assert res.extra["rhat_total_intensity"] < 1.05
    assert res.extra["ess_bulk_min"] > 50
    assert res.extra["alignment_cosine"].min() > 0.99
    assert res.extra["rhat_W"].shape == (8, 2)
    assert res.extra["rhat_H"].shape == (2, 6)


def test_result_contents(rank2, tmp_path):
    X, res = rank2
    C, S = 2, 300
    assert res.method == "nuts"
    assert res.settings["init_used"] == "map"
    assert res.extra["draws_aligned"] and res.settings["draws_normalized"]
    assert res.draws["W"].shape == (C, S, 8, 2)
    assert res.draws["H"].shape == (C, S, 2, 6)
    assert_allclose(res.draws["W"].sum(axis=-2), 1.0, rtol=1e-12)
    assert_allclose(res.W_raw.sum(axis=0), 1.0, rtol=1e-12)
    for name in SAMPLE_STATS.values():
        assert res.extra[name].shape == (C, S)
    assert res.extra["lp"].shape == (C, S)
    assert res.objective == pytest.approx(-res.extra["lp"].mean())
    # Normalising and aligning keep every draw's WH.
    WH = np.einsum("csir,csrj->ij", res.draws["W"], res.draws["H"]) / (C * S)
    assert_allclose(WH, res.extra["WH_mean"], rtol=1e-10)
    assert_allclose(WH.sum(), X.sum(), rtol=0.05)
    assert res.restarts["W_raw"].shape == (C, 8, 2)
    assert res.trace.shape == res.trace_iter.shape == (S,)

    loaded = bn.NMFResult.load(res.save(tmp_path / "nuts"))
    assert_array_equal(loaded.draws["W"], res.draws["W"])
    assert_array_equal(loaded.extra["diverging"], res.extra["diverging"])
    assert loaded.extra["rhat_max"] == res.extra["rhat_max"]


def test_alignment_undoes_permutation_and_scale():
    rng = np.random.default_rng(0)
    W = rng.gamma(1.0, 1.0, size=(2, 50, 6, 3))
    H = rng.gamma(1.0, 1.0, size=(2, 50, 3, 4))
    W[1], H[1] = W[0][..., [2, 0, 1]] * 3.0, H[0][..., [2, 0, 1], :] / 3.0
    out = _align(W, H, None, "chain")
    assert_array_equal(out["permutation"][1], [1, 2, 0])
    assert_allclose(out["W"][1], out["W"][0], rtol=1e-12)
    assert_allclose(out["H"][1], out["H"][0], rtol=1e-12)
    assert_allclose(out["scale"][1], 3.0 * out["scale"][0], rtol=1e-12)


def test_warnings_on_divergences_and_rhat():
    diagnostics = {"rhat_max": 1.2, "rhat_total_intensity": 1.0}
    with pytest.warns(bn.ConvergenceWarning) as record:
        _warn(3, 100, diagnostics, 0.8)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "3 of 100 transitions" in messages[0]
    assert "rhat_max=1.200" in messages[1]


def test_custom_program():
    rng = np.random.default_rng(3)
    W, H = planted(rng, 8, 6, 2, scale=20.0)
    X = rng.poisson(W @ H).astype(float)
    res = _quiet_fit(X, zip_nmf, num_chains=2, num_warmup=150, num_samples=150)
    assert isinstance(res.model, CustomModel)
    assert res.settings["init_used"] == "prior"
    assert set(res.draws) == {"W", "H", "exposure", "gate"}
    assert res.draws["exposure"].shape == (2, 150, 8, 1)
    assert res.extra["mean_exposure"].shape == (8, 1)
    assert 0.0 < res.params["gate"] < 0.5
    assert np.isfinite(res.extra["rhat_max"])


# -- inputs rejected before anything is compiled -----------------------------------
def _flat_H(X, mask=None, *, subsample_size=None):
    m, n = X.shape
    with numpyro.plate("f", m, dim=-2), numpyro.plate("k", 2, dim=-1):
        W = numpyro.sample("W", dist.Gamma(1.0, 1.0))
    with numpyro.plate("k2", 2, dim=-2), numpyro.plate("o", n, dim=-1):
        H = numpyro.sample("H", dist.ImproperUniform(dist.constraints.positive, (), ()))
    with numpyro.plate("f", m, dim=-2), numpyro.plate("o", n, dim=-1):
        numpyro.sample("X", dist.Poisson(W @ H), obs=X)


@pytest.mark.parametrize(
    "model, kwargs, error, match",
    [
        (bn.NMFModel(2, bn.Poisson()), {}, ValueError, "NUTS needs proper priors"),
        (_flat_H, {}, ValueError, "NUTS needs proper priors"),
        (zip_nmf, {"chain_method": "threads"}, ValueError, "chain_method"),
        (zip_nmf, {"target_accept_prob": 1.0}, ValueError, "target_accept_prob"),
        (zip_nmf, {"num_samples": 0}, ValueError, "num_samples"),
        (zip_nmf, {"align": "none"}, ValueError, "align"),
        (zip_nmf, {"init": "random"}, ValueError, "init"),
    ],
    ids=["flat-NMFModel", "flat-H", "chain_method", "accept", "num_samples", "align",
         "init"],
)
def test_bad_inputs_fail_before_compiling(model, kwargs, error, match):
    X = np.ones((8, 6))
    before = dict(_chunk_traces)
    with pytest.raises(error, match=match):
        fit_nuts(X, model, **kwargs)
    assert dict(_chunk_traces) == before
