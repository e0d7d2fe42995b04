"""Figures of fits and surveys: signatures, exposures, traces, rank criteria.

Every function takes a result (an :class:`~bayesnmf.NMFResult`, a
:class:`~bayesnmf.selection.RankSurvey` or a table), draws on a new
:class:`matplotlib.figure.Figure` (or on the axes passed as ``ax``), saves it
when ``path`` is given, and returns the figure. Figures are made without
``pyplot``, so nothing is shown or kept open behind the caller's back; in a
notebook, the returned figure displays itself.

Factors are read on the reporting scale: columns of W sum to one and H carries
the scale (see :func:`bayesnmf.normalize`). Intervals are equal-tailed
quantiles of the normalised draws, components matched across chains.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from ._factors import SBS96_COLORS, plot_exposures, plot_signatures, plot_trace
from ._selection import (
    plot_consensus,
    plot_likelihood_comparison,
    plot_rank_criteria,
)

__all__ = [
    "SBS96_COLORS",
    "plot_consensus",
    "plot_exposures",
    "plot_likelihood_comparison",
    "plot_rank_criteria",
    "plot_signatures",
    "plot_trace",
]
