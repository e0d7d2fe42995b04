"""Coverage of credible intervals on data drawn from the prior (METHODS.md §9.2).

For each simulation, W and H are drawn from the gamma priors of a small Poisson
NMF model, X from the likelihood, and the model is fitted by NUTS and by the
closed-form variational engine. For identified quantities (every entry of WH,
and the total intensity sum(WH)) we record whether the truth lies in the
central interval of the draws. A calibrated method covers at the nominal rate.

The total intensity is set almost entirely by sum(X) ~ Poisson(sum(WH)), so
every method's coverage of it shares the noise of the simulated sums. As a
yardstick on the same simulations, the row "reference" gives the coverage of
Gamma(sum(X) + 1, 1), the exact posterior of the total under a flat prior on
it and nearly calibrated here (0.498, 0.802, 0.900, 0.949 at the four masses
over 20,000 simulations): a method's total-intensity coverage should be read
against that row, not against the nominal masses alone.

    python benchmarks/calibration.py --sims 300 --out docs/calibration-results.md
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

import bayesnmf as bn

MASSES = (0.5, 0.8, 0.9, 0.95)


def markdown(table: pd.DataFrame) -> str:
    """The coverage table as GitHub markdown (index levels as the first columns)."""
    head = list(table.index.names) + [f"{c:g}" for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index, row in table.iterrows():
        cells = [str(i) for i in index] + [f"{v:.3f}" for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the table (markdown)")
    args = parser.parse_args(argv)

    m, n, r = 5, 4, 2
    model = bn.NMFModel(r, bn.Poisson(), bn.Gamma(2.0, 1.0), bn.Gamma(2.0, 0.2))
    rng = np.random.default_rng(args.seed)
    hits = {(meth, q, mass): [] for meth in ("NUTS", "VI")
            for q in ("entries of WH", "total intensity") for mass in MASSES}
    hits.update({("reference", "total intensity", mass): [] for mass in MASSES})
    start = time.time()
    warnings.simplefilter("ignore", bn.ConvergenceWarning)
    for s in range(args.sims):
        W = rng.gamma(2.0, 1.0, (m, r))
        H = rng.gamma(2.0, 5.0, (r, n))
        lam = W @ H
        X = rng.poisson(lam).astype(float)
        for mass in MASSES:
            tlo, thi = stats.gamma.ppf([(1 - mass) / 2, (1 + mass) / 2], X.sum() + 1)
            hits[("reference", "total intensity", mass)].append(
                float(tlo <= lam.sum() <= thi))
        fits = {
            "NUTS": bn.fit_nuts(X, model, num_chains=2, num_warmup=300,
                                num_samples=500, seed=s, init="prior"),
            "VI": bn.fit_vi_poisson(X, model, n_restarts=2, seed=s, num_draws=1000,
                                    warn=False),
        }
        for meth, res in fits.items():
            WH = np.einsum("csik,cskj->csij", res.draws["W"], res.draws["H"])
            WH = WH.reshape(-1, m, n)
            total = WH.sum(axis=(1, 2))
            for mass in MASSES:
                lo, hi = (1 - mass) / 2, (1 + mass) / 2
                qlo, qhi = np.quantile(WH, [lo, hi], axis=0)
                hits[(meth, "entries of WH", mass)].append(
                    np.mean((lam >= qlo) & (lam <= qhi)))
                tlo, thi = np.quantile(total, [lo, hi])
                hits[(meth, "total intensity", mass)].append(
                    float(tlo <= lam.sum() <= thi))
    elapsed = time.time() - start

    rows = []
    for (meth, q, mass), v in hits.items():
        v = np.asarray(v)
        rows.append({"method": meth, "quantity": q, "nominal": mass,
                     "coverage": v.mean(),
                     "se": v.std(ddof=1) / np.sqrt(v.size)})
    table = pd.DataFrame(rows).pivot_table(
        index=["method", "quantity"], columns="nominal", values="coverage")
    text = (
        f"{args.sims} simulations from the prior, {m} x {n} Poisson NMF, rank {r}, "
        f"Gamma(2, 1) prior on W, Gamma(2, 0.2) on H; NUTS 2 chains x 500 draws, "
        f"closed-form VI 1000 draws; {elapsed:.0f} s.\n\n"
        + markdown(table)
    )
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
