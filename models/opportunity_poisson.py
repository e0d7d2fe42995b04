r"""Poisson NMF with known per-sample opportunities scaling the mean.

Each sample :math:`j` comes with a known opportunity :math:`o_j > 0`: its
sequencing depth or library size (single-cell and bulk RNA-seq), the number of
sites at risk of mutation (mutational signatures), an exposure time. The
factors then describe rates per unit of opportunity, comparable across
samples of very different depth:

.. math::

    W_{ik} \sim \mathrm{Gamma}(a_W, b_W), \qquad
    H_{kj} \sim \mathrm{Gamma}(a_H, b_H),

    x_{ij} \mid W, H \sim \mathrm{Poisson}\big(o_j\,(WH)_{ij}\big),
    \quad (i, j) \in \Omega,

with gamma distributions in (shape, rate). The likelihood alone cannot tell
:math:`o_j` from the scale of column :math:`j` of H (the built-in Poisson model
reaches the same means with :math:`o_j h_{kj}`); the opportunities matter
through the prior, which now describes depth-free weights, and whenever H is
compared or shared across samples. The offset is the size factor of GLM-based
count models (Townes et al. 2019) and the opportunity matrix of signeR
(Rosales et al. 2017), here one number per sample.

Run ``python models/opportunity_poisson.py`` (a few minutes on a laptop;
``--quick`` for a smoke run, ``--nuts`` to add a small NUTS fit): PBMC cells
with their total UMI count over all genes (``sample_info["n_counts"]``) as
the opportunity.

References
----------
Rosales, R. A., Drummond, R. D., Valieris, R., Dias-Neto, E. and da Silva,
I. T. (2017). signeR: an empirical Bayesian approach to mutational signature
discovery. Bioinformatics 33(1), 8-16.
https://doi.org/10.1093/bioinformatics/btw572
Townes, F. W., Hicks, S. C., Aryee, M. J. and Irizarry, R. A. (2019). Feature
selection and dimension reduction for single-cell RNA-Seq based on a
multinomial model. Genome Biology 20, 295.
https://doi.org/10.1186/s13059-019-1861-6
"""

from __future__ import annotations

import argparse
import functools
import os
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist


def opportunity_poisson_nmf(
    X=None,
    mask=None,
    *,
    opportunities,
    shape=None,
    subsample_size=None,
    rank: int = 5,
    prior_W=(1.0, 1.0),
    prior_H=(1.0, 1.0),
):
    r"""Poisson NMF with the mean of column j scaled by ``opportunities[j]``.

    Parameters
    ----------
    X : array of shape (n_features, n_samples), optional
        Counts; None draws them from the prior predictive (give ``shape``).
    mask : array of shape (n_features, n_samples), optional
        1 where X is observed; other entries do not enter the density.
    opportunities : array of shape (n_samples,)
        Known positive opportunity :math:`o_j` of each sample, best on a scale
        near 1 (divide library sizes by their median).
    shape : tuple of int, optional
        ``(n_features, n_samples)`` when X is None.
    subsample_size : int, optional
        Columns per minibatch (the ``observation`` plate subsamples H, X and
        the opportunities).
    rank : int, default 5
        Number of components, the columns of W.
    prior_W, prior_H : (float, float), default (1.0, 1.0)
        Gamma (shape, rate) priors :math:`(a_W, b_W)` and :math:`(a_H, b_H)`.
        A rate ``rank / mean(X / o)`` for H puts the prior mean of WH at the
        mean of the depth-normalised data.
    """
    o = np.asarray(opportunities, dtype=float)
    if X is None and shape is None:
        raise ValueError("shape: give (n_features, n_samples) when X is None.")
    m, n = X.shape if X is not None else shape
    if o.shape != (n,) or not np.all(o > 0):
        raise ValueError(
            f"opportunities: expected {n} positive numbers (one per column of X), "
            f"got shape {o.shape} with minimum {o.min() if o.size else None}."
        )

    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "component", rank, dim=-1
    ):
        W = numpyro.sample("W", dist.Gamma(*prior_W))
    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ):
        H = numpyro.sample("H", dist.Gamma(*prior_H))

    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        d = dist.Poisson(jnp.asarray(o)[idx] * (W @ H))
        if mask is not None:
            d = d.mask(jnp.asarray(mask)[:, idx] > 0)
        numpyro.sample("X", d, obs=None if X is None else jnp.asarray(X)[:, idx])


# -- the example -----------------------------------------------------------------
def main(quick: bool | None = None, nuts: bool = False, seed: int = 0):
    """Fit depth-scaled Poisson NMF to PBMC counts and compare it with built-ins.

    Parameters
    ----------
    quick : bool, optional
        A smoke run on a small slice with few steps; default: whether the
        environment variable ``BAYESNMF_QUICK`` is ``1``.
    nuts : bool, default False
        Also sample a small slice with NUTS.
    seed : int, default 0

    Returns
    -------
    types.SimpleNamespace
        ``data`` (the counts as a labelled frame), ``model`` (the program with
        its hyperparameters and opportunities), ``fit`` (the SVI result),
        ``comparison`` (the
        :class:`~bayesnmf.selection._compare.LikelihoodComparison`) and
        ``opportunities``.
    """
    import bayesnmf as bn
    from bayesnmf.datasets import load_pbmc
    from bayesnmf.selection._compare import compare_likelihoods

    if quick is None:
        quick = os.environ.get("BAYESNMF_QUICK") == "1"
    n_genes, n_cells, rank = (30, 24, 3) if quick else (200, 700, 6)
    vi_options = {"num_steps": 300 if quick else 4000, "num_draws": 100}
    data = load_pbmc()
    frame = _slice(data, n_genes, n_cells, seed)
    X = frame.to_numpy()
    # Library size over all genes of the experiment, not only those kept here.
    depth = data.sample_info.loc[frame.columns, "n_counts"].to_numpy(float)
    opportunities = depth / np.median(depth)
    model = functools.partial(
        opportunity_poisson_nmf, opportunities=opportunities, rank=rank,
        prior_H=(1.0, rank / np.mean(X / opportunities)),
    )
    print(f"PBMC counts: {X.shape[0]} most variable genes x {X.shape[1]} cells, "
          f"library sizes from {depth.min():.0f} to {depth.max():.0f}, rank {rank}")

    # Stochastic VI with 10% of the entries held out, as in each fold of the
    # comparison below (the two share one compiled kernel).
    mask = np.random.default_rng(seed).random(X.shape) >= 0.1
    fit = bn.fit(frame, model, method="vi", mask=mask, seed=seed, warn=not quick,
                 **vi_options)
    per_unit = fit.H.sum(axis=0)
    print(f"SVI: negative ELBO {fit.objective:.6g}; correlation of library size "
          f"with the total weight per unit depth: "
          f"{np.corrcoef(opportunities, per_unit)[0, 1]:.2f}, with the raw column "
          f"sums of X: {np.corrcoef(opportunities, X.sum(axis=0))[0, 1]:.2f}")

    if nuts:
        small = frame.iloc[:20, :30]
        o_small = opportunities[:30]
        small_model = functools.partial(
            opportunity_poisson_nmf, opportunities=o_small, rank=2,
            prior_H=(1.0, 2 / np.mean(small.values / o_small)),
        )
        draws = bn.fit(small, small_model, method="nuts", num_chains=2,
                       num_warmup=300, num_samples=300, seed=seed, init="prior")
        print("NUTS on 20 genes x 30 cells: R-hat of the total intensity "
              f"{draws.extra['rhat_total_intensity']:.3f}")

    models = {"opportunity": model, "poisson": "poisson"}
    if not quick:
        models["negbinomial"] = "negbinomial"
    comparison = compare_likelihoods(
        frame, models, rank=rank, method="vi", n_folds=2 if quick else 3,
        seed=seed, vi_options=vi_options,
    )
    print(comparison.summary())
    return SimpleNamespace(data=frame, model=model, fit=fit, comparison=comparison,
                           opportunities=opportunities)


def _slice(data, n_genes: int, n_cells: int, seed: int):
    """Keep the most variable genes of a random subset of cells (a labelled frame)."""
    frame = data.to_frame()
    rng = np.random.default_rng(seed)
    n = frame.shape[1]
    cells = np.sort(rng.choice(n, size=min(n_cells, n), replace=False))
    frame = frame.iloc[:, cells]
    order = np.argsort(-frame.var(axis=1).to_numpy(), kind="stable")
    return frame.iloc[np.sort(order[:n_genes])]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=None,
                        help="small slice, few steps (also BAYESNMF_QUICK=1)")
    parser.add_argument("--nuts", action="store_true", help="add a small NUTS fit")
    parser.add_argument("--seed", type=int, default=0)
    main(**vars(parser.parse_args()))
