"""The ``bayesnmf`` command line, run in-process through ``bayesnmf.cli.main``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesnmf import NMFModel, NMFResult, cli
from bayesnmf._report import class_agreement

# Few sweeps keep every fit under a second; convergence is not what is tested.
FAST = ["--restarts", "2", "--max-iter", "30", "-q"]


@pytest.fixture
def blocks():
    """12 features x 8 samples: samples s0-s3 use part 1 only, s4-s7 part 2 only."""
    rng = np.random.default_rng(7)
    W = np.zeros((12, 2))
    W[:6, 0] = rng.uniform(1, 2, 6)
    W[6:, 1] = rng.uniform(1, 2, 6)
    H = np.zeros((2, 8))
    H[0, :4] = rng.uniform(20, 40, 4)
    H[1, 4:] = rng.uniform(20, 40, 4)
    X = rng.poisson(W @ H + 0.1).astype(float)
    return pd.DataFrame(
        X,
        index=[f"gene{i}" for i in range(12)],
        columns=[f"patient{j}" for j in range(8)],
    )


def run(*args):
    return cli.main([str(a) for a in args])


def read_tsv(path):
    return pd.read_csv(path, sep="\t", index_col=0)


def test_fit_csv_keeps_labels(blocks, tmp_path, capsys):
    data = tmp_path / "counts.csv"
    blocks.to_csv(data)
    out = tmp_path / "out"

    assert run("fit", data, "-k", 2, "-o", out, "--restarts", 2, "--max-iter", 30) == 0

    W, H = read_tsv(out / "W.tsv"), read_tsv(out / "H.tsv")
    assert list(W.index) == list(blocks.index)
    assert list(W.columns) == ["C1", "C2"]
    assert list(H.index) == ["C1", "C2"]
    assert list(H.columns) == list(blocks.columns)
    assert_allclose(W.sum(axis=0), 1.0, rtol=1e-12)
    report = capsys.readouterr().out
    assert "data: 12 features x 8 samples" in report
    assert "Top 5 features" in report and "gene" in report
    assert (out / "summary.txt").read_text() in report


def test_fit_tsv_transposed(blocks, tmp_path):
    data = tmp_path / "samples_by_genes.tsv"
    blocks.T.to_csv(data, sep="\t")

    assert run("fit", data, "-k", 2, "--transpose", "-o", tmp_path, *FAST) == 0

    assert list(read_tsv(tmp_path / "W.tsv").index) == list(blocks.index)
    assert list(read_tsv(tmp_path / "H.tsv").columns) == list(blocks.columns)


def test_default_output_folder_is_named_after_input(blocks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks.to_csv("my_counts.csv.gz")

    assert run("fit", "my_counts.csv.gz", "-k", 2, *FAST) == 0

    assert (tmp_path / "bayesnmf-output" / "my_counts" / "W.tsv").exists()


def test_result_file_equals_the_tables(blocks, tmp_path):
    data = tmp_path / "counts.csv"
    blocks.to_csv(data)

    assert run("fit", data, "-k", 2, "-o", tmp_path, "--seed", 3, *FAST) == 0

    result = NMFResult.load(tmp_path / "result.npz")
    assert result.settings["seed"] == 3 and result.settings["n_restarts"] == 2
    # The tables are written with round-trip float formatting: exact.
    assert_array_equal(read_tsv(tmp_path / "W.tsv").to_numpy(), result.W)
    assert_array_equal(read_tsv(tmp_path / "H.tsv").to_numpy(), result.H)
    trace = pd.read_csv(tmp_path / "trace.tsv", sep="\t")
    assert_array_equal(trace["iteration"], result.trace_iter)
    assert_array_equal(trace["objective"], result.trace)
    assert result.sample_names == list(blocks.columns)


def test_missing_cells(blocks, tmp_path, capsys):
    data = tmp_path / "holes.csv"
    holes = blocks.astype(object)
    holes.iloc[1, 2] = ""
    holes.iloc[5, 0] = "NaN"
    holes.to_csv(data)

    code = run("fit", data, "-k", 2, "--missing", "--likelihood", "frobenius",
               "-o", tmp_path, "--restarts", 2, "--max-iter", 30)

    assert code == 0
    assert "missing entries: 2 of 96" in capsys.readouterr().out
    assert NMFResult.load(tmp_path / "result.npz").settings["n_observed"] == 94


def test_classes_file_gives_contingency_table(blocks, tmp_path, capsys):
    data, labels = tmp_path / "counts.csv", tmp_path / "classes.csv"
    blocks.to_csv(data)
    classes = pd.Series(["early"] * 4 + ["late"] * 4, index=blocks.columns)
    classes.rename_axis("sample").rename("stage").to_csv(labels)

    code = run("fit", data, "-k", 2, "--classes", labels, "-o", tmp_path,
               "--restarts", 4, "--max-iter", 300)

    assert code == 0
    report = capsys.readouterr().out
    assert "Contingency table" in report
    # The planted blocks are disjoint: every sample falls in its class's part.
    assert "misplaced samples: 0 of 8" in report


def test_bundled_golub_reports_classes(tmp_path, capsys):
    code = run("fit", "golub", "-k", 3, "-o", tmp_path, "--restarts", 2,
               "--max-iter", 20)

    assert code == 0
    report = capsys.readouterr().out
    assert "data: 5000 features x 38 samples" in report
    assert "Contingency table: known class x dominant component" in report
    for name in ("ALL-B", "ALL-T", "AML", "misplaced samples:", "ALL_19769_B-cell"):
        assert name in report
    assert read_tsv(tmp_path / "W.tsv").shape == (5000, 3)


def test_breast21_report_names_cosmic_signatures(tmp_path, capsys):
    code = run("fit", "breast21", "-k", 3, "-o", tmp_path, "--restarts", 2,
               "--max-iter", 50)

    assert code == 0
    report = capsys.readouterr().out
    assert "COSMIC v3.4" in report and "COSMIC v2" in report
    assert "SBS" in report and "Signature_" in report
    assert "Exposures" in report and "PD4120a" in report and "fraction" in report


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("negative", ["-k", "2"], "expected non-negative entries"),
        ("none", ["-k", "2"], "neither a file nor a bundled data set"),
        ("good", ["-k", "0"], "rank: expected an integer >= 1, got 0"),
        ("good", ["-k", "2", "--likelihood", "laplace"], "--likelihood 'laplace'"),
        ("good", ["-k", "2", "--prior", "gamma:0.5"], "shape >= 1"),
        ("good", ["-k", "2", "--prior-W", "cauchy"], "--prior-W 'cauchy'"),
        ("nan", ["-k", "2"], "--missing"),
        ("text", ["-k", "2"], "not a number"),
        ("good", ["-k", "2", "--classes", "absent.csv"], "--classes: no such file"),
        ("good", ["-k", "2", "--method", "vi", "--ci", "1.5"], "--ci 1.5: expected"),
        ("good", ["-k", "2", "--method", "vi", "--draws", "0"], "--draws 0"),
        ("good", ["-k", "2", "--method", "vi", "--init", "nndsvd"],
         "--init nndsvd: only --method map"),
    ],
    ids=["negative-entry", "missing-file", "rank-0", "unknown-likelihood",
         "improper-map-prior", "unknown-prior", "nan-without-missing",
         "text-cell", "missing-classes-file", "ci-above-one", "no-draws",
         "init-with-vi"],
)
def test_bad_input_is_one_line_on_stderr(blocks, tmp_path, capsys, make, args,
                                         message):
    path = tmp_path / f"{make}.csv"
    table = blocks.astype(object)
    if make == "negative":
        table.iloc[3, 4] = -2
    elif make == "nan":
        table.iloc[3, 4] = np.nan
    elif make == "text":
        table.iloc[3, 4] = "n/a?"
    if make != "none":
        table.to_csv(path)

    code = run("fit", path, *args, "-o", tmp_path / "out", "-q")

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith("bayesnmf: error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(capsys):
    assert cli.main(["fit", "golub"]) == 2  # no --rank
    assert "required: -k/--rank" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert "fit" in capsys.readouterr().out


def test_help_lists_commands_and_examples(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command.name in text
    assert "examples:" in text and "bayesnmf demo" in text
    assert cli.main(["rank", "--help"]) == 0
    assert "--criteria" in capsys.readouterr().out
    assert cli.main(["fit", "--help"]) == 0
    assert "--method {map,vi,nuts}" in capsys.readouterr().out


def test_demo_with_small_settings(tmp_path, capsys, monkeypatch):
    survey = {"n_restarts": 3, "max_iter": 20, "n_folds": 3, "heldout_restarts": 1}
    small = {
        "breast21": {**cli.DEMO_FITS["breast21"], "ranks": (3, 3),
                     "survey": {**survey, "criteria": ("stability", "heldout")},
                     "vi": {"n_restarts": 1, "max_iter": 20, "num_draws": 10}},
        "golub": {**cli.DEMO_FITS["golub"], "ranks": (3, 3),
                  "survey": {**survey, "criteria": ("stability",)}},
    }
    monkeypatch.setattr(cli, "DEMO_FITS", small)

    assert cli.main(["demo", "-o", str(tmp_path)]) == 0

    report = capsys.readouterr().out
    assert "Recommended rank:" in report
    assert "COSMIC v3.4" in report and "misplaced samples:" in report
    assert "Exposures with 90% intervals" in report
    for name in small:
        for file in ("result.npz", "criteria.tsv", "criteria.png", "consensus.png"):
            assert (tmp_path / name / file).stat().st_size > 0
    for file in ("posterior.nc", "signatures.png", "exposures.png"):
        assert (tmp_path / "breast21" / file).stat().st_size > 0


# -- fit --method vi / nuts -----------------------------------------------------
def test_fit_vi_writes_posterior_files(blocks, tmp_path, capsys):
    from bayesnmf.inference_data import load_datatree

    data = tmp_path / "counts.csv"
    blocks.to_csv(data)
    out = tmp_path / "out"

    code = run("fit", data, "-k", 2, "--method", "vi", "--restarts", 2,
               "--max-iter", 50, "--draws", 20, "-o", out)

    assert code == 0
    report = capsys.readouterr().out
    assert "default_evidence_priors" in report  # flat priors were replaced
    assert "Exposures with 90% intervals" in report
    assert "patient7" in report and "[" in report

    summary = pd.read_csv(out / "posterior_summary.tsv", sep="\t", index_col=0,
                          keep_default_na=False)
    assert len(summary) == 12 * 2 + 2 * 8
    assert {"mean", "sd", "eti90_lb", "eti90_ub"} <= set(summary.columns)
    W_rows = summary[summary["variable"] == "W"]
    assert list(pd.unique(W_rows["feature"])) == list(blocks.index)
    H_rows = summary[summary["variable"] == "H"]
    assert list(pd.unique(H_rows["observation"])) == list(blocks.columns)
    assert (H_rows["eti90_lb"] <= H_rows["mean"]).all()
    assert (H_rows["mean"] <= H_rows["eti90_ub"]).all()

    tree = load_datatree(out / "posterior.nc")
    posterior = tree["posterior"]
    assert posterior["W"].dims == ("chain", "draw", "feature", "component")
    assert posterior["H"].dims == ("chain", "draw", "component", "observation")
    assert list(posterior["feature"].values) == list(blocks.index)
    assert list(posterior["observation"].values) == list(blocks.columns)
    assert list(posterior["component"].values) == ["C1", "C2"]
    assert posterior.sizes["draw"] == 20
    assert_allclose(posterior["W"].sum("feature"), 1.0, rtol=1e-10)
    assert "log_likelihood" in tree.children
    # The table's means are the means of the stored draws.
    H_mean = posterior["H"].mean(("chain", "draw")).sel(component="C1")
    assert_allclose(H_rows[H_rows["component"] == "C1"]["mean"], H_mean,
                    rtol=1e-10)


def test_fit_vi_ci_option_and_given_priors(blocks, tmp_path, capsys):
    data = tmp_path / "counts.csv"
    blocks.to_csv(data)

    code = run("fit", data, "-k", 2, "--method", "vi", "--ci", 0.5,
               "--prior", "gamma:0.5,1", "--restarts", 1, "--max-iter", 30,
               "--draws", 10, "-o", tmp_path, "-q")

    assert code == 0
    assert capsys.readouterr().out == ""
    summary = pd.read_csv(tmp_path / "posterior_summary.tsv", sep="\t")
    assert "eti50_lb" in summary.columns
    report = (tmp_path / "summary.txt").read_text()
    assert "Exposures with 50% intervals" in report
    # A proper prior given by the user is kept (a shape below 1 is fine for VI).
    assert "default_evidence_priors" not in report
    assert "gamma(shape=0.5, rate=1)" in report


# -- rank -------------------------------------------------------------------------
RANK_FAST = ["--restarts", "3", "--folds", "3", "--heldout-restarts", "1",
             "--max-iter", "30"]


def test_rank_writes_table_recommendation_and_plots(blocks, tmp_path, capsys):
    data = tmp_path / "counts.csv"
    blocks.to_csv(data)
    out = tmp_path / "survey"

    assert run("rank", data, "--ranks", "2,3", *RANK_FAST, "-o", out) == 0

    printed = capsys.readouterr().out
    assert "Recommended rank:" in printed and "heldout_lpd" in printed
    table = read_tsv(out / "criteria.tsv")
    assert list(table.index) == [2, 3]
    assert {"neg_loglik", "cophenetic", "heldout_lpd"} <= set(table.columns)
    assert "Recommended rank" in (out / "recommendation.txt").read_text()
    consensus = read_tsv(out / "consensus_rank2.tsv")
    assert list(consensus.index) == list(blocks.columns)
    for name in ("criteria.png", "consensus.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_ranks():
    assert cli.parse_ranks("2-5") == [2, 3, 4, 5]
    assert cli.parse_ranks("2,3,5") == [2, 3, 5]
    assert cli.parse_ranks(" 2-4, 6,3") == [2, 3, 4, 6]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ranks", "2-x"], "--ranks '2-x': expected ranks such as 2-8"),
        (["--ranks", "5-2"], "write the smaller rank first (2-5)"),
        (["--ranks", "0-2"], "ranks start at 1"),
        (["--ranks", ""], "--ranks '': expected ranks"),
        (["--ranks", "2-20"], "--ranks: expected ranks <= min(n_features"),
        (["--criteria", "stability,magic"], "--criteria: expected a subset"),
        (["--restarts", "1"], "--restarts: stability criteria need at least 2"),
    ],
    ids=["not-a-number", "reversed", "zero", "empty", "too-large",
         "unknown-criterion", "one-restart"],
)
def test_rank_bad_options(blocks, tmp_path, capsys, args, message):
    data = tmp_path / "counts.csv"
    blocks.to_csv(data)

    code = run("rank", data, *args, "-o", tmp_path / "out", "-q")

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("bayesnmf: error: ")
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_class_agreement_counts_misplaced_samples():
    # Samples 0-2 are class "a", 3-5 class "b"; sample 2 sits in b's component.
    H = np.array([[5.0, 4.0, 1.0, 0.0, 1.0, 0.0],
                  [1.0, 0.0, 3.0, 6.0, 5.0, 2.0]])
    result = NMFResult(
        model=NMFModel(2), method="map", W_raw=np.ones((3, 2)), H_raw=H,
        params={}, objective=0.0, objective_name="objective",
        trace=np.zeros(1), trace_iter=np.zeros(1, dtype=int), n_iter=0,
        converged=True, feature_names=["f0", "f1", "f2"],
        sample_names=[f"s{j}" for j in range(6)],
    )
    classes = pd.Series(list("aaabbb"), index=result.sample_names)

    agreement = class_agreement(result, classes)

    assert agreement.n_misplaced == 1
    assert agreement.matching == {"C1": "a", "C2": "b"}
    assert agreement.assignment["misplaced"].tolist() == [False, False, True,
                                                          False, False, False]
    assert agreement.contingency.to_numpy().tolist() == [[2, 1], [0, 3]]


def test_python_dash_m_help():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "bayesnmf", "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: bayesnmf" in done.stdout and "demo" in done.stdout


def test_compare_writes_ranked_table(tmp_path, capsys):
    # Poisson counts whose means span two orders of magnitude: a constant-noise
    # Gaussian cannot fit their spread, the Poisson likelihood can.
    rng = np.random.default_rng(3)
    W = rng.gamma(1.0, 1.0, (20, 2))
    H = rng.gamma(1.0, 40.0, (2, 15))
    counts = pd.DataFrame(rng.poisson(W @ H).astype(float),
                          index=[f"g{i}" for i in range(20)],
                          columns=[f"s{j}" for j in range(15)])
    data = tmp_path / "counts.csv"
    counts.to_csv(data)
    out = tmp_path / "cmp"

    assert run("compare", data, "-k", 2, "--likelihoods", "poisson,gaussian",
               "--folds", 3, "--restarts", 2, "--max-iter", 300, "-o", out) == 0

    assert "Best: poisson" in capsys.readouterr().out
    table = read_tsv(out / "comparison.tsv")
    assert list(table.index) == ["poisson", "gaussian"]
    assert table.loc["gaussian", "scored_as"] == "discretised density"
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_bad_likelihood(tmp_path, capsys):
    assert run("compare", "breast21", "-k", 2, "--likelihoods", "poisson,foo",
               "-o", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesnmf: error:") and "--likelihoods" in err
