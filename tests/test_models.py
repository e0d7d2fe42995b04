"""The stand-alone models in ``models/``: contract, densities and scripts.

Every file in ``models/`` is imported by path (the folder is not a package) and
checked on small data: the program passes :func:`inspect_program` (also with
minibatches), its prior predictive has the right shapes, its log joint density
at known values equals a SciPy computation, and its ``main()`` runs in quick
mode, which fits it by stochastic VI and compares it with a built-in model
through ``compare_likelihoods(..., method="vi")``.
"""

import functools
import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

from bayesnmf._precision import precision_scope
from bayesnmf._program import inspect_program

MODELS_DIR = pathlib.Path(__file__).resolve().parents[1] / "models"
NAMES = (
    "zero_inflated_poisson",
    "negbinomial_per_feature",
    "hierarchical_groups",
    "opportunity_poisson",
)
M, N, RANK = 12, 10, 2
GROUPS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
OPPORTUNITIES = np.linspace(0.5, 2.0, N)


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"bayesnmf_models_{name}", MODELS_DIR / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {name: _load(name) for name in NAMES}


def _program(name, **overrides):
    """Return the model of ``name`` at rank 2 with non-default hyperparameters."""
    mod = MODULES[name]
    if name == "zero_inflated_poisson":
        kw = dict(gate_prior=(2.0, 5.0), prior_W=(1.5, 2.0), prior_H=(2.0, 0.5))
        fn = mod.zero_inflated_poisson_nmf
    elif name == "negbinomial_per_feature":
        kw = dict(concentration_prior=(3.0, 0.5), prior_W=(1.5, 2.0),
                  prior_H=(2.0, 0.5))
        fn = mod.negbinomial_per_feature_nmf
    elif name == "hierarchical_groups":
        kw = dict(groups=GROUPS, activation_shape=1.5, group_rate_prior=(3.0, 2.0),
                  prior_W=(1.5, 2.0))
        fn = mod.hierarchical_groups_nmf
    else:
        kw = dict(opportunities=OPPORTUNITIES, prior_W=(1.5, 2.0),
                  prior_H=(2.0, 0.5))
        fn = mod.opportunity_poisson_nmf
    return functools.partial(fn, rank=RANK, **{**kw, **overrides})


#: Latent sites other than W and H, with their shapes at M x N, rank 2.
EXTRA_SITES = {
    "zero_inflated_poisson": {"gate": (M, 1)},
    "negbinomial_per_feature": {"concentration": (M, 1)},
    "hierarchical_groups": {"group_rate": (RANK, 3)},
    "opportunity_poisson": {},
}


@pytest.fixture
def counts(rng):
    X = rng.poisson(3.0, size=(M, N)).astype(float)
    X[rng.random((M, N)) < 0.3] = 0.0
    return X


def test_every_model_file_is_tested():
    files = sorted(p.stem for p in MODELS_DIR.glob("*.py"))
    assert files == sorted(NAMES)
    readme = (MODELS_DIR / "README.md").read_text()
    assert all(f"`{name}.py`" in readme for name in NAMES)


# -- the program contract -------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_program_contract_with_minibatches(name, counts):
    with precision_scope(np.float64):
        program = inspect_program(_program(name), counts, None, batch_size=4)
    assert program.rank == RANK
    shapes = {s.name: s.shape for s in program.sites}
    assert shapes == {"W": (M, RANK), "H": (RANK, N), **EXTRA_SITES[name]}
    assert program.site("W").positive and program.site("H").positive
    assert all(s.proper for s in program.sites)
    # Only H is local to the subsampled plate over columns.
    assert program.column_plate.name == "observation"
    assert [s.name for s in program.local_sites] == ["H"]


def test_global_gate_is_a_scalar(counts):
    with precision_scope(np.float64):
        program = inspect_program(
            _program("zero_inflated_poisson", gate="global"), counts, None
        )
    assert program.site("gate").shape == ()


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("zero_inflated_poisson", {"gate": "row"}, "gate: expected one of"),
        ("hierarchical_groups", {"groups": GROUPS[:-1]}, "groups: expected 10"),
        ("hierarchical_groups", {"groups": GROUPS - 1}, "groups: codes"),
        ("opportunity_poisson", {"opportunities": -OPPORTUNITIES},
         "opportunities: expected 10 positive"),
    ],
    ids=["gate", "groups-length", "groups-negative", "opportunities"],
)
def test_bad_hyperparameters_raise(name, overrides, match, counts):
    with pytest.raises(ValueError, match=match):
        _program(name, **overrides)(counts)


@pytest.mark.parametrize("name", NAMES)
def test_prior_predictive_needs_a_shape(name):
    with pytest.raises(ValueError, match="shape: give"):
        _program(name)(None)


@pytest.mark.parametrize("name", NAMES)
def test_prior_predictive_shapes(name):
    # One compiled program: op-by-op, the gamma samplers take twice as long.
    predictive = Predictive(_program(name), num_samples=3)
    with precision_scope(np.float64):
        draws = jax.jit(lambda key: predictive(key, None, shape=(M, N)))(
            jax.random.key(0)
        )
    assert draws["X"].shape == (3, M, N)
    assert draws["W"].shape == (3, M, RANK) and draws["H"].shape == (3, RANK, N)
    for site, shape in EXTRA_SITES[name].items():
        assert draws[site].shape == (3, *shape)
    X = np.asarray(draws["X"])
    assert np.all(X >= 0) and np.all(X == np.round(X))


# -- the log density against SciPy ---------------------------------------------
def _gamma(x, shape_rate):
    shape, rate = shape_rate
    return stats.gamma.logpdf(x, shape, scale=1.0 / rate)


def _reference_log_joint(name, X, mask, v, kw):
    """Slow NumPy/SciPy log joint density, written from each docstring."""
    observed = mask > 0
    WH = v["W"] @ v["H"]
    if name == "zero_inflated_poisson":
        gate = v["gate"]
        prior = stats.beta.logpdf(gate, *kw["gate_prior"]).sum()
        pmf = gate * (X == 0) + (1 - gate) * stats.poisson.pmf(X, WH)
        lik = np.log(pmf)
        prior += _gamma(v["H"], kw["prior_H"]).sum()
    elif name == "negbinomial_per_feature":
        r = v["concentration"]
        prior = _gamma(r, kw["concentration_prior"]).sum()
        lik = stats.nbinom.logpmf(X, r, r / (r + WH))
        prior += _gamma(v["H"], kw["prior_H"]).sum()
    elif name == "hierarchical_groups":
        rate = v["group_rate"]
        prior = _gamma(rate, kw["group_rate_prior"]).sum()
        prior += stats.gamma.logpdf(
            v["H"], kw["activation_shape"], scale=1.0 / rate[:, kw["groups"]]
        ).sum()
        lik = stats.poisson.logpmf(X, WH)
    else:
        prior = _gamma(v["H"], kw["prior_H"]).sum()
        lik = stats.poisson.logpmf(X, kw["opportunities"] * WH)
    prior += _gamma(v["W"], kw["prior_W"]).sum()
    return prior + lik[observed].sum()


@pytest.mark.parametrize("name", NAMES)
def test_log_density_matches_scipy(name, counts, rng):
    model = _program(name)
    shapes = {"W": (M, RANK), "H": (RANK, N), **EXTRA_SITES[name]}
    values = {k: rng.gamma(2.0, 1.0, size=s) for k, s in shapes.items()}
    if "gate" in values:
        values["gate"] = rng.uniform(0.05, 0.6, size=shapes["gate"])
    mask = (rng.random((M, N)) > 0.25).astype(float)
    with precision_scope(np.float64):
        got, _ = log_density(model, (counts, mask), {}, values)
    expected = _reference_log_joint(name, counts, mask, values, model.keywords)
    # An identity in float64, but NumPyro's negative binomial goes through
    # jax.scipy.special.betaln, accurate to about 1e-6 per entry.
    rtol = 1e-7 if name == "negbinomial_per_feature" else 1e-10
    assert_allclose(float(got), expected, rtol=rtol)


# -- the scripts -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_main_quick_fits_and_compares(name, capsys):
    run = MODULES[name].main(quick=True)
    out = capsys.readouterr().out

    X = run.data.to_numpy()
    fit = run.fit
    assert fit.settings["engine"] == "svi" and fit.settings["masked"]
    assert fit.W.shape == (X.shape[0], fit.rank)
    assert fit.H.shape == (fit.rank, X.shape[1])
    assert np.isfinite(fit.W_raw).all() and np.isfinite(fit.H_raw).all()
    assert np.isfinite(fit.objective)

    table = run.comparison.table
    assert "poisson" in table.index and len(table) == 2
    custom = next(i for i in table.index if i != "poisson")
    assert table.loc[custom, "scored_as"] == "as programmed"
    assert np.isfinite(table["heldout_lpd"]).all()
    # Log probabilities of counts are negative.
    assert (table["lpd_per_entry"] < 0).all()
    assert run.comparison.settings["rank"] == fit.rank
    assert "Likelihood comparison" in out and "Best:" in out
