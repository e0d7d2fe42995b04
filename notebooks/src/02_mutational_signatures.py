# %% [markdown]
# # Mutational signatures of 21 breast cancers, with uncertainty
#
# Every somatic point mutation of a cancer genome can be classified by the
# substituted base and its two neighbours: 6 substitution types x 16 contexts
# = 96 channels. A genome's catalog (its counts in the 96 channels) is a
# mixture of mutational *signatures*, each the fingerprint of a process such
# as ageing, a DNA-repair defect or APOBEC enzymes. Non-negative matrix
# factorization of catalogs (96 channels x genomes) finds the signatures (the
# columns of `W`) and how many mutations each one caused in each genome (the
# columns of `H`; Alexandrov et al. 2013).
#
# Here: the 21 breast cancer genomes of Nik-Zainal et al. (2012), fitted with a
# Poisson likelihood and gamma priors by closed-form variational inference, so
# that every signature and every exposure comes with an interval; then the
# signatures are named after the COSMIC catalogue.

# %%
# %matplotlib inline
import os

QUICK = os.environ.get("BAYESNMF_QUICK") == "1"
N_RESTARTS = 3 if QUICK else 30
MAX_ITER = 300 if QUICK else 3000
NUM_DRAWS = 200 if QUICK else 1000

import numpy as np
import pandas as pd

import bayesnmf as bn
from bayesnmf.datasets import load_breast21, load_cosmic
from bayesnmf.inference_data import posterior_summary, to_datatree
from bayesnmf.plotting import plot_exposures, plot_signatures, plot_trace
from bayesnmf.signatures import match_components

# %% [markdown]
# ## Data

# %%
data = load_breast21()
X = data.to_frame()
totals = X.sum(axis=0).astype(int).sort_values(ascending=False)
print(f"{X.shape[0]} channels x {X.shape[1]} genomes; mutations per genome:")
totals.head(8)

# %% [markdown]
# ## Model
#
# Counts are Poisson given `WH`. The priors are gamma: `Gamma(1, 1)` on every
# entry of `W`, and on `H` an exponential prior whose mean makes the prior mean
# of `WH` equal to the mean count. With a Poisson likelihood and gamma priors
# the model is conditionally conjugate (Cemgil 2009), so `method="vi"` runs
# closed-form coordinate ascent and reports an exact evidence lower bound
# (ELBO). Nik-Zainal et al. found five processes in these genomes: we use rank
# 5 (notebook 03 shows how to choose a rank from the data).

# %%
rank = 5
prior_H = bn.Gamma(1.0, rank / X.to_numpy().mean())
model = bn.NMFModel(rank, bn.Poisson(), prior_W=bn.Gamma(1.0, 1.0), prior_H=prior_H)
print(model.describe())

fit = bn.fit(X, model, method="vi", n_restarts=N_RESTARTS, max_iter=MAX_ITER,
             num_draws=NUM_DRAWS, seed=0)
print(fit.summary())

# %% [markdown]
# The ELBO of every restart (faint) and of the best one (bold): it never
# decreases, and restarts that stop lower found a worse local optimum.

# %%
plot_trace(fit)

# %% [markdown]
# ## Signatures and their COSMIC names
#
# `plot_signatures` recognises the 96 channels and draws the conventional
# layout, the posterior mean of every channel with its 90% interval. Given
# reference catalogues, each panel is titled with the closest reference
# signature and its cosine similarity.

# %%
cosmic3 = load_cosmic("3.4")
cosmic2 = load_cosmic("2")
plot_signatures(fit, references={"COSMIC v3.4": cosmic3, "v2": cosmic2})

# %% [markdown]
# `match_components` assigns each component a distinct reference signature
# (Hungarian algorithm on cosine similarity); with `one_to_one=False` each
# component gets its best and second-best matches, which may repeat.

# %%
W = fit.W_frame()
names = match_components(W, cosmic2).set_index("component")
names3 = match_components(W, cosmic3, one_to_one=False).set_index("component")
table = names.join(names3.add_suffix(" v3.4"))
table

# %% [markdown]
# ## Exposures with 90% intervals
#
# `posterior_summary` goes through ArviZ (`arviz_stats.summary`) and gives the
# mean, standard deviation and equal-tailed interval of every entry. With the
# columns of `W` summing to one, `H[k, j]` is the number of mutations of genome
# `j` attributed to signature `k`.

# %%
summary = posterior_summary(fit, X, var_names=("H",), ci_prob=0.9)
summary.head()

# %% [markdown]
# The same numbers as a tidy table, computed from the ArviZ `DataTree`
# (draws of `H` with dimensions chain, draw, component and observation):

# %%
H = to_datatree(fit, X, log_likelihood=False)["posterior"]["H"]
label = {c: f"{c} ({m})" for c, m in table["match"].items()}
exposures = pd.DataFrame({
    "mean": H.mean(("chain", "draw")).to_series(),
    "5%": H.quantile(0.05, dim=("chain", "draw")).to_series(),
    "95%": H.quantile(0.95, dim=("chain", "draw")).to_series(),
}).rename(index=label, level="component")
exposures.round(0).head(10)

# %% [markdown]
# The most mutated genome, PD4120a, is dominated by the two APOBEC signatures
# (COSMIC v2 signatures 2 and 13):

# %%
exposures.xs("PD4120a", level="observation").round(0)

# %%
plot_exposures(fit, X, component_labels=[label[c] for c in W.columns],
               log_scale=True)

# %% [markdown]
# Shares of each genome's mutations, which make genomes of very different
# mutation burden comparable:

# %%
plot_exposures(fit, X, relative=True,
               component_labels=[label[c] for c in W.columns])

# %% [markdown]
# ## How far to trust the intervals
#
# Mean-field VI treats `W` and `H` as independent, while in the posterior they
# trade scale along the ridge `(cW, H/c)`. The calibration study in the
# documentation ("Checking uncertainty") shows what this does: intervals of
# single entries of `WH` are somewhat too narrow, intervals of the total
# intensity too wide. For small problems, `bn.fit(..., method="nuts")` samples
# the exact posterior and is the reference to check against.
#
# **On the command line:** `bayesnmf fit breast21 -k 5 --method vi` writes
# the signatures, exposures with intervals, COSMIC matches and the ArviZ file.
