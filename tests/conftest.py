"""Shared test settings: CPU only, fixed seeds, no global JAX configuration."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Share compiled kernels between test files and xdist workers through JAX's
# persistent compilation cache (a test-suite setting; the library itself
# changes no JAX configuration).
_CACHE = Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


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
