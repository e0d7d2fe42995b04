r"""Poisson NMF whose exposures share a gamma rate within known groups of samples.

Samples come in known groups (cell types, tumour classes, batches). The
weights :math:`h_{kj}` of the samples of one group on component :math:`k`
share a rate :math:`b_{kg}`, drawn from a common prior, so a group that uses a
component heavily pulls its members' weights up together and a sample with
little data borrows strength from its group:

.. math::

    W_{ik} \sim \mathrm{Gamma}(a_W, b_W), \qquad
    b_{kg} \sim \mathrm{Gamma}(c, d), \qquad
    H_{kj} \mid b \sim \mathrm{Gamma}(a_H, b_{k, g(j)}),

    x_{ij} \mid W, H \sim \mathrm{Poisson}\big((WH)_{ij}\big),
    \quad (i, j) \in \Omega,

with :math:`g(j)` the group of sample :math:`j` and gamma distributions in
(shape, rate). The hierarchy is the gamma-rate construction of hierarchical
Poisson factorization (Gopalan, Hofman and Blei 2015) with one rate per group
and component instead of one per sample; integrating :math:`b_{kg}` out makes
the weights of a group exchangeable and positively correlated.

Run ``python models/hierarchical_groups.py`` (a few minutes on a laptop;
``--quick`` for a smoke run, ``--nuts`` to add a small NUTS fit): PBMC cells
grouped by their annotated cell type (``sample_info["bulk_labels"]``).

References
----------
Gopalan, P., Hofman, J. M. and Blei, D. M. (2015). Scalable recommendation with
hierarchical Poisson factorization. Proceedings of UAI 2015, 326-335.
https://doi.org/10.48550/arXiv.1311.1704
Cemgil, A. T. (2009). Bayesian inference for nonnegative matrix factorisation
models. Computational Intelligence and Neuroscience, 785152.
https://doi.org/10.1155/2009/785152
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


def hierarchical_groups_nmf(
    X=None,
    mask=None,
    *,
    groups,
    shape=None,
    subsample_size=None,
    rank: int = 5,
    activation_shape: float = 1.0,
    group_rate_prior=(2.0, 2.0),
    prior_W=(1.0, 1.0),
):
    r"""Poisson NMF with group-level gamma rates on H, as a NumPyro program.

    Parameters
    ----------
    X : array of shape (n_features, n_samples), optional
        Counts; None draws them from the prior predictive (give ``shape``).
    mask : array of shape (n_features, n_samples), optional
        1 where X is observed; other entries do not enter the density.
    groups : array of int of shape (n_samples,)
        Group :math:`g(j)` of each sample, coded 0, 1, ..., n_groups - 1 (for
        example ``pandas.factorize(labels)[0]``).
    shape : tuple of int, optional
        ``(n_features, n_samples)`` when X is None.
    subsample_size : int, optional
        Columns per minibatch (the ``observation`` plate subsamples H, X and
        the group of each column).
    rank : int, default 5
        Number of components, the columns of W.
    activation_shape : float, default 1.0
        Shape :math:`a_H` of every weight given its group's rate.
    group_rate_prior : (float, float), default (2.0, 2.0)
        Gamma (shape, rate) :math:`(c, d)` of the group rates :math:`b_{kg}`
        (site ``group_rate`` of shape (rank, n_groups)). For :math:`c > 1`
        the prior mean of a weight is :math:`a_H d / (c - 1)`, so a rate
        ``d = (c - 1) * mean(X) / (a_H * rank)`` puts the prior mean of WH at
        the mean of the data when W has prior mean 1.
    prior_W : (float, float), default (1.0, 1.0)
        Gamma (shape, rate) :math:`(a_W, b_W)` of the entries of W.
    """
    groups = np.asarray(groups)
    if X is None and shape is None:
        raise ValueError("shape: give (n_features, n_samples) when X is None.")
    m, n = X.shape if X is not None else shape
    if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(
            f"groups: expected {n} integer group codes (one per column of X), got "
            f"an array of dtype {groups.dtype} and shape {groups.shape}."
        )
    if groups.min() < 0:
        raise ValueError("groups: codes must be 0, 1, ...; got negative codes.")
    n_groups = int(groups.max()) + 1

    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "group", n_groups, dim=-1
    ):
        rate = numpyro.sample("group_rate", dist.Gamma(*group_rate_prior))
    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "component", rank, dim=-1
    ):
        W = numpyro.sample("W", dist.Gamma(*prior_W))
    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        H = numpyro.sample(
            "H", dist.Gamma(activation_shape, rate[:, jnp.asarray(groups)[idx]])
        )

    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        d = dist.Poisson(W @ H)
        if mask is not None:
            d = d.mask(jnp.asarray(mask)[:, idx] > 0)
        numpyro.sample("X", d, obs=None if X is None else jnp.asarray(X)[:, idx])


# -- the example -----------------------------------------------------------------
def main(quick: bool | None = None, nuts: bool = False, seed: int = 0):
    """Fit group-level NMF to PBMC counts grouped by cell type, and compare.

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
        its hyperparameters and groups), ``fit`` (the SVI result),
        ``comparison`` (the
        :class:`~bayesnmf.selection._compare.LikelihoodComparison`) and
        ``labels`` (the cell type of each column).
    """
    import pandas as pd

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
    labels = data.sample_info.loc[frame.columns, "bulk_labels"]
    groups, names = pd.factorize(labels)
    shape_c = 2.0
    model = functools.partial(
        hierarchical_groups_nmf, groups=groups, rank=rank,
        group_rate_prior=(shape_c, (shape_c - 1) * X.mean() / rank),
    )
    print(f"PBMC counts: {X.shape[0]} most variable genes x {X.shape[1]} cells in "
          f"{len(names)} cell types, rank {rank}")

    # Stochastic VI with 10% of the entries held out, as in each fold of the
    # comparison below (the two share one compiled kernel).
    mask = np.random.default_rng(seed).random(X.shape) >= 0.1
    fit = bn.fit(frame, model, method="vi", mask=mask, seed=seed, warn=not quick,
                 **vi_options)
    # Share of each cell type's expected counts that each component explains.
    H = pd.DataFrame(fit.H.T, index=labels.to_numpy(), columns=fit.component_names)
    share = H.groupby(level=0).mean()
    share = share.div(share.sum(axis=1), axis=0)
    print(f"SVI: negative ELBO {fit.objective:.6g}. Mean share of each component "
          "per cell type:")
    print(share.round(2).to_string())

    if nuts:
        small = frame.iloc[:20, :30]
        small_groups = pd.factorize(labels.iloc[:30])[0]
        small_model = functools.partial(
            hierarchical_groups_nmf, groups=small_groups, rank=2,
            group_rate_prior=(shape_c, (shape_c - 1) * small.values.mean() / 2),
        )
        draws = bn.fit(small, small_model, method="nuts", num_chains=2,
                       num_warmup=300, num_samples=300, seed=seed, init="prior")
        print("NUTS on 20 genes x 30 cells: R-hat of the total intensity "
              f"{draws.extra['rhat_total_intensity']:.3f}")

    models = {"groups": model, "poisson": "poisson"}
    if not quick:
        models["negbinomial"] = "negbinomial"
    comparison = compare_likelihoods(
        frame, models, rank=rank, method="vi", n_folds=2 if quick else 3,
        seed=seed, vi_options=vi_options,
    )
    print(comparison.summary())
    return SimpleNamespace(data=frame, model=model, fit=fit, comparison=comparison,
                           labels=labels)


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
