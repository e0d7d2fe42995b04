r"""Negative binomial NMF with one dispersion per feature (gene-wise overdispersion).

The built-in :class:`~bayesnmf.NegativeBinomial` likelihood shares one
concentration across the matrix; in sequencing counts each gene has its own
(Love, Huber and Anders 2014). Here every feature :math:`i` has its own
concentration :math:`r_i`:

.. math::

    W_{ik} \sim \mathrm{Gamma}(a_W, b_W), \qquad
    H_{kj} \sim \mathrm{Gamma}(a_H, b_H), \qquad
    r_i \sim \mathrm{Gamma}(a_r, b_r),

    p(x_{ij} \mid \mu_{ij}, r_i) =
        \frac{\Gamma(x_{ij} + r_i)}{\Gamma(r_i)\, x_{ij}!}
        \left(\frac{r_i}{r_i + \mu_{ij}}\right)^{r_i}
        \left(\frac{\mu_{ij}}{r_i + \mu_{ij}}\right)^{x_{ij}},
    \qquad \mu = WH,

for the observed entries :math:`(i, j) \in \Omega` (gamma distributions with
shape and rate). The mean is :math:`\mu_{ij}` and the variance
:math:`\mu_{ij} + \mu_{ij}^2 / r_i`; :math:`r_i \to \infty` is Poisson. The
likelihood is the negative binomial NMF of Gouvert, Oberlin and Févotte (2020)
with a concentration per row.

Run ``python models/negbinomial_per_feature.py`` (a few minutes on a laptop;
``--quick`` for a smoke run, ``--nuts`` to add a small NUTS fit).

References
----------
Gouvert, O., Oberlin, T. and Févotte, C. (2020). Negative binomial matrix
factorization. IEEE Signal Processing Letters 27, 815-819.
https://doi.org/10.1109/LSP.2020.2991613
Love, M. I., Huber, W. and Anders, S. (2014). Moderated estimation of fold
change and dispersion for RNA-seq data with DESeq2. Genome Biology 15, 550.
https://doi.org/10.1186/s13059-014-0550-8
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


def negbinomial_per_feature_nmf(
    X=None,
    mask=None,
    *,
    shape=None,
    subsample_size=None,
    rank: int = 5,
    concentration_prior=(2.0, 0.2),
    prior_W=(1.0, 1.0),
    prior_H=(1.0, 1.0),
):
    r"""Negative binomial NMF with a concentration per feature, as a NumPyro program.

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
    concentration_prior : (float, float), default (2.0, 0.2)
        Gamma (shape, rate) :math:`(a_r, b_r)` of each feature's concentration
        :math:`r_i` (site ``concentration`` of shape (n_features, 1)); the
        default has mean 10 and keeps :math:`r_i` finite on Poisson-like rows.
    prior_W, prior_H : (float, float), default (1.0, 1.0)
        Gamma (shape, rate) priors :math:`(a_W, b_W)` and :math:`(a_H, b_H)`.
        A rate ``rank / mean(X)`` for H puts the prior mean of WH at the mean
        of the data.
    """
    if X is None and shape is None:
        raise ValueError("shape: give (n_features, n_samples) when X is None.")
    m, n = X.shape if X is not None else shape

    with numpyro.plate("feature", m, dim=-2):
        r = numpyro.sample("concentration", dist.Gamma(*concentration_prior))
        with numpyro.plate("component", rank, dim=-1):
            W = numpyro.sample("W", dist.Gamma(*prior_W))
    with numpyro.plate("component_h", rank, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ):
        H = numpyro.sample("H", dist.Gamma(*prior_H))

    with numpyro.plate("feature", m, dim=-2), numpyro.plate(
        "observation", n, subsample_size=subsample_size, dim=-1
    ) as idx:
        d = dist.NegativeBinomial2(W @ H, r)
        if mask is not None:
            d = d.mask(jnp.asarray(mask)[:, idx] > 0)
        numpyro.sample("X", d, obs=None if X is None else jnp.asarray(X)[:, idx])


# -- the example -----------------------------------------------------------------
def main(quick: bool | None = None, nuts: bool = False, seed: int = 0):
    """Fit gene-wise NB NMF to PBMC counts and compare it with built-in likelihoods.

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
        negbinomial_per_feature_nmf, rank=rank, prior_H=(1.0, rank / X.mean())
    )
    print(f"PBMC counts: {X.shape[0]} most variable genes x {X.shape[1]} cells, "
          f"rank {rank}")

    # Stochastic VI with 10% of the entries held out, as in each fold of the
    # comparison below (the two share one compiled kernel).
    mask = np.random.default_rng(seed).random(X.shape) >= 0.1
    fit = bn.fit(frame, model, method="vi", mask=mask, seed=seed, warn=not quick,
                 **vi_options)
    r = np.ravel(fit.extra["mean_concentration"])
    order = np.argsort(r)
    print(f"SVI: negative ELBO {fit.objective:.6g}; concentration per gene: median "
          f"{np.median(r):.3g}, range [{r.min():.3g}, {r.max():.3g}]; most "
          "overdispersed: " + ", ".join(
              f"{frame.index[i]} ({r[i]:.2g})" for i in order[:3]))

    if nuts:
        small = frame.iloc[:20, :30]
        small_model = functools.partial(
            negbinomial_per_feature_nmf, rank=2, prior_H=(1.0, 2 / small.values.mean())
        )
        draws = bn.fit(small, small_model, method="nuts", num_chains=2,
                       num_warmup=300, num_samples=300, seed=seed, init="prior")
        print("NUTS on 20 genes x 30 cells: R-hat of the total intensity "
              f"{draws.extra['rhat_total_intensity']:.3f}, median concentration "
              f"{np.median(draws.extra['mean_concentration']):.3g}")

    models = {"nb_per_gene": model, "poisson": "poisson"}
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
