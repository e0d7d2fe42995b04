"""The ``bayesnmf`` command line.

Each subcommand is a :class:`Command`: a function that adds its sub-parser and
a function that runs it with the parsed arguments and returns an exit status.
To add a subcommand, write those two functions and append a :class:`Command`
to :data:`COMMANDS`; the options shared by fitting commands come from
:func:`add_input_options`, :func:`add_model_options`,
:func:`add_engine_options` and :func:`add_uncertainty_options`, and
:func:`load_input`, :func:`read_data` and :func:`build_model` turn them into
data and a model.

Commands: ``fit`` (one rank, by MAP, VI or NUTS), ``rank`` (compare ranks) and
``demo`` (both on the bundled real data).

Errors in the user's input (``ValueError``, ``TypeError``, ``OSError`` from the
library) are reported as one line, ``bayesnmf: error: ...``, on stderr with
exit status 2; warnings as ``bayesnmf: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import __version__
from ._api import fit, vi_engine
from ._init import INITS
from ._report import (
    cosmic_references,
    format_report,
    posterior_table,
    sample_classes,
    signature_matches,
    write_posterior_files,
    write_result_files,
)
from ._validation import NMFData, as_nmf_data
from .datasets import Dataset, list_datasets, load_dataset
from .likelihoods import Likelihood, parse_likelihood
from .model import NMFModel
from .priors import Prior, parse_prior
from .result import NMFResult

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

PROG = "bayesnmf"
DEFAULT_OUTPUT = Path("bayesnmf-output")

_DESCRIPTION = """\
Bayesian non-negative matrix factorization: X ~ W H with W, H >= 0.

X is a table of non-negative numbers with features as rows (genes, mutation
channels, pixels) and samples as columns (patients, genomes, images). bayesnmf
finds `rank` parts: W (features x rank) holds the parts, each column summing to
one, and H (rank x samples) how much of each part every sample holds. The loss
is a likelihood (Poisson = KL divergence, Gaussian = Frobenius) and the
regularizers are priors on W and H; flat priors give classical NMF.
"""

_EPILOG = """\
examples:
  bayesnmf demo                          signatures of 21 breast cancers and
                                         leukemia classes from the Golub data
  bayesnmf fit counts.csv -k 4           KL NMF of a CSV file, rank 4
  bayesnmf rank counts.csv --ranks 2-8   which rank? stability and held-out
  bayesnmf fit breast21 -k 5 --restarts 50
  bayesnmf fit breast21 -k 5 --method vi exposures with 90% intervals
  bayesnmf fit golub -k 3 --prior exponential:0.1 -o golub-k3
  bayesnmf fit expr.tsv -k 3 --likelihood gaussian --missing --transpose

Run 'bayesnmf COMMAND --help' for the options of a command.
"""


class Command(NamedTuple):
    """A subcommand of the command line.

    Attributes
    ----------
    name : str
        What the user types after ``bayesnmf``.
    add_parser : callable
        ``add_parser(subparsers)`` adds and returns the sub-parser.
    run : callable
        ``run(args)`` does the work and returns the exit status.
    """

    name: str
    add_parser: Callable[[argparse._SubParsersAction], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the description and examples as written; show defaults."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False:
            return text
        if default is argparse.SUPPRESS:
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            text += " (default: %(default)s)"
        return text

    def _split_lines(self, text, width):
        # Keep paths such as bayesnmf-output/... whole.
        text = " ".join(text.split())
        return textwrap.wrap(text, width, break_on_hyphens=False)


def _sub_parser(subparsers, name: str, *, help: str, description: str,
                epilog: str | None = None) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help, description=description, epilog=epilog,
        formatter_class=_Formatter,
    )


# -- shared options -----------------------------------------------------------
def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Add INPUT and the options that say how to read it."""
    names = ", ".join(list_datasets())
    parser.add_argument(
        "input", metavar="INPUT",
        help="CSV/TSV file (first column: feature labels; header: sample "
        "labels; .tsv/.txt are tab-separated, .csv comma-separated, .gz "
        f"allowed) or the name of a bundled data set ({names})",
    )
    parser.add_argument(
        "--transpose", action="store_true",
        help="the file holds samples as rows and features as columns",
    )
    parser.add_argument(
        "--missing", action="store_true",
        help="treat empty and NaN cells as missing data, left out of the fit",
    )
    parser.add_argument(
        "--classes", metavar="FILE", type=Path,
        help="CSV/TSV file with a header, sample names in the first column and "
        "their known class in the second: the report compares them with the "
        "components",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add the likelihood and prior options (not the rank)."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--likelihood", default="poisson", metavar="{poisson,gaussian}",
        help="noise model of X given WH: 'poisson' (alias 'kl', for counts) or "
        "'gaussian' (alias 'frobenius'; the noise scale is estimated, "
        "'gaussian:SCALE' fixes it)",
    )
    group.add_argument(
        "--prior", default="flat", metavar="PRIOR",
        help="prior on every entry of W and H: 'flat' (classical NMF), "
        "'exponential:RATE' (L1), 'halfnormal:SCALE' (L2) or 'gamma:SHAPE,RATE' "
        "(SHAPE >= 1)",
    )
    for factor in ("W", "H"):
        group.add_argument(
            f"--prior-{factor}", metavar="PRIOR",
            help=f"prior on {factor}, overrides --prior",
        )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Add the MAP engine's options: seed, restarts, iterations, ..."""
    group = parser.add_argument_group("fitting")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    group.add_argument(
        "--restarts", type=int, metavar="N",
        help="independent starts, run together; the best is kept (default: 10, "
        "or 1 with --init nndsvd/nndsvda; not used by --method nuts)",
    )
    group.add_argument(
        "--max-iter", type=int, default=5000, metavar="N",
        help="cap on the sweeps over H and W",
    )
    group.add_argument(
        "--tol", type=float, default=1e-6,
        help="stop when the objective's decrease over 10 sweeps is below TOL "
        "times its total decrease",
    )
    group.add_argument(
        "--init", choices=INITS, default="random",
        help="starting factors (--method map only)",
    )
    group.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64",
        help="precision of the iterations",
    )


def add_uncertainty_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--method`` and the options of the engines that give uncertainty."""
    group = parser.add_argument_group("uncertainty")
    group.add_argument(
        "--method", choices=("map", "vi", "nuts"), default="map",
        help="map: the most probable W and H; vi: variational inference "
        "(closed-form for Poisson with exponential/gamma priors, NumPyro's "
        "stochastic VI otherwise); nuts: MCMC, for small data. vi and nuts "
        "need proper priors: flat ones are replaced by weakly informative "
        "gamma/exponential priors, and the report says so",
    )
    group.add_argument(
        "--ci", type=float, default=0.9, metavar="MASS",
        help="mass of the equal-tailed intervals reported (vi, nuts)",
    )
    group.add_argument(
        "--draws", type=int, default=500, metavar="N",
        help="posterior draws (vi), or draws per chain (nuts)",
    )
    group.add_argument(
        "--chains", type=int, default=4, metavar="N", help="NUTS chains",
    )
    group.add_argument(
        "--warmup", type=int, default=500, metavar="N",
        help="NUTS adaptation steps per chain",
    )


def add_output_options(parser: argparse.ArgumentParser, default: str) -> None:
    """Add ``--output`` and ``--quiet``."""
    parser.add_argument(
        "-o", "--output", type=Path, metavar="DIR",
        help=f"folder for the result files (default: {default})",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="print nothing but warnings and errors (files are still written)",
    )


# -- turning options into data and a model ------------------------------------
@dataclass
class Input:
    """Data read from INPUT: a labelled matrix and, for bundled data, its set.

    Attributes
    ----------
    name : str
        Data set name or file stem, used for the default output folder.
    X : pandas.DataFrame of shape (n_features, n_samples)
        The data with its labels.
    dataset : Dataset or None
        The bundled data set, when INPUT named one.
    """

    name: str
    X: pd.DataFrame
    dataset: Dataset | None = None


_SEPARATORS = {".tsv": "\t", ".txt": "\t", ".tab": "\t", ".csv": ","}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")


def _separator(path: Path) -> str | None:
    """Separator given by the extension (after any compression suffix), or None."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION]
    return _SEPARATORS.get(suffixes[-1]) if suffixes else None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return name or path.name


def read_table(path: Path, what: str = "INPUT") -> pd.DataFrame:
    """Read a labelled table: first column the row labels, header the columns.

    Parameters
    ----------
    path : pathlib.Path
        ``.tsv``, ``.txt`` and ``.tab`` files are tab-separated, ``.csv`` files
        comma-separated; other separators are sniffed. Compression is inferred.
    what : str
        How error messages name the file.

    Returns
    -------
    pandas.DataFrame
    """
    if not path.exists():
        raise FileNotFoundError(f"{what}: no such file: {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a folder, expected a file.")
    sep = _separator(path)
    try:
        if sep is None:
            table = pd.read_csv(path, sep=None, engine="python", index_col=0)
        else:
            table = pd.read_csv(path, sep=sep, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise ValueError(f"{what}: could not read {str(path)!r} ({detail}).") from None
    if table.shape[1] == 0:
        raise ValueError(
            f"{what}: {str(path)!r} has no data columns; check the separator (tab "
            "for .tsv/.txt, comma for .csv)."
        )
    return table


def _numeric(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check that every cell is a number (or empty), naming the first that is not."""
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = (values.isna() & table[column].notna()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"INPUT: cell ({table.index[i]!s}, {column!s}) of {str(path)!r} is "
                f"{table[column].iloc[i]!r}, not a number. The first column must "
                "hold the row labels and every other cell a number."
            )
        table[column] = values
    return table.astype(np.float64)


def load_input(source: str, *, transpose: bool = False) -> Input:
    """Read INPUT: a file path, or else the name of a bundled data set.

    Parameters
    ----------
    source : str
        Path of a CSV/TSV file, or a name accepted by
        :func:`bayesnmf.datasets.load_dataset`.
    transpose : bool, default False
        The file holds samples as rows; transpose it to features x samples.

    Returns
    -------
    Input
    """
    path = Path(source)
    if path.exists():
        table = _numeric(read_table(path), path)
        if transpose:
            table = table.T
        table.index = table.index.map(str)
        table.columns = table.columns.map(str)
        return Input(_stem(path), table)

    try:
        dataset = load_dataset(source)
    except ValueError:
        raise FileNotFoundError(
            f"INPUT: {source!r} is neither a file nor a bundled data set (bundled: "
            f"{', '.join(list_datasets())})."
        ) from None
    if transpose:
        raise ValueError(
            "--transpose: bundled data sets are already features x samples; "
            "drop --transpose."
        )
    return Input(dataset.name, dataset.to_frame(), dataset)


def read_classes(path: Path) -> pd.Series:
    """Read a class table: sample names in the first column, classes in the next.

    Parameters
    ----------
    path : pathlib.Path
        CSV/TSV file with a header row.

    Returns
    -------
    pandas.Series
        Class (str) per sample name.
    """
    table = read_table(path, what="--classes")
    classes = table.iloc[:, 0].dropna().astype(str)
    classes.index = classes.index.map(str)
    return classes


def _parse(parse_fn: Callable[[str], object], text: str, option: str):
    """Parse an option's text, rewording library errors to name the option."""
    try:
        return parse_fn(text)
    except TypeError:
        raise ValueError(
            f"{option} {text!r}: wrong number of parameters after ':'."
        ) from None
    except ValueError as err:
        message = re.sub(r"^(likelihood|prior): ", "", str(err))
        raise ValueError(f"{option} {text!r}: {message}") from None


def parse_prior_option(text: str, option: str) -> Prior:
    """Parse a prior option and check that it gives a finite MAP estimate."""
    prior = _parse(parse_prior, text, option)
    try:
        prior.check_map()
    except ValueError as err:
        raise ValueError(f"{option} {text!r}: {err}") from None
    return prior


def build_model(
    args: argparse.Namespace, rank: int, *, check_map: bool = True
) -> NMFModel:
    """Build the model named by the options of :func:`add_model_options`.

    ``check_map=False`` accepts priors that have no finite MAP estimate (a
    gamma shape below one), which posterior sampling and VI can use.
    """
    likelihood: Likelihood = _parse(parse_likelihood, args.likelihood, "--likelihood")
    priors = {}
    for factor in ("W", "H"):
        text = getattr(args, f"prior_{factor}")
        option = f"--prior-{factor}"
        if text is None:
            text, option = args.prior, "--prior"
        if check_map:
            priors[f"prior_{factor}"] = parse_prior_option(text, option)
        else:
            priors[f"prior_{factor}"] = _parse(parse_prior, text, option)
    return NMFModel(rank, likelihood, **priors)


def evidence_model(model: NMFModel, data: NMFData) -> tuple[NMFModel, list[str]]:
    """Replace flat priors by weakly informative ones, for VI and NUTS.

    A posterior needs proper priors. Flat priors on W or H are replaced by
    :func:`~bayesnmf.selection._survey.default_evidence_priors`, chosen so that
    the prior mean of every entry of WH is the mean of X.

    Returns
    -------
    model : NMFModel
        The model with proper priors.
    notes : list of str
        What was replaced, for the report (empty when nothing was).
    """
    from .selection._survey import default_evidence_priors

    flat = [f for f in ("W", "H") if not getattr(model, f"prior_{f}").proper]
    if not flat:
        return model, []
    observed = data.X if data.mask is None else data.X[data.mask > 0]
    defaults = dict(zip(("W", "H"), default_evidence_priors(
        observed, model.rank, model.likelihood), strict=True))
    priors = {f"prior_{f}": defaults[f] if f in flat else getattr(model, f"prior_{f}")
              for f in ("W", "H")}
    replaced = ", ".join(f"{f} ~ {defaults[f].describe()}" for f in flat)
    note = (
        f"priors: a flat prior on {' and '.join(flat)} gives no proper posterior; "
        f"used {replaced} instead (default_evidence_priors: the prior mean of every "
        f"entry of WH equals the mean of X, {float(np.mean(observed)):.4g}). "
        "Give --prior, --prior-W or --prior-H to choose."
    )
    return NMFModel(model.rank, model.likelihood, **priors), [note]


def method_settings(args: argparse.Namespace, model: NMFModel) -> dict:
    """Keyword arguments of the engine that ``--method`` selects for ``model``."""
    method = args.method
    if method == "map":
        return engine_settings(args)
    if args.init != "random":
        raise ValueError(
            f"--init {args.init}: only --method map starts from it; drop --init."
        )
    if args.draws < 1:
        raise ValueError(
            f"--draws {args.draws}: expected at least 1 posterior draw."
        )
    if method == "nuts":
        return {"num_chains": args.chains, "num_warmup": args.warmup,
                "num_samples": args.draws, "seed": args.seed, "dtype": args.dtype}
    engine = vi_engine(model)
    if engine == "svi":
        # NumPyro's stochastic VI: --max-iter counts optimisation steps.
        return {"num_steps": args.max_iter, "num_draws": args.draws,
                "seed": args.seed, "dtype": args.dtype}
    settings = {"n_restarts": args.restarts or 10, "seed": args.seed,
                "max_iter": args.max_iter, "tol": args.tol,
                "num_draws": args.draws}
    if engine == "cavi-poisson-gamma":
        settings["dtype"] = args.dtype
    return settings


def engine_settings(args: argparse.Namespace) -> dict:
    """Turn the fitting options into keyword arguments of :func:`~bayesnmf.fit_map`."""
    restarts = args.restarts
    if restarts is None:
        restarts = 1 if args.init in ("nndsvd", "nndsvda") else 10
    return {
        "n_restarts": restarts,
        "seed": args.seed,
        "init": args.init,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "dtype": args.dtype,
    }


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def warnings_as_lines():
    """Print the user warnings raised inside as ``bayesnmf: warning: ...``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            # Shown even when the block fails, so that the cause is not lost.
            for w in caught:
                if issubclass(w.category, UserWarning):
                    message = " ".join(str(w.message).split())
                    print(f"{PROG}: warning: {message}", file=sys.stderr)
                else:  # not meant for the user of the command line
                    warnings.showwarning(w.message, w.category, w.filename,
                                         w.lineno)


def read_data(X: pd.DataFrame, missing: bool) -> NMFData:
    """Check the data; with ``missing``, NaN cells become unobserved entries."""
    with warnings_as_lines():
        return as_nmf_data(X, allow_nan=missing)


def _fit(X, model: NMFModel, *, quiet: bool, method: str = "map",
         **settings) -> NMFResult:
    """Run :func:`~bayesnmf.fit`, reporting its warnings as one line each."""
    with warnings_as_lines():
        return fit(X, model, method=method, progress=_show_progress(quiet),
                   **settings)


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, flush=True)


def _check_ci(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"--ci {value:g}: expected the mass of the interval, between 0 and 1 "
            "(such as 0.9)."
        )
    return value


#: Largest number of pointwise log-likelihood values (draws x entries) that
#: ``posterior.nc`` stores; beyond it the group is left out (8 bytes each).
LOG_LIKELIHOOD_LIMIT = 10_000_000


def posterior_outputs(result: NMFResult, data: NMFData, ci_prob: float):
    """The DataTree of a fit with draws, its summary table, and notes.

    Returns
    -------
    tree : xarray.DataTree
        With the ``log_likelihood`` group when it has at most
        :data:`LOG_LIKELIHOOD_LIMIT` values.
    posterior : pandas.DataFrame
        :func:`~bayesnmf._report.posterior_table`; with ArviZ's diagnostics for
        NUTS.
    notes : list of str
    """
    from .inference_data import to_datatree

    n_draws = int(np.prod(np.shape(result.draws["H"])[:2]))
    n_values = n_draws * data.shape[0] * data.shape[1]
    keep = n_values <= LOG_LIKELIHOOD_LIMIT
    with warnings_as_lines():
        tree = to_datatree(result, data, mask=data.mask, log_likelihood=keep)
        posterior = posterior_table(tree, ci_prob, diagnostics=result.method == "nuts")
    notes = [] if keep else [
        f"posterior.nc: the pointwise log-likelihood ({n_draws} draws x "
        f"{data.shape[0] * data.shape[1]} entries) is left out; use fewer --draws "
        "to keep it (needed for PSIS-LOO)."
    ]
    return tree, posterior, notes


# -- fit ----------------------------------------------------------------------
def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf fit``."""
    parser = _sub_parser(
        subparsers, "fit",
        help="fit an NMF model to a CSV/TSV file or a bundled data set",
        description=(
            "Fit X ~ W H and report it. --method map (default) finds the most "
            "probable\nfactors by multiplicative updates with several restarts; "
            "--method vi (variational\ninference) and --method nuts (MCMC, for "
            "small data) also give their uncertainty.\n\n"
            "Writes into the output folder: W.tsv (features x components, "
            "columns sum to 1),\nH.tsv (components x samples), trace.tsv "
            "(objective by iteration), summary.txt\n(the report) and result.npz "
            "(bayesnmf.NMFResult.load reads it back); with vi or\nnuts also "
            "posterior_summary.tsv (mean, sd and interval of every entry of W "
            "and H)\nand posterior.nc (the ArviZ DataTree; "
            "bayesnmf.inference_data.load_datatree reads\nit back). The report "
            "lists the closest COSMIC signatures for SBS96 mutation\ncatalogs, "
            "the top features of each component otherwise, each sample's "
            "exposures\nwith intervals for vi and nuts, and compares the "
            "components with known sample\nclasses when there are some."
        ),
        epilog=(
            "examples:\n"
            "  bayesnmf fit counts.csv -k 4\n"
            "  bayesnmf fit breast21 -k 5 --restarts 50 -o breast-k5\n"
            "  bayesnmf fit breast21 -k 5 --method vi --ci 0.95\n"
            "  bayesnmf fit golub -k 3 --prior-H exponential:0.001\n"
            "  bayesnmf fit expr.tsv -k 3 --likelihood gaussian --classes "
            "labels.csv\n"
        ),
    )
    add_input_options(parser)
    parser.add_argument(
        "-k", "--rank", type=int, required=True, help="number of components",
    )
    add_model_options(parser)
    add_engine_options(parser)
    add_uncertainty_options(parser)
    add_output_options(parser, f"{DEFAULT_OUTPUT}/<input name>")
    return parser


def run_fit(args: argparse.Namespace) -> int:
    """Run ``bayesnmf fit``."""
    data = load_input(args.input, transpose=args.transpose)
    classes = read_classes(args.classes) if args.classes is not None else None
    ci_prob = _check_ci(args.ci)
    model = build_model(args, args.rank, check_map=args.method == "map")
    X = read_data(data.X, args.missing)
    notes = []
    if args.method != "map":
        model, notes = evidence_model(model, X)
    settings = method_settings(args, model)
    output = args.output or DEFAULT_OUTPUT / data.name

    result = _fit(X, model, method=args.method, quiet=args.quiet, **settings)
    tree = posterior = None
    if result.draws:
        tree, posterior, more = posterior_outputs(result, X, ci_prob)
        notes += more
    report = format_report(result, data.dataset, classes=classes,
                           posterior=posterior, notes=notes)
    paths = write_result_files(result, output, report)
    if tree is not None:
        paths.update(write_posterior_files(tree, posterior, output))
    names = ", ".join(path.name for path in paths.values())
    _say(f"{report}files in {output}: {names}", args.quiet)
    return 0


# -- rank ---------------------------------------------------------------------
def parse_ranks(text: str) -> list[int]:
    """Parse ``--ranks``: ``"2-8"``, ``"2,3,5"`` or a mix such as ``"2-4,6"``.

    Returns
    -------
    list of int
        The ranks, sorted, each once.
    """
    ranks: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"--ranks {text!r}: expected ranks such as 2-8, 2,3,5 or 2-4,6."
            )
        low = int(match[1])
        high = low if match[2] is None else int(match[2])
        if low > high:
            raise ValueError(
                f"--ranks {text!r}: the range {low}-{high} is empty; write the "
                f"smaller rank first ({high}-{low})."
            )
        if low < 1:
            raise ValueError(f"--ranks {text!r}: ranks start at 1.")
        ranks.update(range(low, high + 1))
    return sorted(ranks)


_SURVEY_OPTIONS = {"ranks": "--ranks", "criteria": "--criteria",
                   "n_restarts": "--restarts", "n_folds": "--folds"}


def run_survey(X: NMFData, ranks: Sequence[int], *, quiet: bool, **settings):
    """Run :func:`~bayesnmf.selection.rank_survey`, naming options in errors."""
    from .selection import rank_survey

    try:
        with warnings_as_lines():
            return rank_survey(X, ranks, progress=_show_progress(quiet), **settings)
    except ValueError as err:
        message = str(err)
        for argument, option in _SURVEY_OPTIONS.items():
            if message.startswith(f"{argument}:"):
                message = option + message[len(argument):]
                break
        raise ValueError(message) from None


def write_survey_files(survey, folder: Path, classes: pd.Series | None = None
                       ) -> list[Path]:
    """Write a survey's tables, recommendation and plots into ``folder``.

    Returns the files written: ``criteria.tsv``, ``recommendation.txt``,
    ``consensus_rank<r>.tsv`` per rank, ``criteria.png`` and, with the
    stability criterion, ``consensus.png`` (known classes as a colour strip).
    """
    from .plotting import plot_consensus, plot_rank_criteria

    survey.save(folder)
    paths = [folder / "criteria.tsv", folder / "recommendation.txt"]
    paths += [folder / f"consensus_rank{r}.tsv" for r in survey.consensus]
    paths.append(folder / "criteria.png")
    plot_rank_criteria(survey, path=paths[-1])
    if survey.consensus:
        paths.append(folder / "consensus.png")
        plot_consensus(survey, classes=classes, path=paths[-1])
    return paths


def _survey_classes(survey, dataset: Dataset | None, classes) -> pd.Series | None:
    """Known classes of the surveyed samples, for the consensus plot."""
    if not survey.fits:
        return None
    return sample_classes(next(iter(survey.fits.values())), dataset, classes)


def add_rank_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf rank``."""
    parser = _sub_parser(
        subparsers, "rank",
        help="compare ranks: stability and held-out evidence",
        description=(
            "Fit every rank in --ranks with many restarts and compare them:\n"
            "  fit          the best negative log-likelihood (falls as the rank "
            "grows);\n"
            "  stability    consensus of samples across restarts (cophenetic "
            "correlation,\n"
            "               dispersion; Brunet et al. 2004) and silhouette of "
            "components;\n"
            "  heldout      log density of entries held out by K-fold cross-"
            "validation;\n"
            "  elbo         variational evidence lower bound (+ log r!).\n"
            "The recommended rank and the rule that chose it are printed.\n\n"
            "Writes into the output folder: criteria.tsv (one row per rank), "
            "recommendation.txt,\nconsensus_rank<r>.tsv (samples x samples), "
            "criteria.png and consensus.png."
        ),
        epilog=(
            "examples:\n"
            "  bayesnmf rank breast21 --ranks 2-8\n"
            "  bayesnmf rank golub --ranks 2-5 --criteria stability\n"
            "  bayesnmf rank counts.csv --ranks 2,3,5 --criteria "
            "stability,heldout,elbo\n"
        ),
    )
    add_input_options(parser)
    parser.add_argument(
        "--ranks", default="2-8",
        help="ranks to compare: a range (2-8), a list (2,3,5) or both (2-4,6)",
    )
    parser.add_argument(
        "--criteria", default="stability,heldout",
        help="comma-separated criteria: stability, heldout, elbo",
    )
    add_model_options(parser)
    group = parser.add_argument_group("fitting")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    group.add_argument(
        "--restarts", type=int, default=50, metavar="N",
        help="restarts per rank, for the fit and stability criteria",
    )
    group.add_argument(
        "--folds", type=int, default=5, metavar="K",
        help="folds of the held-out criterion",
    )
    group.add_argument(
        "--heldout-restarts", type=int, default=5, metavar="N",
        help="restarts per fold of the held-out criterion",
    )
    group.add_argument(
        "--evidence-restarts", type=int, default=10, metavar="N",
        help="restarts of the variational fits of the elbo criterion",
    )
    group.add_argument(
        "--max-iter", type=int, default=2000, metavar="N",
        help="cap on the sweeps of each fit",
    )
    group.add_argument(
        "--tol", type=float, default=1e-5,
        help="relative tolerance of each fit",
    )
    group.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32",
        help="precision of the fits (the criteria are computed in float64)",
    )
    add_output_options(parser, f"{DEFAULT_OUTPUT}/<input name>-rank")
    return parser


def run_rank(args: argparse.Namespace) -> int:
    """Run ``bayesnmf rank``."""
    data = load_input(args.input, transpose=args.transpose)
    classes = read_classes(args.classes) if args.classes is not None else None
    ranks = parse_ranks(args.ranks)
    criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]
    model = build_model(args, ranks[0])
    X = read_data(data.X, args.missing)
    output = args.output or DEFAULT_OUTPUT / f"{data.name}-rank"

    survey = run_survey(
        X, ranks, quiet=args.quiet, likelihood=model.likelihood,
        prior_W=model.prior_W, prior_H=model.prior_H, n_restarts=args.restarts,
        seed=args.seed, criteria=criteria, n_folds=args.folds,
        heldout_restarts=args.heldout_restarts,
        evidence_restarts=args.evidence_restarts, max_iter=args.max_iter,
        tol=args.tol, dtype=args.dtype,
    )
    known = _survey_classes(survey, data.dataset, classes)
    paths = write_survey_files(survey, output, known)
    names = ", ".join(path.name for path in paths)
    _say(f"{_table_text(survey)}\nfiles in {output}: {names}", args.quiet)
    return 0


#: Survey columns left out of the printed table (criteria.tsv has them all).
_QUIET_COLUMNS = ("restarts_converged", "divergence", "pac", "heldout_se",
                  "heldout_lpd_per_entry")


def _number_text(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _table_text(survey) -> str:
    """The survey's main criteria, the recommended rank and the rule, as text."""
    table = survey.table.drop(columns=[c for c in _QUIET_COLUMNS
                                       if c in survey.table.columns])
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        text = table.to_string(float_format=_number_text)
    rank = survey.recommended_rank
    rule = textwrap.fill(survey.rule, 88)
    return (
        f"Rank survey: {survey.settings.get('model', '')}\n{text}\n\n"
        f"Recommended rank: {rank if rank is not None else 'none'}\n{rule}\n"
    )


# -- demo ---------------------------------------------------------------------
#: Settings of the demo. Breast genomes: ranks 2-8 are surveyed (stability and
#: 5-fold held-out log density), the recommended rank is fitted by closed-form
#: Poisson-gamma VI. Golub: ranks 2-5 by consensus stability alone, Brunet's
#: rule; 20 restarts per rank instead of Brunet's 50 keep the demo short (the
#: table is the same to the second decimal at 50).
DEMO_FITS = {
    "breast21": {
        "ranks": (2, 8),
        "survey": {"criteria": ("stability", "heldout"), "n_restarts": 50,
                   "max_iter": 2000},
        "vi": {"n_restarts": 10, "max_iter": 5000, "num_draws": 1000},
        "note": (
            "21 breast cancer genomes (Nik-Zainal et al. 2012), Poisson likelihood "
            "(KL NMF).\nThe rank comes from a survey of ranks 2-8 (stability of "
            "restarts, held-out log\ndensity); that rank is then fitted by "
            "closed-form variational inference, which\ngives each genome's "
            "exposures with 90% intervals. Expected: COSMIC signatures\n"
            "among 1, 2, 3, 5, 8 and 13; PD4120a dominated by the APOBEC "
            "signatures 2 and 13."
        ),
    },
    "golub": {
        "ranks": (2, 5),
        "survey": {"criteria": ("stability",), "n_restarts": 20, "max_iter": 2000},
        "restarts_note": (
            "Brunet et al. used 50 restarts per rank; 20 keep the demo short and "
            "give the same\ncophenetic correlations to two decimals and the same "
            "rank."
        ),
        "note": (
            "Golub leukemia expression (5000 genes x 38 samples), KL NMF. The rank "
            "comes from\nthe consensus of restarts at ranks 2-5 (Brunet et al. "
            "2004: the rank before the\ncophenetic correlation falls; expected 3)."
            " Expected at rank 3: the components\nseparate ALL-B, ALL-T and AML."
        ),
    },
}


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf compare``."""
    parser = _sub_parser(
        subparsers, "compare",
        help="compare likelihoods (losses) by held-out predictive evidence",
        description=(
            "Fit several likelihoods at one rank to the same data and rank them by\n"
            "the log density of entries held out by K-fold cross-validation (the\n"
            "same folds for every likelihood; paired standard errors). On integer\n"
            "data a continuous likelihood (gaussian, gamma) is scored by the mass\n"
            "it puts on [x - 1/2, x + 1/2], so that every model gives a probability.\n"
            "With --loo, each model is also fitted by variational inference and\n"
            "compared by PSIS-LOO (ArviZ).\n\n"
            "Writes into the output folder: comparison.tsv, comparison.txt,\n"
            "comparison.png and, with --loo, loo_compare.tsv."
        ),
        epilog=(
            "examples:\n"
            "  bayesnmf compare breast21 -k 5\n"
            "  bayesnmf compare pbmc -k 8 --likelihoods poisson,negbinomial,gaussian\n"
            "  bayesnmf compare spectra.tsv -k 4 --likelihoods gaussian,gamma\n"
        ),
    )
    add_input_options(parser)
    parser.add_argument("-k", "--rank", type=int, required=True,
                        help="number of components")
    parser.add_argument(
        "--likelihoods", default="gaussian,poisson,negbinomial",
        help="comma-separated likelihoods: gaussian, poisson, negbinomial, gamma",
    )
    group = parser.add_argument_group("fitting")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    group.add_argument("--folds", type=int, default=5, metavar="K",
                       help="folds of entry-wise cross-validation")
    group.add_argument("--restarts", type=int, default=5, metavar="N",
                       help="MAP restarts per fold and likelihood")
    group.add_argument("--method", choices=("map", "vi"), default="map",
                       help="score at the MAP fit (plug-in) or by the variational "
                       "posterior predictive")
    group.add_argument("--loo", action="store_true",
                       help="also compare PSIS-LOO of variational fits")
    group.add_argument("--max-iter", type=int, default=2000, metavar="N",
                       help="cap on the sweeps of each fit")
    group.add_argument("--tol", type=float, default=1e-5,
                       help="relative tolerance of each fit")
    add_output_options(parser, f"{DEFAULT_OUTPUT}/<input name>-compare")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Run ``bayesnmf compare``."""
    from .plotting import plot_likelihood_comparison
    from .selection._compare import compare_likelihoods

    data = load_input(args.input, transpose=args.transpose)
    X = read_data(data.X, args.missing)
    names = [t.strip() for t in args.likelihoods.split(",") if t.strip()]
    models = {name: _parse(parse_likelihood, name, "--likelihoods") for name in names}
    output = Path(args.output or DEFAULT_OUTPUT / f"{data.name}-compare")
    with warnings_as_lines():
        result = compare_likelihoods(
            X, models, rank=args.rank, n_folds=args.folds, n_restarts=args.restarts,
            seed=args.seed, loo=args.loo, method=args.method,
            max_iter=args.max_iter, tol=args.tol,
        )
    output.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(output / "comparison.tsv", sep="\t")
    text = result.summary()
    (output / "comparison.txt").write_text(text + "\n")
    files = ["comparison.tsv", "comparison.txt", "comparison.png"]
    plot_likelihood_comparison(result, path=output / "comparison.png")
    if result.loo_table is not None:
        result.loo_table.to_csv(output / "loo_compare.tsv", sep="\t")
        files.append("loo_compare.tsv")
    _say(f"{text}\nfiles in {output}: {', '.join(files)}", args.quiet)
    return 0


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf demo``."""
    parser = _sub_parser(
        subparsers, "demo",
        help="choose the rank and fit the bundled real data sets (a few minutes)",
        description=(
            "Two analyses of bundled real data, from the choice of rank to the "
            "report:\n"
            "  1. mutational signatures of 21 breast cancer genomes: a rank "
            "survey (2-8,\n"
            "     stability and held-out evidence) chooses the rank, VI fits it; "
            "each\n"
            "     signature is matched to COSMIC v3.4 and v2 and each genome's "
            "exposures\n"
            "     are given with 90% intervals;\n"
            "  2. the Golub leukemia data: the consensus of restarts at ranks 2-5 "
            "chooses\n"
            "     the rank (Brunet et al. 2004), then the component of each "
            "sample beside\n"
            "     its known class (ALL-B, ALL-T, AML), the contingency table and "
            "misplaced\n     samples.\n"
            "Each writes its files (see 'bayesnmf rank --help' and 'bayesnmf fit "
            "--help')\nand plots into a subfolder of --output."
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_output_options(parser, f"{DEFAULT_OUTPUT}/demo")
    return parser


def run_demo(args: argparse.Namespace) -> int:
    """Run ``bayesnmf demo``."""
    output = args.output or DEFAULT_OUTPUT / "demo"
    begin = time.perf_counter()
    for number, (name, spec) in enumerate(DEMO_FITS.items(), start=1):
        data = load_input(name)
        folder = output / name
        title = f"[{number}/{len(DEMO_FITS)}] {name}"
        _say(f"{title}\n{'=' * len(title)}\n{spec['note']}\n", args.quiet)

        start = time.perf_counter()
        low, high = spec["ranks"]
        X = read_data(data.X, missing=False)
        survey = run_survey(X, range(low, high + 1), quiet=args.quiet,
                            seed=args.seed, **spec["survey"])
        known = _survey_classes(survey, data.dataset, None)
        write_survey_files(survey, folder, known)
        rank = survey.recommended_rank
        fallback = ""
        if rank is None:
            rank = low
            fallback = f"\nNo rank was recommended; rank {rank} is used.\n"
        settings = survey.settings
        note = f"{spec['restarts_note']}\n" if "restarts_note" in spec else ""
        _say(f"Ranks {low}-{high}, {settings['n_restarts']} restarts per rank; "
             f"criteria: {', '.join(settings['criteria'])}\n{note}"
             f"{_table_text(survey)}{fallback}", args.quiet)

        if name == "breast21":
            report = _demo_signatures(X, data, rank, spec, args, folder)
        else:
            result = survey.fits[rank]
            report = format_report(result, data.dataset)
            write_result_files(result, folder, report)
        seconds = time.perf_counter() - start
        _say(f"{report}done in {seconds:.1f} s; files and plots in {folder}\n",
             args.quiet)
    _say(f"demo finished in {time.perf_counter() - begin:.0f} s", args.quiet)
    return 0


def _demo_signatures(X: NMFData, data: Input, rank: int, spec: dict,
                     args: argparse.Namespace, folder: Path) -> str:
    """Fit the breast genomes by VI at ``rank``; write files and plots."""
    from .plotting import plot_exposures, plot_signatures

    model, notes = evidence_model(NMFModel(rank), X)
    result = _fit(X, model, method="vi", quiet=args.quiet, seed=args.seed,
                  **spec["vi"])
    tree, posterior, more = posterior_outputs(result, X, 0.9)
    report = format_report(result, data.dataset, posterior=posterior,
                           notes=notes + more)
    report += _apobec_note(result, "PD4120a")
    write_result_files(result, folder, report)
    write_posterior_files(tree, posterior, folder)

    references = cosmic_references()
    plot_signatures(result, references=references, path=folder / "signatures.png")
    first = next(iter(references))
    match = signature_matches(result, {first: references[first]})[(first, "best")]
    labels = [f"{k} ({match[k]})" for k in result.component_names]
    plot_exposures(result, X, log_scale=True, component_labels=labels,
                   path=folder / "exposures.png")
    return report


def _apobec_note(result: NMFResult, genome: str) -> str:
    """Say how the main signature of ``genome`` mixes COSMIC SBS2 and SBS13."""
    from scipy.optimize import nnls

    from .datasets import load_cosmic

    apobec = load_cosmic("3.4")[["SBS2", "SBS13"]]
    W = result.W_frame().loc[apobec.index]
    k = result.H_frame()[genome].idxmax()
    weights, _ = nnls(apobec.to_numpy(), W[k].to_numpy())
    mixture = apobec.to_numpy() @ weights
    cosine = mixture @ W[k] / (np.linalg.norm(mixture) * np.linalg.norm(W[k]))
    share = weights / weights.sum()
    return (
        f"\n{genome}: its main signature {k} is {share[0]:.2f} SBS2 + "
        f"{share[1]:.2f} SBS13 (APOBEC), cosine {cosine:.3f} to that mixture.\n"
    )


#: The subcommands, in the order ``--help`` lists them.
COMMANDS: list[Command] = [
    Command("fit", add_fit_parser, run_fit),
    Command("rank", add_rank_parser, run_rank),
    Command("compare", add_compare_parser, run_compare),
    Command("demo", add_demo_parser, run_demo),
]


# -- entry point --------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Build the ``bayesnmf`` parser, a sub-parser for each of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND",
    )
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a usage or input error (reported as one
        line on stderr), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2

    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout left (as in 'bayesnmf fit ... | head'); the files
        # are written. Point stdout at devnull so exiting does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError) as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    return " ".join(str(err).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
