# %% [markdown]
# # Parts: NMF against PCA on the Swimmer images
#
# Lee and Seung (1999) showed that non-negativity makes NMF learn *parts*:
# every image is a sum of pieces, never a difference, so the pieces have to
# look like pieces. PCA has no such constraint: its components are orthogonal
# directions with positive and negative pixels that cancel each other.
#
# The Swimmer data set (Donoho and Stodden 2003) makes the point cleanly:
# 256 images of 32 x 32 pixels, a torso with four limbs, each limb in one of
# four positions. Every image is the torso plus one position of each limb.

# %%
# %matplotlib inline
import os

QUICK = os.environ.get("BAYESNMF_QUICK") == "1"
N_RESTARTS = 2 if QUICK else 20
MAX_ITER = 500 if QUICK else 5000

import matplotlib.pyplot as plt
import numpy as np

import bayesnmf as bn
from bayesnmf.datasets import load_swimmer
from bayesnmf.plotting import plot_signatures

# %%
data = load_swimmer()
X = data.to_frame()          # 1024 pixels x 256 images, values 0 or 1
print(data.description)

fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))
for ax, j in zip(axes, range(0, 256, 32)):
    ax.imshow(data.X[:, j].reshape(32, 32), cmap="Greys")
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## NMF with 16 components
#
# Sixteen limb positions make 16 parts. The pixels are 0 or 1, so we use a
# Gaussian likelihood (Frobenius loss) with the noise variance estimated, and
# flat priors: classical NMF, fitted by multiplicative updates from several
# random starts.

# %%
model = bn.NMFModel(16, bn.Gaussian(noise_scale=None))
fit = bn.fit(X, model, n_restarts=N_RESTARTS, max_iter=MAX_ITER, seed=0)
print(fit.summary())

# %%
plot_signatures(fit, image_shape=(32, 32))

# %% [markdown]
# Each part is one limb in one position. The torso appears in every image, so
# no image shows a limb without it: the data cannot tell the torso apart from
# the limbs, and NMF spreads it, faintly, over the parts. This is the
# uniqueness question of NMF in a picture: an exact NMF is unique only when
# every part has samples that hold it (almost) alone.
#
# ## PCA
#
# PCA of the same images: the leading eigenvectors of the pixel covariance,
# from a singular value decomposition of the centred data. Only 12 components
# carry any variance (see below), so we show those.

# %%
centred = data.X - data.X.mean(axis=1, keepdims=True)
U, s, Vt = np.linalg.svd(centred, full_matrices=False)
print("singular values:", np.round(s[:16], 2))
N_PC = 12

fig, axes = plt.subplots(2, N_PC // 2, figsize=(10, 3.6))
for k, ax in enumerate(axes.flat):
    limit = np.abs(U[:, k]).max()
    ax.imshow(U[:, k].reshape(32, 32), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"PC{k + 1}", fontsize=8)
    ax.set_axis_off()
fig.suptitle("PCA components: red positive, blue negative")
plt.show()

# %% [markdown]
# The principal components mix limbs, with positive and negative pixels that
# cancel: directions, not parts. They are not even unique: the leading
# singular values are all equal, and any rotation of those components is as
# good. And the centred images span only a few dimensions:

# %%
print("non-zero singular values after centring:", int(np.sum(s > 1e-8 * s[0])))

# %% [markdown]
# ## How each image is built
#
# NMF's `H` says which parts an image uses; PCA's scores say how much of each
# direction to add or subtract.

# %%
j = 37
H = fit.H_frame()
weights = H[X.columns[j]]
pca_scores = s[:N_PC] * Vt[:N_PC, j]
used = weights[weights > 0.05 * weights.max()].index
print(f"NMF parts used by image {j}: {list(used)}")
print("PCA scores:", np.round(pca_scores, 2))

fig, axes = plt.subplots(1, 3, figsize=(7, 2.4))
axes[0].imshow(data.X[:, j].reshape(32, 32), cmap="Greys")
axes[0].set_title("image")
axes[1].bar(range(1, 17), weights.to_numpy())
axes[1].set_title("NMF weights (H)")
axes[2].bar(range(1, N_PC + 1), pca_scores)
axes[2].set_title("PCA scores")
axes[0].set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reconstruction and sparsity
#
# The truncated SVD gives the smallest squared error of all approximations of
# a given rank (Eckart and Young), so NMF can at best match it. The Swimmer
# matrix has rank 13, so 13 singular vectors reproduce it exactly; with
# non-negative factors 16 parts are needed (the non-negative rank can exceed
# the rank), and with them NMF reproduces the images almost exactly too, with
# components that are mostly zero.

# %%
U0, s0, Vt0 = np.linalg.svd(data.X, full_matrices=False)
print("rank of the images:", int(np.sum(s0 > 1e-8 * s0[0])))
nmf_error = np.linalg.norm(data.X - fit.reconstruction()) / np.linalg.norm(data.X)
print(f"relative error of NMF with 16 parts: {nmf_error:.4f}")

# Among the pixels that are on in some image: share that a component leaves at 0.
on = data.X.max(axis=1) > 0
W = fit.W[on]
pcs = np.abs(U[on, :12])
print(f"zero pixels per component: NMF {np.mean(W < 1e-3 * W.max(axis=0)):.2f}, "
      f"PCA {np.mean(pcs < 1e-3 * pcs.max(axis=0)):.2f}")
