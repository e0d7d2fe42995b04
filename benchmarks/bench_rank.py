"""Benchmark and check the rank-selection layer (bayesnmf.selection).

Run from the repository root::

    python benchmarks/bench_rank.py                 # everything, a few minutes
    python benchmarks/bench_rank.py --quick         # smaller run
    python benchmarks/bench_rank.py --only golub --golub-tol 1e-4
    python benchmarks/bench_rank.py --out rank.md   # also write the tables (or .json)

Sections:

1. ``sweep``: ranks 2-8 x 20 restarts of Poisson (KL) NMF on the 96 x 21 breast
   catalog, the restarts batched in one compiled call per rank versus the same
   restarts one by one in a Python loop (``fit_map(..., init="custom")`` with the
   same starting factors, float32). Two stopping rules: ``tol=1e-5`` (what a
   survey runs; the batched loop runs until its slowest restart stops) and
   ``tol=0`` with a fixed number of sweeps (identical work on both sides).
2. ``golub``: the survey of Brunet et al. on the Golub ALL/AML data, ranks 2-5
   x 50 restarts, checked against the R package NMF (cophenetic correlation,
   ALL/AML and ALL-B/ALL-T/AML recovered) and timed against R's CPU time.
3. ``planted``: synthetic Poisson catalogs (96 x 60, four COSMIC v3.4
   signatures), the recommended rank over five seeds, and the same seed giving
   the same table.
4. ``ard``: ARD NMF started at rank 8 on the same catalogs: effective rank and
   relevances.

Checks print ``PASS``/``FAIL`` lines; the exit status is 1 if any check fails.
See ``benchmarks/README.md`` for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# Run as a script from anywhere: make the repository root importable (last, so
# that PYTHONPATH can point at another copy of bayesnmf).
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

R_MEASURES = (_ROOT / "tests" / "data" / "reference_R_NMF"
              / "nmfR_brunet_nrun50_seed123456_measures_rank2to5.csv")
GOLUB_TARGET_S = 30.0
SIGNATURES = ["SBS1", "SBS2", "SBS5", "SBS13"]
PLANTED_RANK = 4

CHECKS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str) -> None:
    CHECKS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")


def header() -> dict:
    import jax

    import bayesnmf

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        affinity = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "bayesnmf": bayesnmf.__version__,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "loadavg_start": _loadavg(),
    }
    for k, v in info.items():
        print(f"# {k}: {v}")
    return info


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or ""] + cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)
                 for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def planted_catalog(seed: int, n_samples: int = 60) -> np.ndarray:
    from bayesnmf.datasets import load_cosmic

    rng = np.random.default_rng(seed)
    S = load_cosmic("3.4")[SIGNATURES].to_numpy()
    totals = rng.lognormal(np.log(3000.0), 0.5, size=n_samples)
    P = rng.dirichlet(np.full(len(SIGNATURES), 0.5), size=n_samples).T
    return rng.poisson(S @ (P * totals)).astype(float)


# -- 1. batched versus looped restarts -----------------------------------------


def bench_sweep(args) -> dict:
    import bayesnmf as bn
    from bayesnmf.datasets import load_breast21
    from bayesnmf.selection._restarts import random_starts

    X = load_breast21().X
    data = bn.as_nmf_data(X)
    ranks = range(2, 9)
    T = args.sweep_restarts
    settings = {"tol=1e-5": {"tol": 1e-5, "max_iter": 2000},
                f"tol=0, {args.sweep_iters} sweeps": {"tol": 0.0,
                                                      "max_iter": args.sweep_iters}}
    rows = []
    for label, stop in settings.items():
        kw = {"init": "custom", "dtype": "float32", "warn": False, **stop}
        cold = {"batched": 0.0, "loop": 0.0}
        warm = {"batched": 0.0, "loop": 0.0}
        worst = 0.0
        for r in ranks:
            model = bn.NMFModel(r)
            W0, H0 = random_starts(data, r, T, seed=r)

            def batched():
                return bn.fit_map(X, model, W_init=W0, H_init=H0, **kw)

            def loop():
                return [bn.fit_map(X, model, W_init=W0[i], H_init=H0[i], **kw)
                        for i in range(T)]

            for name, fn in (("batched", batched), ("loop", loop)):
                t0 = time.perf_counter()
                fn()  # first call: includes compilation
                cold[name] += time.perf_counter() - t0
            t0 = time.perf_counter()
            b = batched()
            warm["batched"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            lp = loop()
            warm["loop"] += time.perf_counter() - t0
            obj_loop = np.array([f.objective for f in lp])
            rel = np.abs(b.restarts["objective"] - obj_loop) / np.abs(obj_loop)
            worst = max(worst, float(rel.max()))
        rows.append({
            "stopping": label,
            "batched s": warm["batched"], "loop s": warm["loop"],
            "loop / batched": warm["loop"] / warm["batched"],
            "batched first-call s": cold["batched"], "loop first-call s": cold["loop"],
            "max rel diff objective": worst,
        })
    table = pd.DataFrame(rows).set_index("stopping")
    print(f"\n## Sweep: breast21 (96 x 21), ranks 2-8 x {T} restarts, KL, float32\n")
    print(markdown(table))
    return {"table": table}


# -- 2. Golub versus the R package NMF -----------------------------------------


def misplaced(C, labels, k: int) -> int:
    from scipy.optimize import linear_sum_assignment

    from bayesnmf.selection import consensus_clusters

    clusters = consensus_clusters(C, k)
    tab = pd.crosstab(clusters, np.asarray(labels)).to_numpy()
    rows, cols = linear_sum_assignment(-tab)
    return int(tab.sum() - tab[rows, cols].sum())


def bench_golub(args) -> dict:
    from bayesnmf.datasets import load_golub
    from bayesnmf.selection import rank_survey

    golub = load_golub()
    ref = pd.read_csv(R_MEASURES, index_col="rank")
    r_cpu = float(ref["cpu.all"].sum())
    out = {}
    runs = [("auto batches", None)]
    if args.compare_batch:
        runs.append(("one call per rank", args.golub_restarts))
    for label, batch in runs:
        c0, t0 = time.process_time(), time.perf_counter()
        s = rank_survey(golub.X, [2, 3, 4, 5], n_restarts=args.golub_restarts,
                        seed=0, criteria=("stability",), tol=args.golub_tol,
                        restart_batch=batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t = s.table
        table = pd.DataFrame({
            "cophenetic": t["cophenetic"], "R cophenetic": ref["cophenetic"],
            "dispersion": t["dispersion"], "R dispersion": ref["dispersion"],
            "silhouette_min": t["silhouette_min"],
            "mean sweeps": [float(np.mean(s.fits[r].restarts["n_iter"]))
                            for r in t.index],
            "R cpu.all s": ref["cpu.all"],
        })
        table.index.name = "rank"
        miss2 = misplaced(s.consensus[2], golub.sample_info["ALL_AML"], 2)
        miss3 = misplaced(s.consensus[3], golub.sample_info["class3"], 3)
        print(f"\n## Golub (5000 x 38), ranks 2-5 x {args.golub_restarts} restarts, "
              f"KL, tol={args.golub_tol:g}, {label}\n")
        print(markdown(table))
        print(f"\nwall {wall:.1f} s (process CPU {cpu:.1f} s; includes compilation) "
              f"vs R NMF cpu.all {r_cpu:.0f} s: R / bayesnmf = {r_cpu / wall:.1f}x; "
              f"recommended rank {s.recommended_rank}")
        print(f"misplaced samples: rank 2 (ALL/AML) {miss2}, rank 3 "
              f"(ALL-B/ALL-T/AML) {miss3}")
        out[label] = {"table": table, "wall_s": wall, "cpu_s": cpu,
                      "misplaced": (miss2, miss3)}
        if label == "auto batches":
            coph = t["cophenetic"]
            check("golub cophenetic", coph[2] >= 0.99 and coph[3] >= 0.98,
                  f"rank 2 {coph[2]:.4f} (>= 0.99), rank 3 {coph[3]:.4f} (>= 0.98)")
            check("golub cophenetic falls 3 -> 5", coph[3] > max(coph[4], coph[5]),
                  f"{coph[3]:.4f} > {coph[4]:.4f}, {coph[5]:.4f}")
            check("golub classes", miss2 <= 2 and miss3 <= 2,
                  f"misplaced {miss2} (rank 2), {miss3} (rank 3); at most 2 each")
            check("golub time", wall < GOLUB_TARGET_S,
                  f"{wall:.1f} s (target < {GOLUB_TARGET_S:.0f} s on 2 cores)")
    out["r_cpu_s"] = r_cpu
    return out


# -- 3. planted catalogs --------------------------------------------------------


def bench_planted(args) -> dict:
    from bayesnmf.selection import rank_survey

    rows, tables = [], {}
    for seed in range(args.seeds):
        X = planted_catalog(seed)
        t0 = time.perf_counter()
        s = rank_survey(X, range(2, 8), n_restarts=20, seed=seed,
                        criteria=("stability", "heldout"), heldout_restarts=3)
        wall = time.perf_counter() - t0
        tables[seed] = s.table
        rows.append({"seed": seed, "recommended": s.recommended_rank,
                     "heldout argmax": int(s.table["heldout_lpd"].idxmax()),
                     "silhouette_min at 4": s.table.loc[4, "silhouette_min"],
                     "wall s": wall})
    table = pd.DataFrame(rows).set_index("seed")
    hits = int((table["recommended"] == PLANTED_RANK).sum())
    print("\n## Planted catalogs (96 x 60, SBS1/2/5/13), ranks 2-7 x 20 restarts\n")
    print(markdown(table))
    again = rank_survey(planted_catalog(0), range(2, 8), n_restarts=20, seed=0,
                        criteria=("stability", "heldout"), heldout_restarts=3).table
    same = again.equals(tables[0])
    check("planted rank", hits >= min(4, args.seeds),
          f"rank {PLANTED_RANK} recommended for {hits} of {args.seeds} seeds")
    check("same seed, same table", same, "seed 0 run twice")
    return {"table": table, "hits": hits}


# -- 4. ARD ---------------------------------------------------------------------


def bench_ard(args) -> dict:
    from bayesnmf.selection import fit_ard

    rows = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        ard = fit_ard(planted_catalog(seed), 8, n_restarts=10, seed=seed)
        wall = time.perf_counter() - t0
        rel = ard.relevance["relevance"].to_numpy()
        rows.append({"seed": seed, "effective rank": ard.effective_rank,
                     "relevances (sorted)": " ".join(f"{v:.3g}" for v in rel),
                     "wall s": wall})
    table = pd.DataFrame(rows).set_index("seed")
    print("\n## ARD NMF from rank 8 on the planted catalogs (exponential penalty)\n")
    print(markdown(table))
    hits = int((table["effective rank"] == PLANTED_RANK).sum())
    check("ard rank", hits == args.seeds,
          f"effective rank {PLANTED_RANK} for {hits} of {args.seeds} seeds")
    return {"table": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 Golub restarts, 3 seeds, 5 sweep restarts")
    parser.add_argument("--only", nargs="+",
                        choices=["sweep", "golub", "planted", "ard"])
    parser.add_argument("--golub-tol", type=float, default=1e-5)
    parser.add_argument("--golub-restarts", type=int, default=50)
    parser.add_argument("--compare-batch", action="store_true",
                        help="also run the Golub survey with all restarts of a "
                        "rank in one call (slow on a CPU)")
    parser.add_argument("--sweep-restarts", type=int, default=20)
    parser.add_argument("--sweep-iters", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the tables (.md or .json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.golub_restarts = min(args.golub_restarts, 20)
        args.seeds = min(args.seeds, 3)
        args.sweep_restarts = min(args.sweep_restarts, 5)

    warnings.simplefilter("ignore")  # fits here run with warn=False anyway
    env = header()
    sections = {"sweep": bench_sweep, "golub": bench_golub,
                "planted": bench_planted, "ard": bench_ard}
    results = {}
    for name, fn in sections.items():
        if args.only and name not in args.only:
            continue
        results[name] = fn(args)
    env["loadavg_end"] = _loadavg()
    print(f"\n# loadavg_end: {env['loadavg_end']}")
    failed = [c for c in CHECKS if not c[1]]
    print(f"\n{len(CHECKS) - len(failed)} of {len(CHECKS)} checks passed.")

    if args.out is not None:
        if args.out.suffix == ".json":
            def plain(obj):
                if isinstance(obj, pd.DataFrame):
                    return json.loads(obj.to_json(orient="index"))
                if isinstance(obj, dict):
                    return {str(k): plain(v) for k, v in obj.items()}
                if isinstance(obj, (tuple, list)):
                    return [plain(v) for v in obj]
                return obj

            payload = {"environment": env, "results": plain(results),
                       "checks": [{"name": n, "passed": ok, "detail": d}
                                  for n, ok, d in CHECKS]}
            args.out.write_text(json.dumps(payload, indent=2, default=float))
        else:
            parts = [f"# bench_rank\n\n{json.dumps(env)}\n"]
            for name, res in results.items():
                for key, value in res.items():
                    if isinstance(value, dict) and "table" in value:
                        value = value["table"]
                    if isinstance(value, pd.DataFrame):
                        parts.append(f"## {name}: {key}\n\n{markdown(value)}\n")
            parts.append("\n".join(f"- {'PASS' if ok else 'FAIL'} {n}: {d}"
                                   for n, ok, d in CHECKS))
            args.out.write_text("\n".join(parts) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
