# %% [markdown]
# # Quick start: a first Bayesian NMF
#
# This notebook fits a non-negative matrix factorization to real data, looks at
# the two factors as labelled tables, saves the result and converts it to ArviZ.
# It runs in a minute or two on a laptop.
#
# **Install.** From a clone of the repository, `bash scripts/setup.sh` creates
# `.venv` (Python 3.12 or newer) with bayesnmf and everything the notebooks
# need; then start Jupyter with that interpreter, or select `.venv/bin/python`
# as the kernel in your editor.
#
# **The model in one line.** A non-negative matrix `X` of shape
# `(n_features, n_samples)` is explained as `X ≈ W H`: the columns of `W`
# (`n_features x rank`) are the parts, the columns of `H` (`rank x n_samples`)
# say how much of each part every sample holds. The loss is a likelihood and
# any regulariser is a prior; flat priors give classical NMF.

# %%
# %matplotlib inline
import os

# The test suite sets BAYESNMF_QUICK=1 to run every notebook with small settings.
QUICK = os.environ.get("BAYESNMF_QUICK") == "1"
N_RESTARTS = 4 if QUICK else 20
MAX_ITER = 300 if QUICK else 2000
NUM_DRAWS = 100 if QUICK else 500

import numpy as np
import pandas as pd

import bayesnmf as bn
from bayesnmf.datasets import load_golub
from bayesnmf.plotting import plot_trace

# %% [markdown]
# ## Data
#
# The Golub leukemia data (Golub et al. 1999, as analysed by Brunet et al. 2004):
# expression of 5,000 genes in 38 bone-marrow samples of acute lymphoblastic
# (ALL, B- or T-cell) and acute myeloid leukemia (AML). Every bundled data set
# comes in the bayesnmf orientation, features as rows and samples as columns,
# with its labels; `to_frame()` gives a labelled pandas table, and labels travel
# from there into every result.

# %%
data = load_golub()
print(data)
X = data.to_frame()
X.iloc[:5, :4]

# %%
data.sample_info["class3"].value_counts()

# %% [markdown]
# ## Fit
#
# `bn.NMFModel` holds the rank, the likelihood and the priors. A Poisson
# likelihood makes the loss the generalised Kullback-Leibler divergence, the
# loss Brunet et al. used. `bn.fit` runs maximum a posteriori (MAP) estimation
# by multiplicative updates by default; the restarts run together in one
# compiled call and the best one is kept.

# %%
model = bn.NMFModel(3, bn.Poisson())
fit = bn.fit(X, model, n_restarts=N_RESTARTS, max_iter=MAX_ITER, seed=0)
fit

# %%
print(fit.summary())

# %% [markdown]
# The objective is the negative log joint density of the model, so it can only
# go down from one sweep to the next. `plot_trace` shows every restart (faint)
# and the one kept (bold).

# %%
plot_trace(fit)

# %% [markdown]
# ## W and H as labelled tables
#
# On the reporting scale every column of `W` sums to one and `H` carries the
# scale, so `H[k, j]` is the part of sample `j`'s total expression that
# component `k` explains. `W_frame()` and `H_frame()` return them with the
# gene and sample labels of the data.

# %%
W = fit.W_frame()
W.head()

# %%
# The five genes that weigh most in each component (its "metagene").
top = {c: W[c].nlargest(5).index.tolist() for c in W.columns}
pd.DataFrame(top)

# %%
H = fit.H_frame()
H.iloc[:, :6].round(0)

# %% [markdown]
# Each sample's dominant component against its known class: at rank 3 the
# components pick up ALL-B, ALL-T and AML almost perfectly (notebook 03 asks
# whether 3 is the right rank).

# %%
pd.crosstab(H.idxmax(axis=0).rename("dominant component"),
            data.sample_info["class3"])

# %% [markdown]
# ## Save and load
#
# `save` writes one `.npz` file: the arrays bit for bit, the model, labels and
# settings as JSON. `NMFResult.load` gives back an equal result.

# %%
path = fit.save("golub-rank3.npz")
again = bn.NMFResult.load(path)
again.model == fit.model, np.array_equal(again.W_raw, fit.W_raw)

# %% [markdown]
# ## ArviZ
#
# `to_datatree` converts any result to an ArviZ 1.x `DataTree` with named
# dimensions `feature`, `observation` (a column of `X`) and `component`. A MAP
# fit is a single point, stored as one chain of one draw.

# %%
from bayesnmf.inference_data import posterior_summary, to_datatree

tree = to_datatree(fit, X, log_likelihood=False)
tree

# %%
tree["posterior"]["H"].sel(observation=data.sample_names[:3]).squeeze()

# %% [markdown]
# ## Uncertainty
#
# MAP gives no error bars. Variational inference (`method="vi"`) does: for a
# Poisson likelihood with gamma priors it runs closed-form updates with an
# exact evidence lower bound and returns draws from the approximate posterior.
# VI needs proper priors; here weak gamma priors whose prior mean of `WH`
# matches the mean of the data.

# %%
prior_H = bn.Gamma(1.0, 3 / data.X.mean())
vi_model = bn.NMFModel(3, bn.Poisson(), prior_W=bn.Gamma(1.0, 1.0), prior_H=prior_H)
vi = bn.fit(X, vi_model, method="vi", n_restarts=N_RESTARTS, max_iter=MAX_ITER,
            num_draws=NUM_DRAWS, seed=0)
summary = posterior_summary(vi, X, var_names=("H",), ci_prob=0.9)
summary[["mean", "sd", "eti90_lb", "eti90_ub"]].head(6)

# %% [markdown]
# Mean-field VI is fast but its intervals are not exactly calibrated: see
# "Checking uncertainty" in the documentation, and notebook 02 for a complete
# analysis with intervals.
#
# **On the command line** the same fit is `bayesnmf fit golub -k 3`, and
# `bayesnmf fit golub -k 3 --method vi` adds intervals; both write W, H, a
# report and the result file into `bayesnmf-output/`.
