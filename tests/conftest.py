"""Shared test settings: CPU only, fixed seeds, no global JAX configuration."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(20261203)


def planted(rng, m=30, n=20, r=3, scale=50.0, sparse=True):
    """Factors with zeros in every column of W and row of H (identifiable)."""
    W = rng.gamma(1.0, 1.0, size=(m, r))
    H = rng.gamma(1.0, scale, size=(r, n))
    if sparse:
        W[rng.random((m, r)) < 0.4] = 0.0
        H[rng.random((r, n)) < 0.4] = 0.0
        for k in range(r):  # anchors: each component owns a row and a column
            W[k, :] = 0.0
            W[k, k] = 1.0 + W[:, k].sum()
            H[:, k] = 0.0
            H[k, k] = scale
    return W, H
