"""Figures of fits and surveys, drawn headless (Agg) from small real fits."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import bayesnmf as bn
from bayesnmf import plotting
from bayesnmf.datasets import load_cosmic, load_dataset
from bayesnmf.selection import consensus_order, rank_survey
from bayesnmf.selection._survey import default_evidence_priors
from bayesnmf.signatures import SBS96_CONTEXTS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def breast():
    return load_dataset("breast21").to_frame()


@pytest.fixture(scope="module")
def map_fit(breast):
    return bn.fit_map(breast, 3, n_restarts=3, max_iter=100, warn=False)


@pytest.fixture(scope="module")
def vi_fit(breast):
    prior_W, prior_H = default_evidence_priors(breast.to_numpy(), 3, bn.Poisson())
    model = bn.NMFModel(3, bn.Poisson(), prior_W, prior_H)
    return bn.fit(breast, model, method="vi", n_restarts=2, max_iter=100,
                  num_draws=40, warn=False)


@pytest.fixture(scope="module")
def survey(breast):
    return rank_survey(breast, [2, 3], n_restarts=4, n_folds=3, heldout_restarts=1,
                       max_iter=100, criteria=("stability", "heldout"))


def saved(path):
    """The file exists and is a non-empty PNG."""
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG


# -- signatures -----------------------------------------------------------------
def test_sbs96_panels_follow_the_conventional_order(map_fit, tmp_path):
    path = tmp_path / "signatures.png"
    cosmic = {"COSMIC v3.4": load_cosmic("3.4")}

    fig = plotting.plot_signatures(map_fit, references=cosmic, path=path)

    assert saved(path)
    assert len(fig.axes) == map_fit.rank
    W = map_fit.W_frame().loc[list(SBS96_CONTEXTS)]
    for k, ax in enumerate(fig.axes):
        bars = [p for p in ax.patches if p.get_width() == pytest.approx(0.8)]
        assert len(bars) == 96
        assert_allclose([b.get_height() for b in bars], W.iloc[:, k], rtol=1e-12)
        # Channel 0 opens the C>A group, channel 16 the C>G group, ...
        colors = [b.get_facecolor()[:3] for b in bars]
        assert colors[0] != colors[16] and colors[0] == colors[15]
        labels = {t.get_text() for t in ax.texts}
        assert {"C>A", "C>G", "C>T", "T>A", "T>C", "T>G"} <= labels
        assert "COSMIC v3.4 SBS" in ax.get_title(loc="left")


def test_sbs96_rows_in_any_order_give_the_same_bars(map_fit):
    W = map_fit.W_frame()
    shuffled = W.iloc[np.random.default_rng(0).permutation(96)]

    a = plotting.plot_signatures(W).axes[1]
    b = plotting.plot_signatures(shuffled).axes[1]

    assert_allclose([p.get_height() for p in a.patches],
                    [p.get_height() for p in b.patches])


def test_signatures_with_draws_have_interval_bars(vi_fit):
    fig = plotting.plot_signatures(vi_fit, ci_prob=0.8)

    assert len(fig.axes) == 3
    for ax in fig.axes:
        (intervals,) = ax.collections  # one vertical line per channel
        assert len(intervals.get_segments()) == 96


def test_signatures_as_images(tmp_path):
    W = np.random.default_rng(1).random((12, 4))
    path = tmp_path / "parts.png"

    fig = plotting.plot_signatures(W, image_shape=(3, 4), path=path)

    assert saved(path)
    assert len(fig.axes) == 4
    image = fig.axes[2].images[0].get_array()
    assert_allclose(image, (W[:, 2] / W[:, 2].sum()).reshape(3, 4))


def test_many_features_show_the_top_ones_labelled():
    rng = np.random.default_rng(2)
    W = pd.DataFrame(rng.random((200, 2)), index=[f"gene{i}" for i in range(200)])

    fig = plotting.plot_signatures(W, n_top=7)

    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(W[0].nlargest(7).index)


def test_signature_input_errors():
    with pytest.raises(ValueError, match="image_shape: .* holds 9 pixels"):
        plotting.plot_signatures(np.ones((10, 2)), image_shape=(3, 3))
    with pytest.raises(ValueError, match="W must be finite and non-negative"):
        plotting.plot_signatures(-np.ones((10, 2)))


# -- exposures ------------------------------------------------------------------
def test_map_exposures_are_stacked_bars(map_fit, breast, tmp_path):
    path = tmp_path / "exposures.png"

    fig = plotting.plot_exposures(map_fit, breast, path=path)

    assert saved(path)
    (ax,) = fig.axes
    bars = np.array([p.get_height() for p in ax.patches]).reshape(3, 21)
    assert_allclose(bars, map_fit.H, rtol=1e-12)
    observed = ax.collections[0].get_offsets()[:, 1]
    assert_allclose(observed, breast.sum(axis=0))
    assert [t.get_text() for t in ax.get_xticklabels()] == map_fit.sample_names


def test_exposures_with_draws_show_intervals(vi_fit, tmp_path):
    path = tmp_path / "exposures_vi.png"

    fig = plotting.plot_exposures(vi_fit, ci_prob=0.9, log_scale=True, path=path)

    assert saved(path)
    (ax,) = fig.axes
    assert len(ax.containers) == 3  # one error-bar series per component
    H = bn.normalize(vi_fit.draws["W"], vi_fit.draws["H"])[1].reshape(-1, 3, 21)
    points = ax.containers[0].lines[0].get_ydata()
    assert_allclose(points, H[:, 0].mean(axis=0), rtol=1e-10)
    segments = ax.containers[0].lines[2][0].get_segments()
    low, high = np.quantile(H[:, 0], [0.05, 0.95], axis=0)
    assert_allclose([s[0][1] for s in segments], low, rtol=1e-10)
    assert_allclose([s[1][1] for s in segments], high, rtol=1e-10)


def test_relative_exposures_sum_to_one(map_fit):
    ax = plotting.plot_exposures(map_fit, relative=True).axes[0]

    bars = np.array([p.get_height() for p in ax.patches]).reshape(3, 21)
    assert_allclose(bars.sum(axis=0), 1.0, rtol=1e-12)


def test_exposures_draw_into_given_axes(map_fit):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()

    assert plotting.plot_exposures(map_fit, ax=ax) is fig


# -- traces ---------------------------------------------------------------------
def test_map_trace_has_every_restart(map_fit, tmp_path):
    path = tmp_path / "trace.png"

    fig = plotting.plot_trace(map_fit, path=path)

    assert saved(path)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_yscale() == "log"
    # Three restarts plus the legend's stand-in for the faint ones.
    assert len(fig.axes[0].lines) == 3 + 1
    best = max(fig.axes[0].lines, key=lambda line: line.get_linewidth())
    assert_allclose(best.get_ydata(), map_fit.trace)


def test_vi_trace_shows_the_elbo(vi_fit):
    fig = plotting.plot_trace(vi_fit, distance=False)

    (ax,) = fig.axes
    assert ax.get_ylabel() == "ELBO"
    best = max(ax.lines, key=lambda line: line.get_linewidth())
    assert_allclose(best.get_ydata(), -vi_fit.trace)


# -- rank selection -------------------------------------------------------------
def test_rank_criteria_panels(survey, tmp_path):
    path = tmp_path / "criteria.png"

    fig = plotting.plot_rank_criteria(survey, path=path)

    assert saved(path)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["fit", "consensus of samples", "stability of components",
                      "held-out evidence"]
    rec = survey.recommended_rank
    for ax in fig.axes:
        marks = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in marks] == [rec]
    held = fig.axes[3].containers[0]
    assert_allclose(held.lines[0].get_ydata(), survey.table["heldout_lpd"])


def test_consensus_heatmaps_in_dendrogram_order(survey, tmp_path):
    path = tmp_path / "consensus.png"
    classes = pd.Series(["a"] * 10 + ["b"] * 11, index=survey.sample_names)

    fig = plotting.plot_consensus(survey, classes=classes, path=path)

    assert saved(path)
    assert len(fig.axes) == 2 + 1  # a heatmap per rank and the colour bar
    C = survey.consensus[3]
    order = consensus_order(C)
    heatmap, strip = fig.axes[1].images
    assert_allclose(heatmap.get_array(), C[np.ix_(order, order)])
    assert strip.get_array().shape == (1, 21, 4)
    assert len(fig.legends[0].get_texts()) == 2


def test_consensus_rank_subset_and_errors(survey):
    assert len(plotting.plot_consensus(survey, ranks=[3]).axes) == 2
    with pytest.raises(ValueError, match=r"ranks: no consensus matrix for \[5\]"):
        plotting.plot_consensus(survey, ranks=[5])


# -- likelihood comparison ------------------------------------------------------
@pytest.mark.parametrize("value", ["elpd", "heldout_lpd"])
def test_likelihood_comparison_best_first(value, tmp_path):
    table = pd.DataFrame({value: [-150.0, -100.0, -120.0], "se": [9.0, 5.0, 7.0]},
                         index=["gaussian", "poisson", "negative binomial"])
    path = tmp_path / "compare.png"

    fig = plotting.plot_likelihood_comparison(table, path=path)

    assert saved(path)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["poisson", "negative binomial", "gaussian"]
    assert_allclose(ax.containers[0].lines[0].get_xdata(), [-100, -120, -150])


def test_likelihood_comparison_draws_the_paired_difference():
    table = pd.DataFrame(
        {"heldout_lpd": [-100.0, -130.0], "heldout_se": [20.0, 25.0],
         "diff": [0.0, -30.0], "diff_se": [0.0, 4.0]},
        index=["poisson", "gaussian"],
    )

    ax = plotting.plot_likelihood_comparison(table).axes[0]

    assert len(ax.containers) == 2
    (bar,) = ax.containers[1].lines[2][0].get_segments()
    assert_allclose([bar[0][0], bar[1][0]], [-134.0, -126.0])


def test_likelihood_comparison_needs_a_value_column():
    with pytest.raises(ValueError, match="expected a column among"):
        plotting.plot_likelihood_comparison(pd.DataFrame({"se": [1.0]}))
