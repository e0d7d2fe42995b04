"""Helpers shared by the plotting functions: figures, axes, colours, draws."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..result import NMFResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _grid(fig: Figure, n_panels: int, ncols: int, **kwargs) -> list[Axes]:
    nrows = -(-n_panels // ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
    for ax in axes[n_panels:]:
        ax.remove()
    return list(axes[:n_panels])


def _given_axes(ax, n_panels: int) -> list[Axes]:
    """The axes passed by the caller, one per panel."""
    axes = [ax] if not isinstance(ax, (Sequence, np.ndarray)) else list(np.ravel(ax))
    if len(axes) != n_panels:
        raise ValueError(
            f"ax: expected {n_panels} axes (one per panel), got {len(axes)}."
        )
    return axes


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    name = "tab10" if n <= 10 else "tab20"
    cmap = colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


def _check_ci_prob(ci_prob: float) -> float:
    if not 0.0 < float(ci_prob) < 1.0:
        raise ValueError(f"ci_prob: expected a number in (0, 1), got {ci_prob!r}.")
    return float(ci_prob)


def _normalized_draws(result: NMFResult) -> tuple[np.ndarray, np.ndarray]:
    """Draws of W (N, m, r) and H (N, r, n), normalised, chains matched, flattened."""
    from ..inference_data import _aligned

    draws = {k: np.asarray(v) for k, v in result.draws.items()}
    W, H = _aligned(result, draws)
    return W.reshape(-1, *W.shape[2:]), H.reshape(-1, *H.shape[2:])


def _interval(draws: np.ndarray, ci_prob: float):
    """Mean and equal-tailed interval over the first axis."""
    tail = (1.0 - ci_prob) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return draws.mean(axis=0), low, high


def _first(table: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in table.columns), None)
