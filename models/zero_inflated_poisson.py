r"""Zero-inflated Poisson NMF for sparse counts.

Each entry is a structural zero with probability :math:`\pi_i` (the gate of its
feature, or one gate for the whole matrix) and a Poisson count otherwise:

.. math::

    W_{ik} \sim \mathrm{Gamma}(a_W, b_W), \qquad
    H_{kj} \sim \mathrm{Gamma}(a_H, b_H), \qquad
    \pi_i \sim \mathrm{Beta}(a_\pi, b_\pi),

    p(x_{ij} \mid W, H, \pi) = \pi_i\,[x_{ij} = 0]
        + (1 - \pi_i)\,\frac{\lambda_{ij}^{x_{ij}} e^{-\lambda_{ij}}}{x_{ij}!},
    \qquad \lambda = WH,

for the observed entries :math:`(i, j) \in \Omega` only (gamma distributions
with shape and rate). The gate adds zeros beyond those the Poisson mean
already explains, the usual account of drop-outs in single-cell counts
(Lambert 1992). Whether droplet counts need it is an empirical question
(Svensson 2020): :func:`main` asks it of the bundled PBMC counts by comparing
held-out predictive densities with the built-in Poisson and negative binomial
models.

Run ``python models/zero_inflated_poisson.py`` (a few minutes on a laptop;
``--quick`` for a smoke run, ``--nuts`` to add a small NUTS fit).

References
----------
Lambert, D. (1992). Zero-inflated Poisson regression, with an application to
defects in manufacturing. Technometrics 34(1), 1-14.
https://doi.org/10.2307/1269547
Svensson, V. (2020). Droplet scRNA-seq is not zero-inflated. Nature
Biotechnology 38, 147-150. https://doi.org/10.1038/s41587-019-0379-5
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

GATES = ("feature", "global")


def zero_inflated_poisson_nmf(
    X=None,
    mask=None,
    *,
    shape=None,
    subsample_size=None,
    rank: int = 5,
    gate: str = "feature",
    gate_prior=(1.0, 4.0),
    prior_W=(1.0, 1.0),
    prior_H=(1.0, 1.0),
):
    r"""Zero-inflated Poisson NMF as a NumPyro program.

    Parameters
    ----------
    X : array of shape (n_features, n_samples), optional
        Counts; None draws them from the prior predictive (give ``shape``).
    mask : array of shape (n_features, n_samples), optional
        1 where X is observed; other entries do not enter the density.
    shape : tuple of int, optional
        ``(n_features, n_samples)`` when X is None.
    subsample_size : int, optional
        Columns per minibatch (the ``observation`` plate subsamples H and X).
    rank : int, default 5
        Number of components, the columns of W.
    gate : {"feature", "global"}, default "feature"
        One zero-inflation probability :math:`\pi_i` per feature (site
        ``gate`` of shape (n_features, 1)) or one for the matrix (a scalar).
    gate_prior : (float, float), default (1.0, 4.0)
        :math:`(a_\pi, b_\pi)` of the beta prior on the gate (mean 0.2).
    prior_W, prior_H : (float, float), default (1.0, 1.0)
        Gamma (shape, rate) priors :math:`(a_W, b_W)` and :math:`(a_H, b_H)`.
        A rate ``rank / mean(X)`` for H puts the prior mean of WH at the mean
        of the data.
    """
    if gate not in GATES:
        raise ValueError(f"gate: expected one of {GATES}, got {gate!r}.")
    if X is None and shape is None:
        raise ValueError("shape: give (n_features, n_samples) when X is None.")
    m, n = X.shape if X is not None else shape

    if gate == "global":
        pi = numpyro.sample("gate", dist.Beta(*gate_prior))
    with numpyro.plate("feature", m, dim=-2):
        if gate == "feature":
            pi = numpyro.sample("gate", dist.Beta(*gate_prior))
        with numpyro.plate("component", rank, dim=-1):
            W = numpyro.sample("W", dist.Gamma(*prior_W))
    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ):
        H = numpyro.sample("H", dist.Gamma(*prior_H))

    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        d = dist.ZeroInflatedPoisson(pi, W @ H)
        if mask is not None:
            d = d.mask(jnp.asarray(mask)[:, idx] > 0)
        numpyro.sample("X", d, obs=None if X is None else jnp.asarray(X)[:, idx])


# -- the example -----------------------------------------------------------------
def main(quick: bool | None = None, nuts: bool = False, seed: int = 0):
    """Fit ZIP NMF to PBMC counts and compare it with built-in likelihoods.

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
        its hyperparameters), ``fit`` (the SVI result) and ``comparison``
        (the :class:`~bayesnmf.selection._compare.LikelihoodComparison`).
    """
    import bayesnmf as bn
    from bayesnmf.datasets import load_pbmc
    from bayesnmf.selection._compare import compare_likelihoods

    if quick is None:
        quick = os.environ.get("BAYESNMF_QUICK") == "1"
    n_genes, n_cells, rank = (30, 24, 3) if quick else (200, 700, 6)
    vi_options = {"num_steps": 300 if quick else 4000, "num_draws": 100}
    frame = _slice(load_pbmc(), n_genes, n_cells, seed)
    X = frame.to_numpy()
    model = functools.partial(
        zero_inflated_poisson_nmf, rank=rank, prior_H=(1.0, rank / X.mean())
    )
    print(f"PBMC counts: {X.shape[0]} most variable genes x {X.shape[1]} cells, "
          f"{np.mean(X == 0):.0%} zeros, rank {rank}")

    # Stochastic VI with 10% of the entries held out, as in each fold of the
    # comparison below (the two share one compiled kernel).
    mask = np.random.default_rng(seed).random(X.shape) >= 0.1
    fit = bn.fit(frame, model, method="vi", mask=mask, seed=seed, warn=not quick,
                 **vi_options)
    gates = np.ravel(fit.extra["mean_gate"])
    print(f"SVI: negative ELBO {fit.objective:.6g}; zero-inflation per gene: "
          f"median {np.median(gates):.3f}, 90% of genes in "
          f"[{np.quantile(gates, 0.05):.3f}, {np.quantile(gates, 0.95):.3f}]")

    if nuts:
        small = frame.iloc[:20, :30]
        small_model = functools.partial(
            zero_inflated_poisson_nmf, rank=2, prior_H=(1.0, 2 / small.values.mean())
        )
        draws = bn.fit(small, small_model, method="nuts", num_chains=2,
                       num_warmup=300, num_samples=300, seed=seed, init="prior")
        print("NUTS on 20 genes x 30 cells: R-hat of the total intensity "
              f"{draws.extra['rhat_total_intensity']:.3f}, median gate "
              f"{np.median(draws.extra['mean_gate']):.3f}")

    models = {"zip": model, "poisson": "poisson"}
    if not quick:
        models["negbinomial"] = "negbinomial"
    comparison = compare_likelihoods(
        frame, models, rank=rank, method="vi", n_folds=2 if quick else 3,
        seed=seed, vi_options=vi_options,
    )
    print(comparison.summary())
    return SimpleNamespace(data=frame, model=model, fit=fit, comparison=comparison)


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
