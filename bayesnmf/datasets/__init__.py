"""Real data sets bundled with bayesnmf.

Each loader returns the data in the bayesnmf orientation, ``X`` of shape
``(n_features, n_samples)``, with its labels and annotations:

- :func:`load_golub`: Golub ALL/AML leukemia expression, 5000 genes x 38 samples.
- :func:`load_breast21`: SBS96 mutational catalogs of 21 breast cancer genomes.
- :func:`load_cosmic`: COSMIC v2 or v3.4 reference signatures, 96 channels.
- :func:`load_pbmc`: single-cell UMI counts, 765 genes x 700 blood cells.
- :func:`load_swimmer`, :func:`load_digits`: images as pixels x images.

Provenance and licences are in ``data/PROVENANCE.md`` next to the files.
"""

from bayesnmf.datasets._load import (
    Dataset,
    list_datasets,
    load_breast21,
    load_cosmic,
    load_dataset,
    load_digits,
    load_golub,
    load_pbmc,
    load_swimmer,
)

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
