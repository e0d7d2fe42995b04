"""The ``bayesnmf`` command line.

Each subcommand is a :class:`Command`: a function that adds its sub-parser and
a function that runs it with the parsed arguments and returns an exit status.
To add a subcommand, write those two functions and append a :class:`Command`
to :data:`COMMANDS`; the options shared by fitting commands come from
:func:`add_input_options`, :func:`add_model_options` and
:func:`add_engine_options`, and :func:`load_input` and :func:`build_model` turn
them into data and a model.

Errors in the user's input (``ValueError``, ``TypeError``, ``OSError`` from the
library) are reported as one line, ``bayesnmf: error: ...``, on stderr with
exit status 2; warnings as ``bayesnmf: warning: ...``.
"""

from __future__ import annotations

import argparse
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
from ._init import INITS
from ._report import format_report, write_result_files
from .datasets import Dataset, list_datasets, load_dataset
from .likelihoods import Likelihood, parse_likelihood
from .map import fit_map
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
  bayesnmf fit breast21 -k 5 --restarts 50
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
        "or 1 with --init nndsvd/nndsvda)",
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
        "--init", choices=INITS, default="random", help="starting factors",
    )
    group.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64",
        help="precision of the iterations",
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


def build_model(args: argparse.Namespace, rank: int) -> NMFModel:
    """Build the model named by the options of :func:`add_model_options`."""
    likelihood: Likelihood = _parse(parse_likelihood, args.likelihood, "--likelihood")
    priors = {}
    for factor in ("W", "H"):
        text = getattr(args, f"prior_{factor}")
        option = f"--prior-{factor}"
        if text is None:
            text, option = args.prior, "--prior"
        priors[f"prior_{factor}"] = parse_prior_option(text, option)
    return NMFModel(rank, likelihood, **priors)


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


def _fit(X, model: NMFModel, *, quiet: bool, **settings) -> NMFResult:
    """Run :func:`~bayesnmf.fit_map`, reporting its warnings as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = fit_map(X, model, progress=_show_progress(quiet), **settings)
    for w in caught:
        if issubclass(w.category, UserWarning):
            message = " ".join(str(w.message).split())
            print(f"{PROG}: warning: {message}", file=sys.stderr)
        else:  # not meant for the user of the command line: as Python shows it
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return result


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, flush=True)


# -- fit ----------------------------------------------------------------------
def add_fit_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf fit``."""
    parser = _sub_parser(
        subparsers, "fit",
        help="fit an NMF model to a CSV/TSV file or a bundled data set",
        description=(
            "Fit X ~ W H by MAP estimation (multiplicative updates, several "
            "restarts) and\nreport it. Writes into the output folder: W.tsv "
            "(features x components,\ncolumns sum to 1), H.tsv (components x "
            "samples), trace.tsv (objective by\niteration), summary.txt (the "
            "report) and result.npz (bayesnmf.NMFResult.load\nreads it back). "
            "The report lists the closest COSMIC signatures for SBS96\nmutation "
            "catalogs, the top features of each component otherwise, and "
            "compares\nthe components with known sample classes when there are "
            "some."
        ),
        epilog=(
            "examples:\n"
            "  bayesnmf fit counts.csv -k 4\n"
            "  bayesnmf fit breast21 -k 5 --restarts 50 -o breast-k5\n"
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
    add_output_options(parser, f"{DEFAULT_OUTPUT}/<input name>")
    return parser


def run_fit(args: argparse.Namespace) -> int:
    """Run ``bayesnmf fit``."""
    data = load_input(args.input, transpose=args.transpose)
    classes = read_classes(args.classes) if args.classes is not None else None
    model = build_model(args, args.rank)
    settings = engine_settings(args)
    output = args.output or DEFAULT_OUTPUT / data.name

    result = _fit(data.X, model, quiet=args.quiet, allow_nan=args.missing, **settings)
    report = format_report(result, data.dataset, classes=classes)
    paths = write_result_files(result, output, report)
    names = ", ".join(path.name for path in paths.values())
    _say(f"{report}files in {output}: {names}", args.quiet)
    return 0


# -- demo ---------------------------------------------------------------------
#: Settings of the demo's two fits. Rank 5 for the breast genomes: of ranks 4,
#: 5 and 6 (50 restarts each, seeds 0-2) it gives the best mean cosine to
#: COSMIC v2 and the same five distinct matches at every seed (signatures 1, 2,
#: 3, 8, 13); rank 4 loses signature 8 or 3, rank 6 repeats a match at two seeds
#: of three. The tight tolerance matters: the likelihood is flat near the mode.
DEMO_FITS = {
    "breast21": {
        "rank": 5, "n_restarts": 50, "max_iter": 20000, "tol": 1e-8,
        "note": (
            "21 breast cancer genomes (Nik-Zainal et al. 2012), KL NMF (Poisson "
            "likelihood, flat priors).\nExpected: COSMIC signatures 1, 2, 3, 5, "
            "8 and 13; PD4120a dominated by the APOBEC signatures 2 and 13."
        ),
    },
    "golub": {
        "rank": 3, "n_restarts": 24, "max_iter": 5000, "tol": 1e-6,
        "note": (
            "Golub leukemia expression (5000 genes x 38 samples), KL NMF at rank "
            "3.\nExpected (Brunet et al. 2004): the components separate ALL-B, "
            "ALL-T and AML."
        ),
    },
}


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bayesnmf demo``."""
    parser = _sub_parser(
        subparsers, "demo",
        help="fit the bundled real data sets and report (under a minute)",
        description=(
            "Two classical NMF analyses of bundled real data:\n"
            "  1. mutational signatures of 21 breast cancer genomes (rank "
            f"{DEMO_FITS['breast21']['rank']}, KL NMF), each\n"
            "     matched to COSMIC v3.4 and v2, with every genome's exposures;\n"
            "  2. the Golub leukemia data at rank 3: the component of each "
            "sample beside its\n     known class (ALL-B, ALL-T, AML), the "
            "contingency table and misplaced samples.\n"
            "Each fit writes its files (see 'bayesnmf fit --help') into a "
            "subfolder of\n--output."
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_output_options(parser, f"{DEFAULT_OUTPUT}/demo")
    return parser


def run_demo(args: argparse.Namespace) -> int:
    """Run ``bayesnmf demo``."""
    output = args.output or DEFAULT_OUTPUT / "demo"
    for number, (name, spec) in enumerate(DEMO_FITS.items(), start=1):
        data = load_input(name)
        title = f"[{number}/{len(DEMO_FITS)}] {name}"
        _say(f"{title}\n{'=' * len(title)}\n{spec['note']}\n", args.quiet)

        start = time.perf_counter()
        result = _fit(
            data.X, NMFModel(spec["rank"]), quiet=args.quiet, seed=args.seed,
            n_restarts=spec["n_restarts"], max_iter=spec["max_iter"],
            tol=spec["tol"],
        )
        seconds = time.perf_counter() - start

        report = format_report(result, data.dataset)
        if name == "breast21":
            report += _apobec_note(result, "PD4120a")
        write_result_files(result, output / name, report)
        _say(f"{report}fitted in {seconds:.1f} s; files in {output / name}\n",
             args.quiet)
    return 0


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
