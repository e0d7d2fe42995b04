# %% [markdown]
# # Choosing the rank: the Golub leukemia data (Brunet et al. 2004)
#
# Brunet, Tamayo, Golub and Mesirov (2004) asked how many "metagenes" the Golub
# leukemia data hold. Their answer did not come from the fit, which always
# improves with more components, but from **stability**: run NMF from many
# random starts, assign every sample to its dominant component, and count how
# often two samples land together. That share is the *consensus matrix*. When
# the rank suits the data the consensus is crisp (entries near 0 or 1); its
# *cophenetic correlation* measures how well a hierarchical clustering
# reproduces it, and Brunet et al. chose the rank after which it begins to
# fall.
#
# This notebook reproduces their analysis with `rank_survey` on ranks 2 to 5.

# %%
# %matplotlib inline
import os

QUICK = os.environ.get("BAYESNMF_QUICK") == "1"
N_RESTARTS = 8 if QUICK else 50
MAX_ITER = 200 if QUICK else 2000

import matplotlib.pyplot as plt
import pandas as pd

from bayesnmf.datasets import load_golub
from bayesnmf.plotting import plot_consensus, plot_rank_criteria
from bayesnmf.selection import consensus_clusters, rank_survey

# %%
data = load_golub()
X = data.to_frame()
classes = data.sample_info["class3"]
classes.value_counts()

# %% [markdown]
# ## The survey
#
# For every rank, `rank_survey` runs `N_RESTARTS` MAP fits (Poisson likelihood,
# that is KL divergence, and flat priors, as Brunet et al.) in one compiled
# call, then computes the consensus matrix and its summaries: cophenetic
# correlation, dispersion (Kim and Park 2007) and PAC, the share of ambiguous
# pairs (Şenbabaoğlu et al. 2014). It also matches the components of all
# restarts to each other and reports their silhouette: do the restarts find
# the same metagenes, not only the same clusters? Other criteria (held-out
# entries, bi-cross-validation, ELBO, PSIS-LOO, ARD) are one argument away;
# see "Choosing the rank" in the documentation.

# %%
survey = rank_survey(X, range(2, 6), n_restarts=N_RESTARTS, max_iter=MAX_ITER,
                     criteria=("stability",), seed=0)
print(survey.summary())

# %% [markdown]
# The fit improves at every rank (the first panel), so it cannot choose one.
# The cophenetic correlation stays near 1 at ranks 2 and 3 and falls after:
# Brunet et al. found the same, and chose 3, the rank that separates ALL-B,
# ALL-T and AML.

# %%
plot_rank_criteria(survey)

# %% [markdown]
# ## Consensus matrices
#
# Samples in the order of an average-linkage dendrogram of `1 - C`, the strip on
# top coloured by the known class. Diagonal blocks are groups of samples that
# stay together across restarts.

# %%
plot_consensus(survey, classes=classes)

# %% [markdown]
# ## Misplaced samples
#
# Cut the consensus dendrogram into `r` clusters, name every cluster after the
# class most of its samples belong to, and list the samples that end up with
# another class. At rank 2 the known classes are ALL and AML, at rank 3 ALL-B,
# ALL-T and AML.

# %%
def misplaced(rank, known):
    clusters = pd.Series(consensus_clusters(survey.consensus[rank], rank),
                         index=survey.sample_names, name="cluster")
    table = pd.crosstab(clusters, known.loc[clusters.index])
    majority = table.idxmax(axis=1)
    wrong = clusters.map(majority) != known.loc[clusters.index]
    return table, pd.DataFrame({"class": known[wrong.index[wrong]],
                                "placed with": clusters[wrong].map(majority)})


for rank, known in ((2, data.sample_info["ALL_AML"]), (3, classes)):
    table, wrong = misplaced(rank, known)
    print(f"rank {rank}: clusters x known classes")
    print(table.to_string(), end="\n\n")
    print(wrong.to_string() if len(wrong) else "no sample misplaced", end="\n\n")

# %% [markdown]
# ## The metagenes at rank 3
#
# The survey keeps the best fit of every rank. Each sample's expression of the
# three metagenes (its column of `H`, divided by its total), samples sorted by
# class:

# %%
fit3 = survey.fits[3]
H = fit3.H_frame()
shares = H / H.sum(axis=0)
order = classes.sort_values(kind="stable").index

fig, ax = plt.subplots(figsize=(10, 2.2))
image = ax.imshow(shares[order].to_numpy(), aspect="auto", cmap="viridis")
ax.set_yticks(range(3), shares.index)
ax.set_xticks(range(len(order)), classes[order], rotation=90, fontsize=7)
ax.set_title("share of each sample's expression per metagene (rank 3)")
fig.colorbar(image, ax=ax, fraction=0.02)
plt.show()

# %% [markdown]
# **On the command line:** `bayesnmf rank golub --ranks 2-5 --criteria stability`
# writes the same table, the recommendation and both figures.
