"""Floating-point precision without touching JAX's global configuration.

float64 work runs inside ``jax.enable_x64(True)``, a context manager that is
scoped to the calling thread; importing bayesnmf changes no JAX setting.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

__all__ = ["resolve_dtype", "precision_scope"]


def resolve_dtype(dtype) -> np.dtype:
    """Check ``dtype`` and return float32 or float64 as a NumPy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}.") from err
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}.")
    return resolved


@contextlib.contextmanager
def precision_scope(dtype):
    """Run JAX code in ``dtype``: float64 enables x64 for this block only."""
    if np.dtype(dtype) == np.float64:
        with jax.enable_x64(True):
            yield
    else:
        yield
