"""Benchmark the bayesnmf MAP engine against scikit-learn's multiplicative updates.

Run from the repository root::

    python benchmarks/bench_map.py            # full run, a few minutes on 2 cores
    python benchmarks/bench_map.py --quick    # smaller run, well under a minute
    python benchmarks/bench_map.py --out results.json   # or results.md

Two measurements, both against scikit-learn run in the same process, so the
ratios (scikit-learn time / bayesnmf time; > 1 means bayesnmf is faster) are
what carries over between machines, not the seconds:

1. Seconds per sweep of :func:`bayesnmf.fit_map` (``init="custom"``, ``tol=0``,
   fixed ``max_iter``, float64, flat priors) versus
   :func:`sklearn.decomposition.non_negative_factorization` (``solver="mu"``,
   ``tol=0``, same starting factors, same number of iterations) on synthetic
   data, for the Frobenius (``Gaussian(1.0)``) and KL (``Poisson()``) losses.
   JAX compilation is excluded (one warm-up call with the same shapes and
   ``max_iter`` first); the median over repeats is reported.
2. 50 restarts of a rank-5 Poisson fit to the 96 x 21 breast catalog, batched
   in one ``fit_map`` call, versus 50 scikit-learn KL fits one after another.

See ``benchmarks/README.md`` for how to read the output.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

# Run as a script from anywhere: make the repository root importable. It goes
# last, so that PYTHONPATH can point at another copy of bayesnmf to compare.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

import numpy as np  # noqa: E402

#: Environment variables that change BLAS or XLA behaviour; reported, never set.
_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
)

_SK_LOSS = {"frobenius": "frobenius", "kl": "kullback-leibler"}

#: Targets on the sklearn / bayesnmf ratio: (section, size label, loss) -> ratio.
TARGETS = {
    ("sweep", "2000x1000", "frobenius"): 1.0,
    ("sweep", "2000x1000", "kl"): 1.5,
    ("restarts", "96x21", "kl"): 5.0,
}


# -- environment --------------------------------------------------------------


def _package_of(path: str) -> str:
    """Which wheel bundled a shared library (``numpy.libs/...`` -> ``numpy``)."""
    parts = Path(path).parts
    for part in reversed(parts):
        if part.endswith(".libs"):
            return part[: -len(".libs")].replace("scikit_learn", "sklearn")
    return parts[-2] if len(parts) > 1 else path


def environment() -> dict:
    import jax
    import numpyro
    import scipy
    import sklearn
    import threadpoolctl

    import bayesnmf

    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except Exception:  # pragma: no cover - jaxlib always ships with jax
        jaxlib_version = "?"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        affinity = None

    pools = []
    for info in threadpoolctl.threadpool_info():
        pools.append({
            "package": _package_of(info.get("filepath", "")),
            "user_api": info.get("user_api"),
            "internal_api": info.get("internal_api"),
            "version": info.get("version"),
            "num_threads": info.get("num_threads"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "filepath": info.get("filepath"),
        })
    # scikit-learn's MU solver does its dense products with NumPy's ``@``
    # (``safe_sparse_dot``), so the BLAS that matters is the one NumPy loads.
    sk_blas = next(
        (p for p in pools if p["user_api"] == "blas" and p["package"] == "numpy"),
        next((p for p in pools if p["user_api"] == "blas"), None),
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "versions": {
            "bayesnmf": f"{bayesnmf.__version__} ({Path(bayesnmf.__file__).parent})",
            "jax": jax.__version__,
            "jaxlib": jaxlib_version,
            "numpyro": numpyro.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "threadpoolctl": threadpoolctl.__version__,
        },
        "jax_devices": [str(d) for d in jax.devices()],
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
        "threadpools": pools,
        "sklearn_blas": (
            None if sk_blas is None else
            f"{sk_blas['internal_api']} {sk_blas['version']} "
            f"({sk_blas['package']}, {sk_blas['architecture']}, "
            f"{sk_blas['num_threads']} threads)"
        ),
    }


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not available
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# -- helpers ------------------------------------------------------------------


def _timed(fn, cpu_log=None):
    """Wall seconds of ``fn()``; its process CPU seconds go to ``cpu_log``."""
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    t = time.perf_counter() - t0
    if cpu_log is not None:
        cpu_log.append(time.process_time() - c0)
    return t, out


def _kl(X, WH):
    """Generalised KL divergence sum x log(x / wh) - x + wh (0 log 0 = 0)."""
    WH = np.maximum(WH, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(X > 0, X * np.log(X / WH), 0.0)
    return float(np.sum(t - X + WH))


def synthetic(m, n, rank, seed):
    """Poisson counts from gamma factors, and random starting factors.

    The starting factors follow scikit-learn's ``init="random"`` scale,
    ``sqrt(mean(X) / rank) * |N(0, 1)|``, floored away from 0.
    """
    rng = np.random.default_rng(seed)
    W = rng.gamma(1.0, 1.0, (m, rank))
    H = rng.gamma(1.0, 1.0, (rank, n))
    X = rng.poisson(2.0 * W @ H).astype(np.float64)
    scale = np.sqrt(X.mean() / rank)
    W0 = scale * np.maximum(np.abs(rng.standard_normal((m, rank))), 1e-3)
    H0 = scale * np.maximum(np.abs(rng.standard_normal((rank, n))), 1e-3)
    return X, W0, H0


# -- 1: seconds per sweep -----------------------------------------------------


def bench_sweep(m, n, rank, loss, n_iter, repeats, seed=0, log=print):
    import bayesnmf as bn
    from sklearn.decomposition import non_negative_factorization

    X, W0, H0 = synthetic(m, n, rank, seed)
    lik = bn.Gaussian(1.0) if loss == "frobenius" else bn.Poisson()
    model = bn.NMFModel(rank, lik)

    def run_bn():
        return bn.fit_map(X, model, init="custom", W_init=W0, H_init=H0,
                          max_iter=n_iter, tol=0, dtype="float64", warn=False)

    def run_sk():
        # sklearn's X is samples x features: X.T = H.T W.T.
        return non_negative_factorization(
            X.T, W=H0.T.copy(), H=W0.T.copy(), n_components=rank, init="custom",
            solver="mu", beta_loss=_SK_LOSS[loss], max_iter=n_iter, tol=0,
        )

    t_first, _ = _timed(run_bn)  # compiles the kernel for these shapes
    t_bn, t_sk, c_bn, c_sk = [], [], [], []
    for _ in range(repeats):  # interleaved, so that drift hits both alike
        t, res = _timed(run_bn, c_bn)
        t_bn.append(t)
        t, (W_sk, H_sk, n_sk) = _timed(run_sk, c_sk)
        t_sk.append(t)
    assert res.n_iter == n_iter and n_sk == n_iter, (res.n_iter, n_sk)
    # Same algorithm from the same start: the reconstructions should agree.
    diff = float(np.max(np.abs(res.W_raw @ res.H_raw - H_sk.T @ W_sk.T)) / X.max())
    bn_it = statistics.median(t_bn) / n_iter
    sk_it = statistics.median(t_sk) / n_iter
    size = f"{m}x{n}"
    row = {
        "section": "sweep", "size": size, "rank": rank, "loss": loss,
        "n_iter": n_iter, "repeats": repeats,
        "bn_first_call_s": t_first,
        "bn_s_per_iter": bn_it, "sk_s_per_iter": sk_it,
        "bn_times_s": t_bn, "sk_times_s": t_sk,
        "bn_cpu_s": c_bn, "sk_cpu_s": c_sk,
        "ratio": sk_it / bn_it,
        "ratio_cpu": statistics.median(c_sk) / statistics.median(c_bn),
        "ratio_best": min(t_sk) / min(t_bn),
        "max_rel_diff_WH": diff,
        "target": TARGETS.get(("sweep", size, loss)),
    }
    log(f"  {size} r={rank} {loss:9s} {n_iter:4d} it: bayesnmf "
        f"{bn_it * 1e3:8.3f} ms/it, sklearn {sk_it * 1e3:8.3f} ms/it, "
        f"ratio {row['ratio']:5.2f}x (first call {t_first:.2f} s)")
    return row


# -- 2: batched restarts ------------------------------------------------------


def bench_restarts(n_restarts, rank, n_iter, repeats, log=print, dtype="float64"):
    import bayesnmf as bn
    from bayesnmf.datasets import load_breast21
    from sklearn.decomposition import non_negative_factorization

    # Both libraries work in ``dtype``: scikit-learn keeps float32 input in
    # float32, bayesnmf runs its kernel in the dtype it is given.
    X = load_breast21().X.astype(dtype)
    model = bn.NMFModel(rank, bn.Poisson())

    def run_bn():
        return bn.fit_map(X, model, n_restarts=n_restarts, init="random", seed=0,
                          max_iter=n_iter, tol=0, dtype=dtype, warn=False)

    def run_sk():
        best = np.inf
        for i in range(n_restarts):
            W, H, k = non_negative_factorization(
                X.T, n_components=rank, init="random", random_state=i,
                solver="mu", beta_loss="kullback-leibler", max_iter=n_iter, tol=0,
            )
            assert k == n_iter
            best = min(best, _kl(X, (W @ H).T))
        return best

    t_cold, _ = _timed(run_bn)  # includes compilation
    t_bn, t_sk, c_bn, c_sk = [], [], [], []
    for _ in range(repeats):
        t, res = _timed(run_bn, c_bn)
        t_bn.append(t)
        t, kl_sk = _timed(run_sk, c_sk)
        t_sk.append(t)
    assert np.all(res.restarts["n_iter"] == n_iter)
    kl_bn = _kl(X, res.W_raw @ res.H_raw)
    bn_s, sk_s = statistics.median(t_bn), statistics.median(t_sk)
    size = f"{X.shape[0]}x{X.shape[1]}"
    row = {
        "section": "restarts", "size": size, "rank": rank, "loss": "kl",
        "dtype": dtype,
        "n_restarts": n_restarts, "n_iter": n_iter, "repeats": repeats,
        "bn_cold_s": t_cold, "bn_warm_s": bn_s, "sk_s": sk_s,
        "bn_times_s": t_bn, "sk_times_s": t_sk,
        "bn_cpu_s": c_bn, "sk_cpu_s": c_sk,
        "ratio": sk_s / bn_s, "ratio_best": min(t_sk) / min(t_bn),
        "ratio_cpu": statistics.median(c_sk) / statistics.median(c_bn),
        "ratio_cold": sk_s / t_cold,
        "best_kl_bn": kl_bn, "best_kl_sk": kl_sk,
        "target": TARGETS.get(("restarts", size, "kl")),
    }
    log(f"  {n_restarts} restarts x {n_iter} it, {size} r={rank} {dtype}: bayesnmf "
        f"{bn_s:.3f} s warm ({t_cold:.3f} s cold), sklearn {sk_s:.3f} s, "
        f"ratio {row['ratio']:.2f}x warm, {row['ratio_cold']:.2f}x cold")
    return row


# -- report -------------------------------------------------------------------


def _met(row, key="ratio"):
    if row.get("target") is None:
        return ""
    return "yes" if row[key] >= row["target"] else "**no**"


def markdown(env, rows, settings) -> str:
    out = ["# bayesnmf MAP benchmark", ""]
    v = env["versions"]
    out += [
        f"- Python {env['python']}, {env['platform']}",
        f"- CPU: {env['processor']}; os.cpu_count() = {env['cpu_count']}, "
        f"usable (affinity) = {env['cpu_affinity']}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- JAX devices: {', '.join(env['jax_devices'])}",
        f"- BLAS used by scikit-learn (NumPy matmul): {env['sklearn_blas']}",
        "- Environment: " + (", ".join(f"{k}={val}" for k, val in env["env"].items())
                             or "(none of the BLAS/XLA variables set)"),
        f"- Settings: {settings}",
        f"- Load average (1, 5, 15 min) before / after: {env.get('loadavg_before')} / "
        f"{env.get('loadavg_after')}",
        "- Ratios are sklearn time / bayesnmf time (> 1: bayesnmf faster), from "
        "medians; best-of ratios use the fastest repeat of each; CPU-time ratios "
        "use process CPU seconds (all threads, spinning included).",
        "",
        "Thread pools (threadpoolctl):",
        "",
        "| package | api | library | version | threads | architecture |",
        "|---|---|---|---|---|---|",
    ]
    for p in env["threadpools"]:
        out.append(f"| {p['package']} | {p['user_api']} | {p['internal_api']} | "
                   f"{p['version']} | {p['num_threads']} | {p['architecture'] or ''} |")

    sweeps = [r for r in rows if r["section"] == "sweep"]
    if sweeps:
        out += [
            "",
            "## 1. Seconds per sweep (float64, same start, tol=0; median of repeats)",
            "",
            "| size | rank | loss | iters | bayesnmf ms/it | sklearn ms/it | "
            "sklearn/bayesnmf | best-of ratio | CPU-time ratio | target | met | "
            "first call s | max rel diff WH |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sweeps:
            target = "" if r["target"] is None else f">= {r['target']:g}x"
            out.append(
                f"| {r['size']} | {r['rank']} | {r['loss']} | {r['n_iter']} | "
                f"{r['bn_s_per_iter'] * 1e3:.3f} | {r['sk_s_per_iter'] * 1e3:.3f} | "
                f"{r['ratio']:.2f}x | {r['ratio_best']:.2f}x | {r['ratio_cpu']:.2f}x | "
                f"{target} | {_met(r)} | "
                f"{r['bn_first_call_s']:.2f} | {r['max_rel_diff_WH']:.1e} |"
            )
    restarts = [r for r in rows if r["section"] == "restarts"]
    if restarts:
        out += [
            "",
            "## 2. Batched restarts (breast21, Poisson/KL, flat priors, tol=0)",
            "",
            "| data | rank | restarts x iters | bayesnmf batched s | sklearn loop s "
            "| sklearn/bayesnmf | best-of ratio | CPU-time ratio | target | met "
            "| best KL bayesnmf | best KL sklearn |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in restarts:
            target = "" if r["target"] is None else f">= {r['target']:g}x"
            out.append(
                f"| {r['size']} | {r['rank']} | {r['n_restarts']} x {r['n_iter']} | "
                f"{r['bn_warm_s']:.3f} (warm) | {r['sk_s']:.3f} | {r['ratio']:.2f}x | "
                f"{r['ratio_best']:.2f}x | {r['ratio_cpu']:.2f}x | {target} | {_met(r)} | "
                f"{r['best_kl_bn']:.2f} | {r['best_kl_sk']:.2f} |"
            )
            out.append(
                f"| {r['size']} | {r['rank']} | {r['n_restarts']} x {r['n_iter']} | "
                f"{r['bn_cold_s']:.3f} (first call, with compilation) | "
                f"{r['sk_s']:.3f} | {r['ratio_cold']:.2f}x | | | | | | |"
            )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark bayesnmf.fit_map against scikit-learn's MU solver."
    )
    parser.add_argument("--quick", action="store_true",
                        help="fewer iterations and repeats (under a minute)")
    parser.add_argument("--out", metavar="FILE",
                        help="write the results: .json for JSON, anything else "
                             "for a markdown table")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per case (default 5, --quick 3)")
    parser.add_argument("--iters-small", type=int, default=None,
                        help="sweeps at 500x200 (default 500, --quick 100)")
    parser.add_argument("--iters-large", type=int, default=None,
                        help="sweeps at 2000x1000 (default 50, --quick 20)")
    parser.add_argument("--restarts", type=int, default=50,
                        help="restarts of the breast21 fit (default 50)")
    parser.add_argument("--restart-iters", type=int, default=None,
                        help="sweeps per restart (default 500, --quick 200)")
    parser.add_argument("--single-thread", action="store_true",
                        help="run both libraries on one thread (XLA flags and "
                             "threadpoolctl): a steadier comparison of the work "
                             "done on a busy machine")
    parser.add_argument("--only", choices=("sweep", "restarts"),
                        help="run one part only")
    args = parser.parse_args(argv)

    quick = args.quick
    repeats = args.repeats or (3 if quick else 5)
    it_small = args.iters_small or (100 if quick else 500)
    it_large = args.iters_large or (20 if quick else 50)
    it_restart = args.restart_iters or (200 if quick else 500)
    settings = (f"repeats={repeats}, iters 500x200={it_small}, "
                f"iters 2000x1000={it_large}, restarts={args.restarts} x "
                f"{it_restart} iters{', quick' if quick else ''}")

    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
    blas_limit = None
    if args.single_thread:
        if "jax" in sys.modules:
            parser.error("--single-thread: JAX was imported before the flags were set")
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
            " intra_op_parallelism_threads=1"
        ).strip()
        from threadpoolctl import threadpool_limits

        blas_limit = threadpool_limits(limits=1)  # noqa: F841 - kept alive
        settings += ", single-thread"
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # start the JAX backend outside any timing
    env = environment()
    print(f"bayesnmf MAP benchmark ({settings})")
    print(f"  CPUs: {env['cpu_count']} (affinity {env['cpu_affinity']}), "
          f"{env['processor']}")
    print("  " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    print(f"  sklearn BLAS: {env['sklearn_blas']}")
    print(f"  env: {env['env'] or '{}'}")
    load0 = _loadavg()
    print(f"  load average (1, 5, 15 min) before: {load0}")
    if load0 and env["cpu_affinity"] and load0[0] > 0.5 * env["cpu_affinity"]:
        print("  WARNING: the machine is busy; timings will be noisy. Compare the "
              "ratios, prefer the best-of ratios, or use --single-thread.")

    rows = []
    t0 = time.perf_counter()
    # Restarts first: their first call then measures a cold compile with the
    # JAX backend already started, before any other kernel is cached.
    if args.only in (None, "restarts"):
        print("2. batched restarts")
        for dtype in ("float64", "float32"):
            rows.append(bench_restarts(args.restarts, 5, it_restart, repeats,
                                       dtype=dtype))
    if args.only in (None, "sweep"):
        print("1. seconds per sweep")
        for m, n, rank, n_iter in ((500, 200, 5, it_small), (2000, 1000, 20, it_large)):
            for loss in ("frobenius", "kl"):
                rows.append(bench_sweep(m, n, rank, loss, n_iter, repeats))
    rows.sort(key=lambda r: r["section"] != "sweep")  # report sweeps first
    total = time.perf_counter() - t0
    env["loadavg_before"], env["loadavg_after"] = load0, _loadavg()

    md = markdown(env, rows, settings)
    print()
    print(md)
    print(f"(benchmark wall time {total:.1f} s)")
    missed = [r for r in rows if r.get("target") is not None and r["ratio"] < r["target"]]
    for r in missed:
        print(f"TARGET MISSED: {r['section']} {r['size']} {r['loss']}: "
              f"{r['ratio']:.2f}x < {r['target']:g}x")
    if args.out:
        path = Path(args.out)
        if path.suffix == ".json":
            payload = {"environment": env, "settings": settings,
                       "wall_time_s": total, "results": rows}
            path.write_text(json.dumps(payload, indent=2) + "\n")
        else:
            path.write_text(md)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
