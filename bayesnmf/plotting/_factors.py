"""Figures of one fit: its parts (W), each sample's exposures (H), its trace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..result import NMFResult
from ..signatures import SBS96_CONTEXTS, match_components, sbs96_order
from ._common import (
    _check_ci_prob,
    _colors,
    _figure,
    _finish,
    _given_axes,
    _grid,
    _interval,
    _normalized_draws,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SBS96_COLORS", "plot_exposures", "plot_signatures", "plot_trace"]

#: Colours of the six substitution groups in the conventional SBS96 plot.
SBS96_COLORS: dict[str, str] = {
    "C>A": "#1EBFF0",
    "C>G": "#050708",
    "C>T": "#E62725",
    "T>A": "#CBCACB",
    "T>C": "#A1CF64",
    "T>G": "#EDC8C5",
}


# -- signatures ---------------------------------------------------------------
def _signature_frame(result_or_W):
    """W (features x components, columns summing to one) and its draws, if any."""
    if isinstance(result_or_W, NMFResult):
        W = result_or_W.W_frame()
        draws = _normalized_draws(result_or_W)[0] if result_or_W.draws else None
        return W, draws
    if isinstance(result_or_W, pd.DataFrame):
        W = result_or_W.astype(np.float64)
    else:
        values = np.asarray(result_or_W, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(
                "result_or_W: expected an NMFResult or a 2-D W of shape "
                f"(n_features, rank), got an array of shape {values.shape}."
            )
        W = pd.DataFrame(
            values,
            index=[f"feature{i}" for i in range(values.shape[0])],
            columns=[f"C{k + 1}" for k in range(values.shape[1])],
        )
    if (W.to_numpy() < 0).any() or not np.isfinite(W.to_numpy()).all():
        raise ValueError("result_or_W: W must be finite and non-negative.")
    sums = W.sum(axis=0)
    return W / sums.where(sums > 0, 1.0), None


def _match_titles(W: pd.DataFrame, references) -> list[str]:
    """Component names followed by their closest reference signature(s)."""
    if references is None:
        return [str(c) for c in W.columns]
    if isinstance(references, pd.DataFrame):
        references = {"": references}
    titles = [str(c) for c in W.columns]
    for name, reference in references.items():
        match = match_components(W, reference, one_to_one=False)
        for k, (best, cosine) in enumerate(
            zip(match["match"], match["cosine"], strict=True)
        ):
            where = f"{name} " if name else ""
            titles[k] += f"  |  {where}{best} (cosine {cosine:.2f})"
    return titles


def plot_signatures(
    result_or_W,
    *,
    references: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    image_shape: tuple[int, int] | None = None,
    n_top: int = 15,
    ci_prob: float = 0.9,
    ax=None,
    path=None,
) -> Figure:
    """Plot the parts (columns of W, each summing to one), one panel each.

    Three layouts, chosen from the features:

    * **SBS96 catalogs** (the features are the 96 channels such as
      ``"A[C>A]A"``, in any order): the conventional mutational-signature plot,
      the channels in :data:`~bayesnmf.signatures.SBS96_CONTEXTS` order, bars
      coloured by the six substitution groups (C>A, C>G, C>T, T>A, T>C, T>G)
      named on top, trinucleotide contexts below;
    * **images** (``image_shape`` given): each part as an image;
    * **anything else**: bars of every feature when there are at most 40,
      otherwise horizontal bars of the ``n_top`` heaviest, labelled.

    Parameters
    ----------
    result_or_W : NMFResult, pandas.DataFrame or array-like
        A fit, or W of shape (n_features, rank) (a DataFrame's index names the
        features and its columns the parts). Columns are rescaled to sum to
        one.
    references : pandas.DataFrame or mapping of str to pandas.DataFrame, optional
        Reference signatures, of shape (n_features, n_signatures) with the same
        feature labels (for example ``{"COSMIC v3.4": load_cosmic("3.4")}``):
        each panel's title names the closest one and its cosine similarity.
    image_shape : tuple of int, optional
        ``(height, width)`` with ``height * width == n_features``: show each part
        as an image (features in row-major order).
    n_top : int, default 15
        Features shown per part in the generic layout with many features.
    ci_prob : float, default 0.9
        For a result with posterior draws, bars get error bars: the central
        ``ci_prob`` interval of the normalised draws (bars are then the
        posterior means).
    ax : matplotlib Axes or sequence of Axes, optional
        One axes per part to draw into; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there (format from the extension).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> from bayesnmf.plotting import plot_signatures
    >>> X = np.random.default_rng(0).poisson(5.0, size=(20, 10))
    >>> fig = plot_signatures(bn.fit_map(X, 2, warn=False))
    >>> len(fig.axes)
    2
    """
    ci_prob = _check_ci_prob(ci_prob)
    W, draws = _signature_frame(result_or_W)
    n_features, rank = W.shape
    interval = None
    if draws is not None:
        mean, low, high = _interval(draws, ci_prob)
        W = pd.DataFrame(mean, index=W.index, columns=W.columns)
        interval = (low, high)
    titles = _match_titles(W, references)

    if image_shape is not None:
        height, width = (int(v) for v in image_shape)
        if height * width != n_features:
            raise ValueError(
                f"image_shape: {image_shape} holds {height * width} pixels, but W "
                f"has {n_features} features."
            )
        return _signature_images(W, titles, (height, width), ax, path)
    labels = [str(f) for f in W.index]
    if n_features == len(SBS96_CONTEXTS) and set(labels) == set(SBS96_CONTEXTS):
        return _signature_sbs96(W, interval, titles, ax, path)
    return _signature_bars(W, interval, titles, n_top, ax, path)


def _signature_sbs96(W, interval, titles, ax, path) -> Figure:
    from matplotlib.transforms import blended_transform_factory

    order = sbs96_order(W.index)
    values = W.to_numpy()[order]
    rank = values.shape[1]
    if ax is None:
        fig = _figure((11.0, 0.6 + 1.9 * rank))
        axes = _grid(fig, rank, 1, sharex=True)
    else:
        axes = _given_axes(ax, rank)
        fig = axes[0].figure

    groups = [c[2:5] for c in SBS96_CONTEXTS]
    colors = [SBS96_COLORS[g] for g in groups]
    x = np.arange(len(SBS96_CONTEXTS))
    for k, panel in enumerate(axes):
        panel.bar(x, values[:, k], width=0.8, color=colors, linewidth=0)
        if interval is not None:
            low, high = (v[order, k] for v in interval)
            panel.vlines(x, low, high, color="0.25", linewidth=0.7)
        top = max(float(values[:, k].max()), 1e-12)
        if interval is not None:
            top = max(top, float(interval[1][:, k].max()))
        panel.set_ylim(0, top * 1.22)
        panel.set_xlim(-0.7, len(x) - 0.3)
        panel.set_ylabel("share")
        panel.set_title(titles[k], loc="left", fontsize=9)
        panel.spines[["top", "right"]].set_visible(False)

        # A coloured band per substitution group, named, along the top.
        band = blended_transform_factory(panel.transData, panel.transAxes)
        for g, name in enumerate(SBS96_COLORS):
            start = 16 * g - 0.5
            panel.add_patch(_rectangle((start, 0.9), 16, 0.06, SBS96_COLORS[name],
                                       band))
            panel.text(start + 8, 0.97, name, transform=band, ha="center",
                       va="bottom", fontsize=8, fontweight="bold")

    bottom = axes[-1]
    bottom.set_xticks(x)
    bottom.set_xticklabels([c[0] + c[2] + c[6] for c in SBS96_CONTEXTS],
                           rotation=90, fontsize=5.5, family="monospace")
    for panel in axes[:-1]:
        panel.tick_params(axis="x", labelbottom=False)
    return _finish(fig, path)


def _rectangle(xy, width, height, color, transform):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, facecolor=color, edgecolor="none",
                     transform=transform, clip_on=False)


def _signature_images(W, titles, shape, ax, path) -> Figure:
    rank = W.shape[1]
    ncols = min(rank, 5)
    if ax is None:
        nrows = -(-rank // ncols)
        fig = _figure((2.2 * ncols, 2.4 * nrows))
        axes = _grid(fig, rank, ncols)
    else:
        axes = _given_axes(ax, rank)
        fig = axes[0].figure
    for k, panel in enumerate(axes):
        image = W.iloc[:, k].to_numpy().reshape(shape)
        panel.imshow(image, cmap="gray_r", interpolation="nearest")
        panel.set_title(titles[k], fontsize=9)
        panel.set_xticks([])
        panel.set_yticks([])
    return _finish(fig, path)


def _signature_bars(W, interval, titles, n_top, ax, path) -> Figure:
    n_features, rank = W.shape
    show_all = n_features <= 40
    ncols = 1 if show_all else min(rank, 3)
    if ax is None:
        if show_all:
            fig = _figure((max(6.0, 0.25 * n_features + 1.5), 0.6 + 2.0 * rank))
        else:
            nrows = -(-rank // ncols)
            fig = _figure((4.2 * ncols, 0.8 + 0.22 * n_top * nrows))
        axes = _grid(fig, rank, ncols, sharex=show_all)
    else:
        axes = _given_axes(ax, rank)
        fig = axes[0].figure

    colors = _colors(rank)
    for k, panel in enumerate(axes):
        column = W.iloc[:, k].to_numpy()
        if show_all:
            x = np.arange(n_features)
            panel.bar(x, column, color=colors[k], width=0.8)
            if interval is not None:
                panel.vlines(x, interval[0][:, k], interval[1][:, k], color="0.25",
                             linewidth=0.8)
            panel.set_ylabel("share")
            panel.set_xticks(x)
            panel.set_xticklabels([str(f) for f in W.index], rotation=90,
                                  fontsize=7)
        else:
            top = np.argsort(column)[::-1][:n_top]
            y = np.arange(top.size)
            xerr = None
            if interval is not None:
                xerr = np.stack([column[top] - interval[0][top, k],
                                 interval[1][top, k] - column[top]])
            panel.barh(y, column[top], color=colors[k], xerr=xerr,
                       error_kw={"elinewidth": 0.8, "ecolor": "0.25"})
            panel.set_yticks(y)
            panel.set_yticklabels([str(W.index[i]) for i in top], fontsize=7)
            panel.invert_yaxis()
            panel.set_xlabel("share")
        panel.set_title(titles[k], loc="left", fontsize=9)
        panel.spines[["top", "right"]].set_visible(False)
    if show_all:
        for panel in axes[:-1]:
            panel.tick_params(axis="x", labelbottom=False)
    return _finish(fig, path)


# -- exposures ----------------------------------------------------------------
def plot_exposures(
    result: NMFResult,
    X=None,
    ci_prob: float = 0.9,
    *,
    relative: bool = False,
    log_scale: bool = False,
    component_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    path=None,
) -> Figure:
    """Plot each sample's exposures: its column of H on the reporting scale.

    With columns of W summing to one, ``H[k, j]`` is the part of sample ``j``'s
    total that component ``k`` explains (for mutation counts: the number of
    mutations attributed to signature ``k``).

    * A fit without draws (MAP): one stacked bar per sample.
    * A fit with draws (VI, NUTS): per sample, one point per component (the
      posterior mean) with an error bar over the central ``ci_prob`` interval
      (equal-tailed quantiles of the normalised draws, as in
      :func:`~bayesnmf.inference_data.posterior_summary`).

    Parameters
    ----------
    result : NMFResult
        A fit.
    X : array-like of shape (n_features, n_samples), optional
        The data: each sample's observed total (column sum) is marked, to
        compare with the fitted total. Ignored with ``relative=True``.
    ci_prob : float, default 0.9
        Mass of the intervals, for fits with draws.
    relative : bool, default False
        Show each sample's shares (its column of H divided by its sum) instead
        of absolute exposures.
    log_scale : bool, default False
        Logarithmic y axis (exposures spanning orders of magnitude).
    component_labels : sequence of str, optional
        Legend label of each component (for example its closest COSMIC
        signature); default the component names.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ci_prob = _check_ci_prob(ci_prob)
    rank, n_samples = result.rank, len(result.sample_names)
    labels = list(component_labels or result.component_names)
    if len(labels) != rank:
        raise ValueError(
            f"component_labels: expected {rank} labels, got {len(labels)}."
        )
    if ax is None:
        fig = _figure((max(6.0, 0.32 * n_samples * (1 + 0.15 * rank) + 2.5), 4.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    colors = _colors(rank)
    x = np.arange(n_samples)

    if result.draws:
        H = _normalized_draws(result)[1]
        if relative:
            H = H / np.maximum(H.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        mean, low, high = _interval(H, ci_prob)
        width = min(0.8 / rank, 0.2)
        for k in range(rank):
            xk = x + (k - (rank - 1) / 2) * width
            ax.errorbar(xk, mean[k], yerr=[mean[k] - low[k], high[k] - mean[k]],
                        fmt="o", markersize=3.5, color=colors[k], elinewidth=1.0,
                        capsize=0, label=labels[k])
        what = f"posterior mean and {ci_prob:.0%} interval"
    else:
        H = result.H
        if relative:
            H = H / np.maximum(H.sum(axis=0, keepdims=True), np.finfo(float).tiny)
        bottom = np.zeros(n_samples)
        for k in range(rank):
            ax.bar(x, H[k], bottom=bottom, color=colors[k], width=0.8,
                   label=labels[k])
            bottom += H[k]
        what = "point estimate"

    if X is not None and not relative:
        from .._validation import as_nmf_data

        data = as_nmf_data(X, allow_nan=True)
        if data.shape[1] != n_samples:
            raise ValueError(
                f"X: expected {n_samples} columns (samples) to match the fit, got "
                f"{data.shape[1]}."
            )
        observed = data.X if data.mask is None else data.X * data.mask
        ax.scatter(x, observed.sum(axis=0), marker="_", s=120, color="black",
                   linewidths=1.5, label="observed total", zorder=3)

    ax.set_xticks(x)
    ax.set_xticklabels(result.sample_names, rotation=90,
                       fontsize=7 if n_samples > 25 else 8)
    ax.set_xlim(-0.7, n_samples - 0.3)
    ax.set_ylabel("share of the sample" if relative
                  else "exposure (H; W columns sum to 1)")
    if log_scale:
        ax.set_yscale("log")
    ax.set_title(f"Exposures per sample ({what})", loc="left", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, path)


# -- traces -------------------------------------------------------------------
def _restart_traces(result: NMFResult) -> list[tuple[np.ndarray, np.ndarray]]:
    """(iterations, values) of every restart (or chain) whose grid is known."""
    traces = np.asarray(result.restarts.get("trace", np.empty((0, 0))), float)
    if traces.ndim != 2 or traces.shape[0] == 0:
        return []
    check_every = result.settings.get("check_every")
    out = []
    for t, values in enumerate(traces):
        keep = np.isfinite(values)
        if check_every is not None:
            n_iter = int(np.asarray(result.restarts["n_iter"])[t])
            iters = np.minimum(np.arange(values.size) * int(check_every), n_iter)
        elif values.size == len(result.trace_iter):
            iters = np.asarray(result.trace_iter)
        else:
            return []
        out.append((iters[keep], values[keep]))
    return out


def plot_trace(
    result: NMFResult, *, distance: bool | None = None, ax=None, path=None
) -> Figure:
    """Plot the objective (MAP, NUTS) or the ELBO (VI) against the iteration.

    Every restart (or chain) is drawn faint, the kept one bold.

    Parameters
    ----------
    result : NMFResult
        A fit; ``trace`` and ``restarts["trace"]`` are drawn.
    distance : bool, optional
        Add a second panel: the distance to the best final value on a log
        scale, which shows the convergence rate and how far the other restarts
        stopped from the best. Default: for engines whose objective is
        monotone (MAP and closed-form VI).
    ax : matplotlib Axes or sequence of two Axes, optional
        Where to draw; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    is_elbo = "ELBO" in result.objective_name
    sign = -1.0 if is_elbo else 1.0
    name = "ELBO" if is_elbo else result.objective_name
    if distance is None:
        engine = str(result.settings.get("engine", result.method))
        distance = result.method == "map" or engine.startswith("cavi")
    n_panels = 2 if distance else 1

    if ax is None:
        fig = _figure((5.0 * n_panels + 0.5, 3.6))
        axes = _grid(fig, n_panels, n_panels)
    else:
        axes = _given_axes(ax, n_panels)
        fig = axes[0].figure

    restarts = _restart_traces(result)
    best_iters = np.asarray(result.trace_iter)
    best_values = np.asarray(result.trace, dtype=np.float64)
    final = sign * float(result.objective)
    for t, (iters, values) in enumerate(restarts):
        if t != result.best_restart:
            axes[0].plot(iters, sign * values, color="C0", alpha=0.25, linewidth=0.8)
    axes[0].plot(best_iters, sign * best_values, color="C0", linewidth=2.0,
                 label=f"kept (#{result.best_restart})")
    if len(restarts) > 1:
        axes[0].plot([], [], color="C0", alpha=0.25, label="other restarts")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel(name)
    axes[0].set_title(f"{result.method.upper()}: {name}", loc="left", fontsize=10)
    axes[0].legend(fontsize=8, frameon=False)

    if distance:
        panel = axes[1]
        for t, (iters, values) in enumerate(restarts):
            if t != result.best_restart:
                gap = np.abs(sign * values - final)
                panel.plot(iters[gap > 0], gap[gap > 0], color="C1", alpha=0.25,
                           linewidth=0.8)
        gap = np.abs(sign * best_values - final)
        panel.plot(best_iters[gap > 0], gap[gap > 0], color="C1", linewidth=2.0)
        panel.set_yscale("log")
        panel.set_xlabel("iteration")
        panel.set_ylabel(f"|{'ELBO' if is_elbo else 'objective'} - best final|")
        panel.set_title("distance to the best final value", loc="left", fontsize=10)
    for panel in axes:
        panel.spines[["top", "right"]].set_visible(False)
    return _finish(fig, path)
