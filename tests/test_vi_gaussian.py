"""Closed-form VI for Gaussian NMF with truncated-normal factors (METHODS §3.2).

Every fit here shares one data shape (30 x 20), four restarts and a trace of
201 checks, so that the compiled kernels are reused across tests.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from numpyro.infer.util import log_density
from scipy import stats
from scipy.integrate import quad
from scipy.optimize import linear_sum_assignment

import bayesnmf as bn
from bayesnmf.vi import _gaussian_tn as vg
from bayesnmf.vi._gaussian_tn import fit_vi_gaussian
from conftest import planted

SHAPE = (30, 20)
N_RESTARTS = 4
FIXED_NOISE = 0.05


def _model(rank=3, noise="estimated"):
    if noise == "estimated":
        lik = bn.Gaussian(None, noise_var_shape=2.0, noise_var_rate=1.0)
    else:
        lik = bn.Gaussian(FIXED_NOISE)
    return bn.NMFModel(rank, lik, bn.Exponential(1.0), bn.Exponential(0.5))


def _planted_gaussian(seed=0, sigma=0.7):
    """Rank-3 data from exponential factors plus Gaussian noise (clipped at 0)."""
    rng = np.random.default_rng(seed)
    W = rng.exponential(1.0, size=(SHAPE[0], 3))
    H = rng.exponential(2.0, size=(3, SHAPE[1]))
    X = np.maximum(W @ H + rng.normal(0.0, sigma, SHAPE), 0.0)
    return W, H, X


def _tail_data(seed=0):
    """Data that pull a few entries of W below zero, with little noise: their
    q sits far in the left tail (a = -mu / sigma up to ~25)."""
    rng = np.random.default_rng(seed)
    W = rng.exponential(1.0, size=(SHAPE[0], 3)) + 0.5
    H = rng.exponential(2.0, size=(3, SHAPE[1])) + 0.5
    W[:4, 0] = W[4:8, 1] = -0.4
    return np.maximum(W @ H + rng.normal(0.0, FIXED_NOISE, SHAPE), 0.0)


def _mask(seed=1, frac=0.2):
    mask = (np.random.default_rng(seed).random(SHAPE) > frac).astype(float)
    mask[:, 0] = mask[0, :] = 1.0
    return mask


def _fit(X, model, **kw):
    kw = {"n_restarts": N_RESTARTS, "num_draws": 0, **kw}
    return fit_vi_gaussian(X, model, **kw)


def _match_cosine(A, B):
    a = A / np.linalg.norm(A, axis=0)
    b = B / np.linalg.norm(B, axis=0)
    C = a.T @ b
    rows, cols = linear_sum_assignment(-C)
    return C[rows, cols], cols


@pytest.fixture(scope="module")
def data():
    return _planted_gaussian()


@pytest.fixture(scope="module")
def fits(data):
    """Fits with 2000 draws from q: unmasked and masked with estimated noise,
    and fixed noise on data that put some of q in the far tail."""
    X = data[2]
    out = {
        case: _fit(X, _model(), mask=_mask() if case == "masked" else None,
                   num_draws=2000)
        for case in ("full", "masked")
    }
    out["tail"] = _fit(_tail_data(), _model(noise="fixed"), num_draws=2000)
    return out


# -- truncated-normal moments and sampler ------------------------------------

# (a, mean, var, entropy) of TN_[0, inf)(mu=-a, sigma=1), mpmath at 50 digits.
MPMATH = [
    (-5, 5.000001486719941, 0.9999925663980851, 1.4189345297532074),
    (0, 0.7978845608028654, 0.3633802276324187, 0.7257913526447274),
    (2, 0.37321553282284087, 0.11427910041408125, 0.00896973234548166),
    (8, 0.12136811223611269, 0.014324883443340911, -1.1090261777654264),
    (12, 0.08221417525428433, 0.006670726335845864, -1.4984494168384173),
    (20, 0.049753068527850546, 0.0024632616150521637, -2.0006861526140858),
    (30, 0.03325966743367704, 0.001103771511890091, -2.4034104116333688),
    (40, 0.024968847207263722, 0.0006226683785913888, -2.690126536403841),
    (100, 0.009998000999260705, 9.994004994826346e-05, -3.605370111037381),
]


def _moments(mu, tau):
    with jax.enable_x64(True):
        return [np.asarray(v) for v in jax.jit(vg._tn_moments)(mu, tau)]


def _scipy_entropy(a, sigma):
    """-E log q by quadrature of SciPy's truncnorm density (its own .entropy()
    returns NaN for an infinite upper bound)."""
    t = stats.truncnorm(a, np.inf)
    hi = max(a, 0.0) + 40.0 / max(a, 1.0)
    h, _ = quad(lambda z: -t.pdf(z) * t.logpdf(z), max(a, -40.0), hi,
                epsabs=0.0, epsrel=1e-13, limit=200)
    return h + np.log(sigma)


def test_tn_moments_match_mpmath_to_float64_precision():
    a, mean, var, ent = (np.array(c, dtype=float) for c in zip(*MPMATH))
    # A scale sigma: mean * sigma, var * sigma^2, entropy + log(sigma).
    sigma = 0.3
    m, v, h = _moments(-a * sigma, np.full_like(a, sigma**-2))
    m, v, h = m / sigma, v / sigma**2, h - np.log(sigma)
    assert_allclose(m, mean, rtol=1e-12)
    # The closed-form variance cancels as a^4 eps below the switch to the
    # asymptotic series at a = 10 (5e-11 at a = 8); beyond it, full precision.
    assert_allclose(v, var, rtol=1e-10)
    assert_allclose(v[a > 10], var[a > 10], rtol=1e-14)
    assert_allclose(h, ent, rtol=1e-12, atol=1e-14)


A_GRID = [-40.0, -5.0, -1.0, 0.0, 1.0, 3.0, 5.0, 9.99, 10.01, 15.0, 20.0, 30.0, 40.0]


def test_tn_moments_match_scipy_truncnorm_including_far_tails():
    sigma = 0.7
    a = np.array(A_GRID)
    m, v, h = _moments(-a * sigma, np.full_like(a, sigma**-2))
    ref = [stats.truncnorm(ai, np.inf, loc=-ai * sigma, scale=sigma) for ai in a]
    assert_allclose(m, [t.mean() for t in ref], rtol=1e-9)
    # SciPy's own variance loses digits in the far tail (2.3e-7 at a = 40
    # against mpmath, where ours agrees to 1e-15: see the test above).
    assert_allclose(v, [t.var() for t in ref], rtol=1e-6)
    assert_allclose(h, [_scipy_entropy(ai, sigma) for ai in a], rtol=1e-10, atol=1e-12)
    assert np.all(m > 0) and np.all(v > 0)


def test_tn_moments_continuous_at_the_tail_switch():
    a = vg._TAIL * np.array([1 - 1e-12, 1 + 1e-12])
    m, v, h = _moments(-a, np.ones(2))
    # The closed forms lose digits to cancellation near a = 10 (mean ~ a^2 eps,
    # variance ~ a^4 eps, entropy: log Phi(-a) + a l / 2 ~ -50 + 50).
    assert_allclose(m[0], m[1], rtol=1e-11)
    assert_allclose(v[0], v[1], rtol=1e-9)
    assert_allclose(h[0], h[1], rtol=1e-11)


def test_tn_sampler_matches_truncnorm():
    a = np.array([-3.0, 0.0, 2.0, 6.0, 35.0])
    sigma = 0.5
    n = 20000
    with jax.enable_x64(True):
        mu, tau = jnp.asarray(-a * sigma), jnp.full(a.shape, sigma**-2)
        draws = np.asarray(jax.jit(vg._sample_tn, static_argnums=3)(
            jax.random.key(3), mu, tau, (n, a.size)))
    mean, var, _ = _moments(-a * sigma, np.full(a.shape, sigma**-2))
    assert np.all(draws >= 0) and np.all(np.isfinite(draws))
    # Mean within 5 Monte Carlo standard errors, variance within 5%.
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(var / n))
    assert_allclose(draws.var(0), var, rtol=0.05)
    for k, ak in enumerate(a):
        cdf = stats.truncnorm(ak, np.inf, loc=-ak * sigma, scale=sigma).cdf
        assert stats.kstest(draws[:, k], cdf).pvalue > 1e-3, ak


# -- the ELBO ------------------------------------------------------------------


@pytest.mark.parametrize(
    "masked, noise", [(True, "estimated"), (False, "fixed")],
    ids=["masked-estimated", "full-fixed"],
)
def test_elbo_never_decreases_after_any_block(data, masked, noise):
    """After every column of W, row of H, the rescaling and q(tau)."""
    X = data[2] if noise == "estimated" else _tail_data()
    M = _mask() if masked else None
    model = _model(noise=noise)
    spec = vg._spec(model)
    init, _ = vg._kernels(spec)
    sweep = jax.jit(functools.partial(vg._sweep_with_elbos, spec))
    with jax.enable_x64(True):
        Xj, Mj = jnp.asarray(X), None if M is None else jnp.asarray(M)
        rank = jnp.asarray(3, jnp.int32)
        keys = vg._restart_keys(jax.random.key(0), N_RESTARTS)
        state = init(Xj, Mj, keys, rank, r_pad=4, n_trace=201)
        q = jax.tree.map(lambda v: v[0], state.q)
        elbos = [float(state.elbo[0])]
        for _ in range(25):
            q, trace = sweep(Xj, Mj, q, rank)
            trace = np.asarray(trace)
            elbos.extend(trace[~np.isnan(trace)])
    elbos = np.array(elbos)
    assert elbos.size == 1 + 25 * (2 * 3 + 2)
    steps = np.diff(elbos)
    assert np.all(steps >= -1e-9 * np.abs(elbos[1:])), steps.min()
    assert elbos[-1] > elbos[0]


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_elbo_never_decreases_per_sweep(data, masked):
    res = _fit(data[2], _model(), mask=_mask() if masked else None, max_iter=200,
               check_every=1, tol=0.0, warn=False)
    trace = res.restarts["trace"]  # negative ELBO, one column per sweep
    assert trace.shape == (N_RESTARTS, 201) and not np.isnan(trace).any()
    steps = np.diff(trace, axis=1)
    assert np.all(steps <= 1e-9 * np.abs(trace[:, 1:])), steps.max()
    assert_array_equal(res.restarts["n_iter"], 200)


def test_rescaling_step_is_the_optimum_along_the_ridge(data):
    """The closed-form c maximises the ELBO over w_k -> c w_k, h_k -> h_k / c."""
    model = _model()
    spec = vg._spec(model)
    init, _ = vg._kernels(spec)

    def scaled(q, factor):
        q = vg._rescale(spec, Xj, None, q)
        c = jnp.where(jnp.arange(4) == 1, factor, 1.0)  # move component 1 only
        q = q._replace(
            W_mu=q.W_mu * c, W_tau=q.W_tau / c**2, W_mean=q.W_mean * c,
            W_var=q.W_var * c**2, W_ent=q.W_ent + jnp.log(c),
            H_mu=q.H_mu / c[:, None], H_tau=q.H_tau * c[:, None] ** 2,
            H_mean=q.H_mean / c[:, None], H_var=q.H_var / c[:, None] ** 2,
            H_ent=q.H_ent - jnp.log(c)[:, None],
        )
        return vg._elbo(spec, Xj, None, vg._refresh(Xj, None, q), 3)

    with jax.enable_x64(True):
        Xj = jnp.asarray(data[2])
        keys = vg._restart_keys(jax.random.key(0), N_RESTARTS)
        state = init(Xj, None, keys, jnp.asarray(3, jnp.int32), r_pad=4, n_trace=201)
        q = jax.tree.map(lambda v: v[0], state.q)
        factors = jnp.array([0.9, 0.99, 0.999, 1.0, 1.001, 1.01, 1.1])
        elbo = np.asarray(jax.jit(jax.vmap(scaled, in_axes=(None, 0)))(q, factors))
    assert np.argmax(elbo) == 3
    assert elbo[3] >= float(state.elbo[0])


@pytest.mark.parametrize("case", ["full", "masked", "tail"])
def test_elbo_matches_monte_carlo_estimate(data, fits, case):
    r"""E_q[log p(X, W, H, noise_var) - log q] with NumPyro's log density.

    The program samples noise_var = 1 / tau under an inverse-gamma prior, and
    q(tau) is a gamma distribution. The ELBO does not depend on the
    parametrisation as long as q and the prior are transformed together: with
    v = 1 / tau, log q_v(v) = log q_tau(1 / v) + log|d tau / d v|
    = log Gamma(1 / v; alpha*, beta*) + 2 log tau, and NumPyro's
    InverseGamma density carries the same Jacobian, so the two cancel in
    log p - log q. The "tail" case fixes the noise (no noise_var site) and has
    entries of q beyond the switch to the asymptotic moments (a > 10).
    """
    X = _tail_data() if case == "tail" else data[2]
    M = _mask() if case == "masked" else None
    res = fits[case]
    model, e = res.model, res.extra
    W, H = res.draws["W"][0], res.draws["H"][0]
    if case == "tail":
        a = -e["q_W_mu"] * np.sqrt(e["q_W_tau"])
        assert (a > vg._TAIL).sum() >= 2

    with jax.enable_x64(True):
        def log_joint(W, H, *noise_var):
            values = {"W": W, "H": H, **{"noise_var": v for v in noise_var}}
            mask = None if M is None else jnp.asarray(M)
            return log_density(model, (jnp.asarray(X),), {"mask": mask}, values)[0]

        params = [res.draws["noise_var"][0]] if "noise_var" in res.draws else []
        log_p = np.asarray(jax.jit(jax.vmap(log_joint))(W, H, *params))

    def log_tn(x, mu, tau):
        s = 1.0 / np.sqrt(tau)
        return stats.truncnorm.logpdf(x, -mu / s, np.inf, loc=mu, scale=s)

    log_q = (
        log_tn(W, e["q_W_mu"], e["q_W_tau"]).sum(axis=(1, 2))
        + log_tn(H, e["q_H_mu"], e["q_H_tau"]).sum(axis=(1, 2))
    )
    if params:
        tau = 1.0 / params[0]
        log_q += stats.gamma.logpdf(tau, e["q_tau_shape"], scale=1.0 / e["q_tau_rate"])
        log_q += 2.0 * np.log(tau)
    estimate = log_p - log_q
    se = estimate.std(ddof=1) / np.sqrt(estimate.size)
    assert abs(estimate.mean() - e["elbo"]) < 4 * se, (estimate.mean(), e["elbo"], se)
    assert se < 0.5  # the check has teeth: ~3e-4 of |ELBO|


# -- what the fit recovers ------------------------------------------------------


def test_elbo_selects_the_planted_rank_and_recovers_W(data):
    W_true, _, X = data
    elbo, fits = {}, {}
    for rank in range(1, 6):
        fits[rank] = _fit(X, _model(rank), seed=1)
        elbo[rank] = -fits[rank].objective
    ranks = sorted(elbo)
    assert max(elbo, key=elbo.get) == 3, elbo
    # Rising to the truth, falling after it (each extra component costs).
    assert all(np.diff([elbo[k] for k in ranks[:3]]) > 0)
    assert all(np.diff([elbo[k] for k in ranks[2:]]) < 0)
    cos, _ = _match_cosine(W_true, fits[3].W_raw)
    assert cos.min() > 0.95, cos


def test_posterior_means_close_to_map(rng):
    """Small noise, sparse identifiable factors: q's means sit at the MAP.

    Only the scale-free parts are compared: along the ridge (cW, H/c) the
    posterior mean and the mode are balanced by different terms (the entropy
    adds (m - n) log c).
    """
    W, H = planted(rng, *SHAPE, 3, scale=5.0)
    X = np.maximum(W @ H + rng.normal(0.0, FIXED_NOISE, SHAPE), 0.0)
    model = _model(noise="fixed")
    vi = _fit(X, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bn.ConvergenceWarning)
        mp = bn.fit_map(X, model, n_restarts=N_RESTARTS, max_iter=20000, tol=1e-10)
    assert vi.converged
    _, perm = _match_cosine(mp.W, vi.W)
    # Differences of the order of the posterior spread (sigma = 0.05).
    assert_allclose(vi.W[:, perm], mp.W, atol=2e-3 * mp.W.max())
    assert_allclose(vi.H[perm], mp.H, atol=2e-3 * mp.H.max())
    assert_allclose(vi.reconstruction(), mp.reconstruction(), atol=1e-3 * X.max())
    assert "noise_var" not in vi.params and "q_tau_shape" not in vi.extra
    assert "noise_var" not in vi.draws


# -- the result -------------------------------------------------------------------


def test_result_contents(fits):
    res = fits["full"]
    m, n = SHAPE
    assert res.method == "vi" and res.objective_name == "negative ELBO"
    assert res.settings["engine"] == "cavi-gaussian-tn" and res.converged
    assert res.objective == -res.extra["elbo"] == res.restarts["objective"].min()
    assert res.best_restart == int(np.argmin(res.restarts["objective"]))
    assert res.draws["W"].shape == (1, 2000, m, 3)
    assert res.draws["H"].shape == (1, 2000, 3, n)
    assert res.draws["noise_var"].shape == (1, 2000)
    # E_q[1 / tau] = beta* / (alpha* - 1), and the draws agree with it.
    a, b = res.extra["q_tau_shape"], res.extra["q_tau_rate"]
    assert_allclose(res.params["noise_var"], b / (a - 1.0), rtol=1e-12)
    assert_allclose(a, 2.0 + m * n / 2, rtol=1e-12)
    assert_allclose(res.draws["noise_var"].mean(), res.params["noise_var"], rtol=0.02)
    # W_raw, H_raw are the means of q, which the draws reproduce.
    mean_W, _, _ = _moments(res.extra["q_W_mu"], res.extra["q_W_tau"])
    assert_allclose(res.W_raw, mean_W, rtol=1e-12)
    assert_allclose(res.draws["W"][0].mean(0), res.W_raw, rtol=0.1, atol=0.02)
    assert res.trace[0] > res.trace[-1] and res.trace_iter[-1] == res.n_iter


def test_nan_entries_are_a_mask(data):
    X, M = data[2], _mask()
    X_nan = np.where(M > 0, X, np.nan)
    with pytest.warns(UserWarning, match="NaN entries are treated as missing"):
        a = _fit(X_nan, _model(), allow_nan=True)
    b = _fit(X, _model(), mask=M)
    assert_array_equal(a.W_raw, b.W_raw)
    assert a.objective == b.objective


def test_reproducible_by_seed(data):
    X = data[2]
    a = _fit(X, _model(), seed=5, num_draws=2000)
    b = _fit(X, _model(), seed=5, num_draws=2000)
    c = _fit(X, _model(), seed=6, num_draws=2000)
    for key in ("W_raw", "H_raw", "objective", "trace"):
        assert_array_equal(a.restarts[key], b.restarts[key])
    for key in a.draws:
        assert_array_equal(a.draws[key], b.draws[key])
    assert not np.allclose(a.restarts["W_raw"], c.restarts["W_raw"])
    assert not np.allclose(a.draws["W"], c.draws["W"])
    # Restarts differ, and restart i's key does not depend on how many run.
    assert not np.allclose(a.restarts["W_raw"][0], a.restarts["W_raw"][1])
    with jax.enable_x64(True):
        k2 = jax.random.key_data(vg._restart_keys(jax.random.key(5), 2))
        k4 = jax.random.key_data(vg._restart_keys(jax.random.key(5), 4))
    assert_array_equal(k2, k4[:2])


def test_save_load_round_trip(fits, tmp_path):
    res = fits["masked"]
    back = bn.NMFResult.load(res.save(tmp_path / "vi.npz"))
    assert back.method == "vi" and back.model == res.model
    assert back.objective == res.objective and back.params == res.params
    assert back.settings == res.settings
    for name in ("W_raw", "H_raw", "trace", "trace_iter"):
        assert_array_equal(getattr(back, name), getattr(res, name))
    for group in ("restarts", "draws", "extra"):
        mine, theirs = getattr(res, group), getattr(back, group)
        assert sorted(mine) == sorted(theirs)
        for key in mine:
            assert_array_equal(theirs[key], mine[key])


def test_compiles_once_per_shape(data):
    """New seeds, data and ranks of one padding bucket reuse the kernels."""
    X = data[2]
    model = _model()
    init, run = vg._kernels(vg._spec(model))
    _fit(X, model, seed=0)
    before = init._cache_size(), run._cache_size()
    for seed, rank in [(1, 2), (2, 4), (3, 1)]:
        _fit(X + seed, _model(rank), seed=seed)
    assert (init._cache_size(), run._cache_size()) == before


def test_convergence_flag_and_warning(data):
    with pytest.warns(bn.ConvergenceWarning, match="max_iter=2000"):
        res = _fit(data[2], _model(), tol=0.0)
    assert not res.converged and res.n_iter == 2000


@pytest.mark.parametrize(
    "model, error, match",
    [
        (bn.NMFModel(2, bn.Poisson(), bn.Exponential(), bn.Exponential()),
         NotImplementedError, "poisson"),
        (bn.NMFModel(2, bn.Gaussian(1.0), bn.HalfNormal(1.0), bn.Exponential()),
         NotImplementedError, "halfnormal"),
        (bn.NMFModel(2, bn.Gaussian(1.0), bn.Exponential(), bn.Flat()),
         NotImplementedError, "flat"),
        (bn.NMFModel(2, bn.Gaussian(None), bn.Exponential(), bn.Exponential()),
         ValueError, "noise_var_shape"),
        (2, TypeError, "NMFModel"),
    ],
    ids=["poisson", "halfnormal", "flat", "improper-noise", "int"],
)
def test_unsupported_models_fail_before_tracing(model, error, match):
    X = np.ones((4, 3))
    with pytest.raises(error, match=match):
        fit_vi_gaussian(X, model)


def test_bad_settings(data):
    X = data[2]
    with pytest.raises(ValueError, match="num_draws"):
        fit_vi_gaussian(X, _model(), num_draws=-1)
    with pytest.raises(TypeError, match="rescale"):
        fit_vi_gaussian(X, _model(), rescale="yes")
    with pytest.raises(ValueError, match="n_restarts"):
        fit_vi_gaussian(X, _model(), n_restarts=0)


def test_progress_bar_does_not_change_the_result(data, monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # CI switches the bar off
    kw = dict(max_iter=300, tol=1e-9, warn=False)
    a = _fit(data[2], _model(), **kw)
    b = _fit(data[2], _model(), progress=True, **kw)
    for k in ("W_raw", "objective", "n_iter", "trace"):
        np.testing.assert_array_equal(a.restarts[k], b.restarts[k])
