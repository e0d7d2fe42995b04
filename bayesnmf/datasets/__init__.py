"""Real data sets bundled with bayesnmf.

Each loader returns the data in the bayesnmf orientation, ``X`` of shape
``(n_features, n_samples)``, with its labels and annotations:

- :func:`load_golub`: Golub ALL/AML leukemia expression, 5000 genes x 38 samples.
- :func:`load_breast21`: SBS96 mutational catalogs of 21 breast cancer genomes.
- :func:`load_cosmic`: COSMIC v2 or v3.4 reference signatures, 96 channels.

Provenance and licences are in ``data/PROVENANCE.md`` next to the files.
"""

from bayesnmf.datasets._load import (
    Dataset,
    list_datasets,
    load_breast21,
    load_cosmic,
    load_dataset,
    load_golub,
)

__all__ = [
    "Dataset",
    "list_datasets",
    "load_breast21",
    "load_cosmic",
    "load_dataset",
    "load_golub",
]
