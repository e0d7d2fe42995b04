"""Figures of model and rank selection: criteria, consensus, likelihoods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._common import _colors, _figure, _finish, _first, _given_axes, _grid

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..selection import RankSurvey

__all__ = ["plot_consensus", "plot_likelihood_comparison", "plot_rank_criteria"]


# -- rank selection -----------------------------------------------------------
def _criteria_panels(table: pd.DataFrame) -> list[tuple[str, list]]:
    """(title, [(column, label, se column or None), ...]) for each panel."""
    panels = []
    if "neg_loglik" in table:
        panels.append(("fit", [("neg_loglik", "-log likelihood (best restart)",
                                None)]))
    consensus = [(c, c, None) for c in ("cophenetic", "dispersion") if c in table]
    if consensus:
        panels.append(("consensus of samples", consensus))
    silhouette = [(c, c.replace("silhouette_", "silhouette "), None)
                  for c in ("silhouette_mean", "silhouette_min") if c in table]
    if silhouette:
        panels.append(("stability of components", silhouette))
    if "heldout_lpd" in table:
        se = _first(table, ("heldout_diff_se", "heldout_se"))
        label = ("log density, ± SE of\nthe difference from the best"
                 if se == "heldout_diff_se" else "log density ± SE")
        panels.append(("held-out evidence", [("heldout_lpd", label, se)]))
    if "bcv_lpd" in table:
        se = _first(table, ("bcv_se",))
        panels.append(("bi-cross-validation", [("bcv_lpd", "log density", se)]))
    if "elbo" in table:
        panels.append(("variational evidence", [("elbo", "ELBO + log r!", None)]))
    loo = _first(table, ("loo_elpd", "elpd_loo", "loo"))
    if loo is not None:
        se = _first(table, (f"{loo}_se", "loo_se", "elpd_loo_se"))
        panels.append(("PSIS-LOO", [(loo, "elpd (LOO)", se)]))
    ard = [c for c in table.columns if str(c).startswith("ard")]
    if ard:
        panels.append(("ARD", [(c, c, None) for c in ard]))
    return panels


def plot_rank_criteria(survey: RankSurvey, *, ax=None, path=None) -> Figure:
    """Plot each rank-selection criterion against the rank.

    Panels, as far as the survey computed them: the fit (best negative
    log-likelihood), consensus of samples (cophenetic correlation, dispersion),
    stability of components (mean and minimum silhouette), held-out log
    density with standard-error bars, the ELBO, PSIS-LOO and ARD. The
    recommended rank is marked in every panel, the stability thresholds of the
    recommendation rule drawn as dotted lines.

    Parameters
    ----------
    survey : RankSurvey
        From :func:`~bayesnmf.selection.rank_survey`.
    ax : sequence of matplotlib Axes, optional
        One axes per panel; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..selection._survey import STABLE_COPHENETIC, STABLE_SILHOUETTE

    table = survey.table
    panels = _criteria_panels(table)
    if not panels:
        raise ValueError("survey: its table holds no criterion to plot.")
    ranks = np.asarray(table.index, dtype=int)
    if ax is None:
        ncols = 2 if len(panels) == 4 else min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig = _figure((4.2 * ncols, 3.2 * nrows))
        axes = _grid(fig, len(panels), ncols)
    else:
        axes = _given_axes(ax, len(panels))
        fig = axes[0].figure

    rec = survey.recommended_rank
    for panel, (title, series) in zip(axes, panels, strict=True):
        for i, (column, label, se) in enumerate(series):
            values = table[column].to_numpy(dtype=float)
            yerr = None if se is None else table[se].to_numpy(dtype=float)
            panel.errorbar(ranks, values, yerr=yerr, marker="o", markersize=4,
                           color=f"C{i}", capsize=3 if yerr is not None else 0,
                           label=label)
        if title == "consensus of samples":
            panel.axhline(STABLE_COPHENETIC, color="0.5", linestyle=":",
                          linewidth=1)
        if title == "stability of components":
            panel.axhline(STABLE_SILHOUETTE, color="0.5", linestyle=":",
                          linewidth=1)
        if rec is not None:
            panel.axvline(rec, color="0.3", linestyle="--", linewidth=1)
        panel.set_title(title, loc="left", fontsize=10)
        panel.set_xlabel("rank")
        panel.set_xticks(ranks)
        panel.spines[["top", "right"]].set_visible(False)
        panel.legend(fontsize=7, frameon=False, loc="best")
    if rec is not None:
        fig.suptitle(f"Recommended rank: {rec} (dashed line)", fontsize=11)
    return _finish(fig, path)


def plot_consensus(
    survey: RankSurvey,
    ranks: Sequence[int] | None = None,
    *,
    classes=None,
    ax=None,
    path=None,
) -> Figure:
    """Plot the consensus matrix of each rank, samples in dendrogram order.

    Entry ``(i, j)`` is the share of restarts in which samples ``i`` and ``j``
    have the same dominant component. Rows and columns are ordered by
    :func:`~bayesnmf.selection.consensus_order` (average linkage of
    ``1 - C``), so that stable clusters show as diagonal blocks.

    Parameters
    ----------
    survey : RankSurvey
        From :func:`~bayesnmf.selection.rank_survey` with the ``"stability"``
        criterion.
    ranks : sequence of int, optional
        Ranks to show; default every rank with a consensus matrix.
    classes : array-like or pandas.Series, optional
        Known class of each sample (in ``survey.sample_names`` order, or a
        Series indexed by sample name): shown as a coloured strip above each
        heatmap.
    ax : sequence of matplotlib Axes, optional
        One axes per rank; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    from ..selection import consensus_order

    available = sorted(survey.consensus)
    if not available:
        raise ValueError(
            "survey: has no consensus matrices; run rank_survey with the "
            "'stability' criterion."
        )
    ranks = available if ranks is None else [int(r) for r in ranks]
    missing = sorted(set(ranks) - set(available))
    if missing:
        raise ValueError(
            f"ranks: no consensus matrix for {missing}; the survey has {available}."
        )
    names = [str(s) for s in survey.sample_names]
    n_samples = len(names)
    codes, levels = None, []
    if classes is not None:
        if isinstance(classes, pd.Series):
            classes = classes.set_axis(classes.index.map(str)).reindex(names)
        classes = pd.Series(np.asarray(classes, dtype=object), index=names)
        if len(classes) != n_samples:
            raise ValueError(
                f"classes: expected {n_samples} entries, got {len(classes)}."
            )
        known = classes.dropna().astype(str)
        levels = sorted(known.unique())
        codes = classes.map({c: i for i, c in enumerate(levels)}).to_numpy(float)

    if ax is None:
        ncols = min(4, len(ranks))
        nrows = -(-len(ranks) // ncols)
        fig = _figure((3.4 * ncols + 0.8, 3.5 * nrows + (0.4 if levels else 0.0)))
        axes = _grid(fig, len(ranks), ncols)
    else:
        axes = _given_axes(ax, len(ranks))
        fig = axes[0].figure

    class_colors = _colors(len(levels)) if levels else []
    if codes is not None:
        from matplotlib.colors import to_rgba

        palette = np.array([to_rgba(c) for c in class_colors] + [(1, 1, 1, 0)])
        strip_colors = palette[np.where(np.isnan(codes), len(levels), codes)
                               .astype(int)]
    image = None
    for panel, r in zip(axes, ranks, strict=True):
        C = np.asarray(survey.consensus[r])
        order = consensus_order(C)
        image = panel.imshow(C[np.ix_(order, order)], cmap="RdYlBu_r", vmin=0.0,
                             vmax=1.0, interpolation="nearest")
        title = f"rank {r}"
        if "cophenetic" in survey.table and r in survey.table.index:
            title += f" (cophenetic {survey.table.loc[r, 'cophenetic']:.3f})"
        if r == survey.recommended_rank:
            title += " *"
        panel.set_title(title, fontsize=9)
        if n_samples <= 30:
            ticks = np.arange(n_samples)
            panel.set_yticks(ticks)
            panel.set_yticklabels([names[i] for i in order], fontsize=5)
        else:
            panel.set_yticks([])
        panel.set_xticks([])
        if codes is not None:
            # The classes as a strip of cells above the heatmap, in the same axes.
            height, gap = 0.05 * n_samples, 0.02 * n_samples
            top = -0.5 - gap
            panel.imshow(strip_colors[order][None], interpolation="nearest",
                         extent=(-0.5, n_samples - 0.5, top, top - height))
            panel.set_ylim(n_samples - 0.5, top - height)
            panel.spines[:].set_visible(False)
    fig.colorbar(image, ax=axes, shrink=0.8, label="consensus")
    if survey.recommended_rank in ranks:
        fig.suptitle("Consensus matrices, samples in dendrogram order "
                     "(* recommended rank)", fontsize=10)
    if levels:
        handles = [Patch(color=c, label=name)
                   for c, name in zip(class_colors, levels, strict=True)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(levels),
                   fontsize=8, frameon=False)
    return _finish(fig, path)


# -- comparing likelihoods ----------------------------------------------------
#: Value columns, each with the standard-error columns that go with it.
_VALUE_COLUMNS = (
    ("heldout_lpd", ("heldout_se", "se")),
    ("elpd", ("se",)),
    ("elpd_loo", ("loo_se", "se")),
    ("lpd", ("se",)),
)
#: Difference-from-the-best columns and their standard errors.
_DIFF_COLUMNS = (("diff", "diff_se"), ("elpd_diff", "dse"))


def plot_likelihood_comparison(table, *, ax: Axes | None = None, path=None) -> Figure:
    """Plot the predictive evidence of competing models, best first.

    Parameters
    ----------
    table : pandas.DataFrame or LikelihoodComparison
        One row per model (the index names it) with a column of predictive log
        density, the first present of ``heldout_lpd``, ``elpd``, ``elpd_loo``
        and ``lpd``, and optionally its standard error (``heldout_se`` or
        ``se``; ``loo_se`` or ``se`` for ``elpd_loo``), such as the table of
        :func:`~bayesnmf.selection.compare_likelihoods` or of ArviZ's
        ``compare``. When the paired difference from the best and its
        standard error are present (``diff`` and ``diff_se``, or ArviZ's
        ``elpd_diff`` and ``dse``), that standard error is drawn too: it is the
        one that says whether two models differ.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    path : str or pathlib.Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(table, pd.DataFrame) and isinstance(
        getattr(table, "table", None), pd.DataFrame
    ):
        table = table.table
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"table: expected a pandas DataFrame, got {type(table).__name__}."
        )
    value, se = None, None
    for name, errors in _VALUE_COLUMNS:
        if name in table.columns:
            value, se = name, _first(table, errors)
            break
    if value is None:
        raise ValueError(
            f"table: expected a column among {[v for v, _ in _VALUE_COLUMNS]}, "
            f"got {list(table.columns)}."
        )
    ordered = table.sort_values(value, ascending=False, kind="stable")
    values = ordered[value].to_numpy(dtype=float)
    n_models = len(ordered)

    if ax is None:
        fig = _figure((6.5, 0.9 + 0.45 * n_models))
        ax = fig.subplots()
    else:
        fig = ax.figure
    y = np.arange(n_models)
    xerr = None if se is None else ordered[se].to_numpy(dtype=float)
    ax.errorbar(values, y, xerr=xerr, fmt="o", color="C0", capsize=3,
                label=f"{value} ± {se}" if se else value)
    diff = next(((d, e) for d, e in _DIFF_COLUMNS
                 if {d, e} <= set(ordered.columns)), None)
    if diff is not None and n_models > 1:
        dse = ordered[diff[1]].to_numpy(dtype=float)
        ax.errorbar(values[1:], y[1:] + 0.25, xerr=dse[1:], fmt="^", color="C1",
                    markersize=4, capsize=2,
                    label="± SE of the difference\nfrom the best")
        ax.legend(fontsize=8, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))
    ax.axvline(values[0], color="0.5", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([str(name) for name in ordered.index])
    ax.set_ylim(n_models - 0.5, -0.5)
    ax.set_xlabel(f"{value}{f' ± {se}' if se else ''} (higher is better)")
    ax.set_title("Predictive evidence, best first", loc="left", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _finish(fig, path)
