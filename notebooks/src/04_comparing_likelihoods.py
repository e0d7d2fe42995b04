# %% [markdown]
# # Which loss fits my data? Comparing likelihoods
#
# Every NMF loss is a likelihood in disguise: the squared Frobenius norm is a
# Gaussian, the generalised Kullback-Leibler divergence a Poisson, the
# Itakura-Saito divergence a gamma distribution. The values of different
# losses cannot be compared, but the log densities of the corresponding
# likelihoods can, and the fair way to compare them is on data the fit has
# not seen.
#
# `compare_likelihoods` fits each model to the same training entries and
# scores the same held-out entries (entry-wise K-fold: every entry is held
# out once), so the comparison is paired, entry by entry. On integer data the
# continuous Gaussian is scored by the probability it gives to
# `[x - 1/2, x + 1/2]`, so that every model is scored by a probability of the
# observed count.
#
# Data: the mutation catalogs of 21 breast cancer genomes (counts), at rank 5.

# %%
# %matplotlib inline
import os

QUICK = os.environ.get("BAYESNMF_QUICK") == "1"
N_FOLDS = 2 if QUICK else 5
N_RESTARTS = 2 if QUICK else 5
MAX_ITER = 300 if QUICK else 2000
VI_OPTIONS = ({"num_steps": 300, "max_iter": 300, "num_draws": 100} if QUICK
              else {"num_steps": 3000, "num_draws": 400})

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesnmf as bn
from bayesnmf.datasets import load_breast21
from bayesnmf.plotting import plot_likelihood_comparison
from bayesnmf.selection import compare_likelihoods

# %%
data = load_breast21()
X = data.to_frame()
if QUICK:
    X = X.iloc[:, :10]  # fewer genomes keep the test suite's run short
X.shape

# %% [markdown]
# ## Held-out comparison
#
# Three likelihoods with flat priors, fitted by MAP: Gaussian with an estimated
# noise variance, Poisson, and negative binomial with an estimated
# concentration `r` (variance `mu + mu^2 / r`: Poisson plus extra spread).
# Each held-out entry is scored at the fitted mean ("plug-in").
#
# With `loo=True` every model is also fitted to all the data by variational
# inference, for the PSIS-LOO comparison at the end of the notebook.

# %%
comparison = compare_likelihoods(
    X, ["gaussian", "poisson", "negbinomial"], rank=5, n_folds=N_FOLDS,
    n_restarts=N_RESTARTS, max_iter=MAX_ITER, seed=0, loo=True,
    vi_options=VI_OPTIONS)
print(comparison.summary())

# %% [markdown]
# `heldout_lpd` is the sum of the held-out log probabilities (higher is
# better), `diff` the paired difference from the best model and `diff_se` its
# standard error. `scored_as` says how each model was scored: `mass` for the
# count models, `discretised density` for the Gaussian.

# %%
plot_likelihood_comparison(comparison.table)

# %% [markdown]
# The Gaussian is far behind: one noise variance for all entries cannot suit
# counts that range from a handful to thousands (the variance of counts grows
# with their mean). Poisson and negative binomial both let the variance grow
# with the mean.
#
# ## Where the difference comes from
#
# A sum over 2,000 entries can hide that a handful decide. The pointwise
# held-out log probabilities are kept, so the comparison can be broken down,
# here by genome:

# %%
pointwise = comparison.pointwise
gain = pd.DataFrame(pointwise["negbinomial"] - pointwise["poisson"],
                    index=X.index, columns=X.columns)
by_genome = gain.sum(axis=0).sort_values()

fig, ax = plt.subplots(figsize=(9, 2.8))
ax.bar(by_genome.index, by_genome.to_numpy())
ax.axhline(0, color="0.4", linewidth=0.8)
ax.set_ylabel("held-out log prob.\nNB minus Poisson")
ax.tick_params(axis="x", rotation=90)
plt.show()

# %% [markdown]
# and by entry: the entries where the negative binomial gains most.

# %%
top = gain.stack().nlargest(5)
pd.DataFrame({
    "count": [X.loc[i, j] for i, j in top.index],
    "log p, Poisson": [pointwise["poisson"][X.index.get_loc(i), X.columns.get_loc(j)]
                       for i, j in top.index],
    "log p, NB": [pointwise["negbinomial"][X.index.get_loc(i), X.columns.get_loc(j)]
                  for i, j in top.index],
}, index=top.index).round(1)

# %% [markdown]
# Most of the difference sits in a few entries that the Poisson fit, trained
# without them, predicts to be almost impossible: a count of tens or hundreds
# where the fitted mean is close to zero (MAP with flat priors drives many
# entries of `W` and `H` to exactly zero). The Poisson probability of such a
# count is astronomically small; the negative binomial's heavier tail forgives
# it. Plug-in scores are sensitive to these entries, so always look at the
# breakdown, and at the standard error of the difference, before declaring a
# winner.
#
# The negative binomial fitted to all the data, and its estimated
# concentration (the smaller `r`, the more overdispersed the counts):

# %%
nb_fit = bn.fit(X, bn.NMFModel(5, bn.NegativeBinomial()), n_restarts=N_RESTARTS,
                max_iter=MAX_ITER, seed=0)
nb_fit.params

# %% [markdown]
# ## PSIS-LOO
#
# The variational fits to all the data (weak priors scaled to the data replace
# the flat ones) are compared by PSIS-LOO through ArviZ
# (`arviz_stats.compare`). Draws from a mean-field approximation are not
# posterior draws: the share of entries whose Pareto k is above ArviZ's
# threshold (`khat_bad` in the table above, and the warning) says how far to
# trust the LOO estimate.

# %%
comparison.loo_table

# %% [markdown]
# LOO and the held-out comparison answer slightly different questions (LOO
# scores a posterior fitted to everything but one entry, approximated by
# reweighting draws; K-fold refits without a whole fold) and can disagree,
# as they may here. When they do, believe the one whose diagnostics are clean:
# many high Pareto k make LOO unreliable, while a held-out difference carried
# by a few entries, or smaller than two standard errors, is no verdict either.
#
# Scoring held-out entries by the posterior predictive density instead of the
# plug-in mean is one argument away: `compare_likelihoods(...,
# method="vi")` fits every fold by variational inference.
#
# **On the command line:** `bayesnmf compare breast21 -k 5` runs the held-out
# comparison (`--method vi` scores by the posterior predictive, `--loo` adds
# PSIS-LOO) and writes the table and the figure.
