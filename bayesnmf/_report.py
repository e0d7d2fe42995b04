"""Readable text reports of a fitted NMF model, and the files a fit writes.

The report reads the factors on the reporting scale (columns of W sum to one,
H carries the scale; see :func:`bayesnmf.normalize`) and adds what the data
allow:

- for mutational catalogs over the 96 SBS channels, the closest COSMIC
  signatures of each component and each genome's exposures;
- for samples with known classes, the component each sample falls in, the
  contingency table of classes x components and the number of misplaced
  samples;
- otherwise, the features that weigh most in each component.

Every function takes an :class:`~bayesnmf.NMFResult` (and optionally the
:class:`~bayesnmf.datasets.Dataset` it was fitted on) and returns a string or a
pandas DataFrame, so the command line, notebooks and later reports share them.
Nothing here prints.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from .result import NMFResult
from .signatures import SBS96_CONTEXTS, match_components

if TYPE_CHECKING:  # pragma: no cover
    from .datasets import Dataset

__all__ = [
    "ClassAgreement",
    "class_agreement",
    "class_section",
    "cosmic_references",
    "exposure_interval_table",
    "exposure_table",
    "features_section",
    "fit_section",
    "format_report",
    "interval_section",
    "is_sbs96",
    "posterior_table",
    "sample_classes",
    "signature_matches",
    "signature_section",
    "top_features",
    "write_posterior_files",
    "write_result_files",
]

#: Column of ``Dataset.sample_info`` that holds the known class of each sample.
CLASS_COLUMN = "class3"


def _heading(title: str) -> str:
    return f"{title}\n{'-' * len(title)}"


def _table(frame: pd.DataFrame, *, index: bool = True, digits: int = 3) -> str:
    return frame.to_string(index=index, float_format=lambda v: f"{v:.{digits}f}")


# -- the fit ------------------------------------------------------------------
def fit_section(result: NMFResult) -> str:
    """Model, data shape, objective, convergence and restarts of a fit.

    Parameters
    ----------
    result : NMFResult
        A fitted model.

    Returns
    -------
    str
        :meth:`NMFResult.summary`, plus the number of missing entries when the
        fit was masked.
    """
    lines = [result.summary()]
    settings = result.settings
    if result.method != "map" and settings.get("engine"):
        lines.append(f"engine: {settings['engine']}")
    if settings.get("masked"):
        n_total = len(result.feature_names) * len(result.sample_names)
        n_missing = n_total - int(settings.get("n_observed", n_total))
        lines.append(
            f"missing entries: {n_missing} of {n_total}, excluded from the likelihood"
        )
    return "\n".join(lines)


# -- mutational signatures ----------------------------------------------------
def is_sbs96(labels: Sequence[str]) -> bool:
    """Whether ``labels`` are the 96 SBS channels (``"A[C>A]A"``, ...), each once.

    Parameters
    ----------
    labels : sequence of str
        Feature labels, in any order.

    Returns
    -------
    bool
    """
    labels = [str(label) for label in labels]
    return len(labels) == len(SBS96_CONTEXTS) and set(labels) == set(SBS96_CONTEXTS)


def cosmic_references() -> dict[str, pd.DataFrame]:
    """Load the bundled COSMIC v3.4 and v2 SBS signatures, keyed by release.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``{"COSMIC v3.4": ..., "COSMIC v2": ...}``, each of shape (96, n_signatures).
    """
    # Imported here: the bundled data sets sit above the reporting layer.
    from .datasets import load_cosmic

    return {"COSMIC v3.4": load_cosmic("3.4"), "COSMIC v2": load_cosmic("2")}


def signature_matches(
    result: NMFResult, references: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Find the closest and second-closest reference signature of each component.

    Each component is matched on its own (``one_to_one=False`` in
    :func:`~bayesnmf.signatures.match_components`), so two components may share a
    best match; rows are aligned by channel label, not position.

    Parameters
    ----------
    result : NMFResult
        A fit whose features are the 96 SBS channels.
    references : mapping of str to pandas.DataFrame, optional
        Reference catalogs of shape (96, n_signatures) by name; default
        :func:`cosmic_references`.

    Returns
    -------
    pandas.DataFrame
        One row per component, indexed by component name, with four columns per
        reference: its name (best match), ``cosine``, ``2nd`` and ``cosine 2nd``,
        under a two-level column index ``(reference, field)``.
    """
    references = cosmic_references() if references is None else references
    W = result.W_frame()
    parts = {}
    for name, reference in references.items():
        match = match_components(W, reference, one_to_one=False).set_index("component")
        parts[name] = pd.DataFrame(
            {
                "best": match["match"],
                "cosine": match["cosine"],
                "2nd": match["second_match"],
                "cosine 2nd": match["second_cosine"],
            }
        )
    table = pd.concat(parts, axis=1)
    table.index.name = "component"
    return table


def exposure_table(result: NMFResult) -> pd.DataFrame:
    """Mutations attributed to each signature in each genome.

    The columns of H on the reporting scale: with the columns of W summing to
    one, ``H[k, j]`` is the expected number of mutations of genome ``j`` that
    signature ``k`` explains.

    Parameters
    ----------
    result : NMFResult
        A fitted model (any data with count-like columns).

    Returns
    -------
    pandas.DataFrame
        One row per sample: the rounded count of each component, ``total`` (the
        rounded sum of the unrounded counts) and ``largest`` (the component with
        the largest share and that share). Two more rows, ``all`` and
        ``fraction``, give the counts over all samples and each component's
        share of them.
    """
    H = result.H_frame().T
    total = H.sum(axis=1)
    share = H.div(total.where(total > 0, 1.0), axis=0)
    largest = share.idxmax(axis=1)
    largest_text = [
        f"{k} {share.loc[j, k]:.0%}" for j, k in zip(share.index, largest, strict=True)
    ]

    counts = H.round().astype(np.int64)
    counts["total"] = total.round().astype(np.int64)
    grand = H.sum(axis=0)
    fraction = grand / max(float(grand.sum()), np.finfo(float).tiny)

    table = counts.astype(object)
    table["largest"] = largest_text
    table.loc["all"] = [*grand.round().astype(np.int64), int(round(total.sum())), ""]
    table.loc["fraction"] = [*(f"{f:.3f}" for f in fraction), "1.000", ""]
    table.index.name = "sample"
    return table


# -- known classes ------------------------------------------------------------
def sample_classes(
    result: NMFResult,
    dataset: Dataset | None = None,
    classes: pd.Series | Mapping[str, str] | None = None,
) -> pd.Series | None:
    """Return the known class of each sample of a fit, when there is one.

    Parameters
    ----------
    result : NMFResult
        A fitted model; its sample names index the answer.
    dataset : Dataset, optional
        Its ``sample_info`` column ``class3`` gives the classes.
    classes : pandas.Series or mapping of str to str, optional
        Class per sample name; takes precedence over ``dataset``.

    Returns
    -------
    pandas.Series or None
        Class per sample (NaN where unknown), indexed by the fit's sample names;
        None when no class is known.

    Raises
    ------
    ValueError
        If ``classes`` names none of the fit's samples.
    """
    if classes is None and dataset is not None and dataset.sample_info is not None:
        if CLASS_COLUMN in dataset.sample_info.columns:
            classes = dataset.sample_info[CLASS_COLUMN]
    if classes is None:
        return None
    classes = pd.Series(classes, dtype=object)
    classes.index = classes.index.map(str)
    known = classes.reindex(result.sample_names)
    if known.notna().sum() == 0:
        raise ValueError(
            "classes: none of the sample names is in the class table (first "
            f"samples of the data: {result.sample_names[:3]}, of the table: "
            f"{list(classes.index[:3])}); the first column must hold sample names."
        )
    known.index.name = "sample"
    return known


class ClassAgreement(NamedTuple):
    """How the components of a fit agree with known sample classes.

    Attributes
    ----------
    assignment : pandas.DataFrame
        One row per sample: ``class``, ``component`` (argmax of its column of H
        on the reporting scale), ``share`` (that component's share of the
        column) and ``misplaced`` (the component is not its class's match).
    contingency : pandas.DataFrame
        Samples counted by class (rows) and component (columns).
    matching : dict of str to str
        Class matched to each component by the one-to-one matching that agrees
        with most samples; components left over are absent.
    n_misplaced : int
        Samples with a known class whose component is not matched to it.
    """

    assignment: pd.DataFrame
    contingency: pd.DataFrame
    matching: dict
    n_misplaced: int


def class_agreement(result: NMFResult, classes: pd.Series) -> ClassAgreement:
    """Compare each sample's dominant component with its known class.

    Components are matched one-to-one with classes by the Hungarian algorithm on
    the contingency table (``scipy.optimize.linear_sum_assignment``), so that
    the matched cells hold as many samples as possible; every other sample with
    a known class is misplaced.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    classes : pandas.Series
        Class per sample, from :func:`sample_classes`; NaN entries are ignored.

    Returns
    -------
    ClassAgreement
    """
    H = result.H_frame()
    share = H / H.sum(axis=0).where(H.sum(axis=0) > 0, 1.0)
    component = share.idxmax(axis=0)
    known = classes.reindex(H.columns)

    labelled = known.notna()
    contingency = pd.crosstab(
        pd.Categorical(known[labelled], categories=sorted(known[labelled].unique())),
        pd.Categorical(component[labelled], categories=result.component_names),
        dropna=False,
    )
    contingency.index.name = "class"
    contingency.columns.name = "component"

    rows, cols = linear_sum_assignment(contingency.to_numpy(), maximize=True)
    matching = {
        contingency.columns[c]: contingency.index[r]
        for r, c in zip(rows, cols, strict=True)
    }
    n_misplaced = int(labelled.sum() - contingency.to_numpy()[rows, cols].sum())

    assignment = pd.DataFrame(
        {
            "class": known,
            "component": component,
            "share": share.max(axis=0),
        }
    )
    assignment["misplaced"] = labelled & (
        assignment["component"].map(matching) != assignment["class"]
    )
    assignment.index.name = "sample"
    return ClassAgreement(assignment, contingency, matching, n_misplaced)


# -- any data -----------------------------------------------------------------
def top_features(
    result: NMFResult, n_top: int = 5, dataset: Dataset | None = None
) -> pd.DataFrame:
    """List the features with the largest weights in each column of W.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    n_top : int, default 5
        Features per component.
    dataset : Dataset, optional
        When its ``feature_info`` has a ``description`` column, it is added.

    Returns
    -------
    pandas.DataFrame
        ``n_top`` rows per component: ``component``, ``feature`` and ``weight``
        (its entry of W on the reporting scale, columns summing to one), and
        ``description`` when known.
    """
    W = result.W_frame()
    rows = []
    for name in W.columns:
        for feature, weight in W[name].nlargest(n_top).items():
            rows.append({"component": name, "feature": feature, "weight": weight})
    table = pd.DataFrame(rows, columns=["component", "feature", "weight"])
    info = None if dataset is None else dataset.feature_info
    if info is not None and "description" in info.columns:
        described = info["description"].astype(str)
        table["description"] = [
            _shorten(described.get(f, "")) for f in table["feature"]
        ]
    return table


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# -- posterior intervals -----------------------------------------------------
def posterior_table(
    tree, ci_prob: float = 0.9, *, diagnostics: bool = False
) -> pd.DataFrame:
    """Posterior mean, sd and equal-tailed interval of every entry of W and H.

    Parameters
    ----------
    tree : xarray.DataTree
        From :func:`~bayesnmf.inference_data.to_datatree` of a fit with draws.
    ci_prob : float, default 0.9
        Mass of the central interval.
    diagnostics : bool, default False
        Add ArviZ's ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean`` and
        ``mcse_sd`` (meaningful for MCMC draws; slow for large matrices).

    Returns
    -------
    pandas.DataFrame
        One row per entry, indexed like ArviZ's summary (``W[A[C>A]A, C1]``),
        with the entry's labels in columns ``variable``, ``feature``,
        ``component`` and ``observation`` (empty where the variable has no such
        dimension), then ``mean``, ``sd``, ``eti{p}_lb``, ``eti{p}_ub`` (``p``
        the interval mass in percent) and the diagnostics.
    """
    from .inference_data import posterior_summary

    kind = "all" if diagnostics else "stats"
    summary = posterior_summary(tree, ci_prob=ci_prob, kind=kind, fmt="xarray")
    stats = [str(v) for v in summary["summary"].values]
    parts = []
    for name, dims in (("W", ("feature", "component")),
                       ("H", ("component", "observation"))):
        values = summary[name].transpose(*dims, "summary").values
        index = pd.MultiIndex.from_product(
            [[str(v) for v in summary[d].values] for d in dims], names=dims
        )
        part = pd.DataFrame(values.reshape(-1, len(stats)), index=index,
                            columns=stats).reset_index()
        part.index = [f"{name}[{a}, {b}]" for a, b in
                      zip(part[dims[0]], part[dims[1]], strict=True)]
        part.insert(0, "variable", name)
        parts.append(part)
    labels = ["variable", "feature", "component", "observation"]
    table = pd.concat(parts)[labels + stats]
    table[labels] = table[labels].fillna("")
    table.index.name = "entry"
    return table


def _interval_columns(posterior: pd.DataFrame) -> tuple[str, str]:
    low = next(c for c in posterior.columns if str(c).endswith("_lb"))
    return low, low[: -len("_lb")] + "_ub"


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def exposure_interval_table(posterior: pd.DataFrame) -> pd.DataFrame:
    """Each sample's exposure to each component as ``mean [low, high]``.

    Parameters
    ----------
    posterior : pandas.DataFrame
        From :func:`posterior_table`.

    Returns
    -------
    pandas.DataFrame of str
        One row per sample (observation), one column per component, in the
        order of the fit.
    """
    low, high = _interval_columns(posterior)
    H = posterior[posterior["variable"] == "H"]
    cells = [f"{_number(m)} [{_number(lo)}, {_number(hi)}]"
             for m, lo, hi in zip(H["mean"], H[low], H[high], strict=True)]
    frame = pd.DataFrame({
        "component": H["component"].to_numpy(),
        "sample": H["observation"].to_numpy(),
        "cell": cells,
    })
    table = frame.pivot(index="sample", columns="component", values="cell")
    table = table.loc[pd.unique(frame["sample"]), pd.unique(frame["component"])]
    table.columns.name = None
    return table


def interval_section(
    result: NMFResult,
    posterior: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Each sample's exposures with their credible intervals, as text.

    Parameters
    ----------
    result : NMFResult
        A fit with draws (VI or NUTS).
    posterior : pandas.DataFrame
        From :func:`posterior_table`.
    labels : mapping of str to str, optional
        A name added under each component's heading (its closest reference
        signature, say).

    Returns
    -------
    str
    """
    low, _ = _interval_columns(posterior)
    percent = low.removeprefix("eti").removesuffix("_lb")
    table = exposure_interval_table(posterior)
    if labels:
        table.columns = pd.MultiIndex.from_arrays(
            [list(table.columns), [labels.get(c, "") for c in table.columns]]
        )
    unit = "mutations" if is_sbs96(result.feature_names) else "exposure"
    n_draws = int(np.prod(np.shape(result.draws["H"])[:2]))
    text = (
        f"Each sample's {unit} attributed to each component (H, with the columns "
        f"of W summing to one): mean and equal-tailed {percent}% interval over "
        f"{n_draws} posterior draws ({result.method.upper()})."
        + (" Mean-field VI tends to understate uncertainty; NUTS is the "
           "reference for small data." if result.method == "vi" else "")
    )
    blocks = [
        _heading(f"Exposures with {percent}% intervals: posterior mean [low, high]"),
        textwrap.fill(text, 88),
        "",
        table.to_string(),
    ]
    return "\n".join(blocks)


# -- the whole report ---------------------------------------------------------
def signature_section(
    result: NMFResult, references: Mapping[str, pd.DataFrame] | None = None
) -> str:
    """Closest reference signatures of each component, then the exposures.

    Parameters
    ----------
    result : NMFResult
        A fit whose features are the 96 SBS channels.
    references : mapping of str to pandas.DataFrame, optional
        Reference catalogs by name; default :func:`cosmic_references`.

    Returns
    -------
    str
    """
    matches = signature_matches(result, references)
    names = matches.columns.get_level_values(0).unique()

    # One flat table: per reference, best match, cosine, 2nd match, cosine.
    flat, header = pd.DataFrame(index=matches.index), []
    for name in names:
        for field, title in (("best", name), ("cosine", "cosine"),
                             ("2nd", "2nd"), ("cosine 2nd", "cosine")):
            flat[(name, field)] = matches[(name, field)]
            header.append(title)

    # Exposure columns headed by component and its best match in each reference.
    exposures = exposure_table(result)
    levels = [[*matches.index, "total", "largest"]]
    for name in names:
        levels.append([*(_short(m) for m in matches[(name, "best")]), "", ""])
    exposures.columns = pd.MultiIndex.from_arrays(levels)

    blocks = [
        _heading("Signatures: closest reference signatures (cosine similarity)"),
        flat.to_string(header=header, float_format=lambda v: f"{v:.3f}"),
        "",
        _heading("Exposures: mutations attributed to each signature"),
        exposures.to_string(),
    ]
    return "\n".join(blocks)


def _short(name) -> str:
    """``Signature_13`` (COSMIC v2) as ``Sig13``; other names unchanged."""
    return str(name).replace("Signature_", "Sig")


def class_section(result: NMFResult, classes: pd.Series) -> str:
    """Component of each sample beside its known class, contingency, misplaced.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    classes : pandas.Series
        Class per sample, from :func:`sample_classes`.

    Returns
    -------
    str
    """
    agreement = class_agreement(result, classes)
    assignment = agreement.assignment.copy()
    assignment["misplaced"] = assignment["misplaced"].map({True: "*", False: ""})
    n_known = int(classes.reindex(result.sample_names).notna().sum())
    matching = ", ".join(f"{k} = {c}" for k, c in sorted(agreement.matching.items()))
    blocks = [
        _heading("Samples: dominant component beside the known class"),
        _table(assignment.fillna({"class": "?"}), digits=2),
        "",
        _heading("Contingency table: known class x dominant component"),
        _table(agreement.contingency),
        "",
        f"best one-to-one matching: {matching}",
        f"misplaced samples: {agreement.n_misplaced} of {n_known} (marked *)",
    ]
    return "\n".join(blocks)


def features_section(
    result: NMFResult, n_top: int = 5, dataset: Dataset | None = None
) -> str:
    """Format the heaviest features of each component as a table.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    n_top : int, default 5
        Features per component.
    dataset : Dataset, optional
        Source of feature descriptions.

    Returns
    -------
    str
    """
    table = top_features(result, n_top, dataset)
    return "\n".join(
        [
            _heading(f"Top {n_top} features of each component (W, columns sum to 1)"),
            _table(table, index=False, digits=4),
        ]
    )


def format_report(
    result: NMFResult,
    dataset: Dataset | None = None,
    *,
    classes: pd.Series | Mapping[str, str] | None = None,
    references: Mapping[str, pd.DataFrame] | None = None,
    n_top: int = 5,
    posterior: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Write the readable report of a fit: what the command line prints.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    dataset : Dataset, optional
        The data set it was fitted on (for sample classes and feature
        descriptions).
    classes : pandas.Series or mapping of str to str, optional
        Known class per sample name; overrides the data set's ``class3``.
    references : mapping of str to pandas.DataFrame, optional
        Reference signatures for SBS96 data; default :func:`cosmic_references`.
    n_top : int, default 5
        Features per component listed for data that are not SBS96.
    posterior : pandas.DataFrame, optional
        :func:`posterior_table` of a fit with draws: each sample's exposures
        are reported with their intervals.
    notes : sequence of str
        Lines printed after the fit summary (how the priors were chosen, ...).

    Returns
    -------
    str
        The fit summary and notes, then the signature and exposure tables for
        SBS96 data or the top features otherwise, the exposures with intervals
        when ``posterior`` is given, and the class comparison when classes are
        known.

    Examples
    --------
    >>> import numpy as np, bayesnmf as bn
    >>> from bayesnmf._report import format_report
    >>> X = np.random.default_rng(0).poisson(5.0, size=(20, 10))
    >>> text = format_report(bn.fit_map(X, 2, warn=False))
    >>> text.splitlines()[0].startswith("bayesnmf MAP fit")
    True
    """
    blocks = [fit_section(result)]
    if notes:
        blocks.append("\n".join(textwrap.fill(note, 88) for note in notes))
    labels = None
    if is_sbs96(result.feature_names):
        blocks.append(signature_section(result, references))
        if posterior is not None:
            first = next(iter((references or cosmic_references()).items()))
            match = signature_matches(result, dict([first]))
            labels = {k: _short(v) for k, v in match[(first[0], "best")].items()}
    else:
        blocks.append(features_section(result, n_top, dataset))
    if posterior is not None:
        blocks.append(interval_section(result, posterior, labels))
    known = sample_classes(result, dataset, classes)
    if known is not None:
        blocks.append(class_section(result, known))
    return "\n\n".join(blocks) + "\n"


# -- files --------------------------------------------------------------------
def write_result_files(
    result: NMFResult, folder: str | Path, report: str | None = None
) -> dict[str, Path]:
    """Write a fit's factors, trace, saved result and report into ``folder``.

    Parameters
    ----------
    result : NMFResult
        A fitted model.
    folder : str or pathlib.Path
        Created if needed; files in it are overwritten.
    report : str, optional
        Text for ``summary.txt``; default :func:`format_report` of ``result``.

    Returns
    -------
    dict of str to pathlib.Path
        The files written: ``W.tsv`` (features x components, columns summing to
        one), ``H.tsv`` (components x samples, carrying the scale),
        ``trace.tsv`` (iteration, objective), ``summary.txt`` and
        ``result.npz`` (:meth:`NMFResult.save`; :meth:`NMFResult.load` reads it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in
             ("W.tsv", "H.tsv", "trace.tsv", "summary.txt", "result.npz")}

    W = result.W_frame()
    W.index.name = "feature"
    W.to_csv(paths["W.tsv"], sep="\t")
    H = result.H_frame()
    H.index.name = "component"
    H.to_csv(paths["H.tsv"], sep="\t")
    trace = pd.DataFrame(
        {"iteration": np.asarray(result.trace_iter, dtype=np.int64),
         "objective": np.asarray(result.trace, dtype=np.float64)}
    )
    trace.to_csv(paths["trace.tsv"], sep="\t", index=False)
    text = format_report(result) if report is None else report
    paths["summary.txt"].write_text(text, encoding="utf-8")
    result.save(paths["result.npz"])
    return paths


def write_posterior_files(
    tree, posterior: pd.DataFrame, folder: str | Path
) -> dict[str, Path]:
    """Write the posterior summary table and the DataTree into ``folder``.

    Parameters
    ----------
    tree : xarray.DataTree
        From :func:`~bayesnmf.inference_data.to_datatree`.
    posterior : pandas.DataFrame
        From :func:`posterior_table`.
    folder : str or pathlib.Path
        Created if needed; files in it are overwritten.

    Returns
    -------
    dict of str to pathlib.Path
        ``posterior_summary.tsv`` (one row per entry of W and H: labels, mean,
        sd, interval) and ``posterior.nc`` (NetCDF;
        :func:`~bayesnmf.inference_data.load_datatree` reads it back).
    """
    from .inference_data import save_datatree

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("posterior_summary.tsv", "posterior.nc")}
    posterior.to_csv(paths["posterior_summary.tsv"], sep="\t")
    save_datatree(tree, paths["posterior.nc"])
    return paths
