"""The crowded plots stay readable: the published variants get their own panel row, legends lie outside every
panel, and the Pareto labels do not overlap."""
import itertools

import numpy as np
import pandas as pd
import pytest

from estimators.bench.report import plots
from estimators.bench.report.plots import label_positions


def row(estimator, B, quantity, *, published=False, family="minibatch", k=0, scenario="s"):
    bias = 0.1 * B ** -0.5 * (30 if published else 1)
    return dict(scenario=scenario, separation=0.5, quantity=quantity, estimator=estimator, batch_size=B, k=k,
                dtype="float64", family=family, published_variant=published, N=100, D=3, replicates=20, status="ok",
                bias=bias, bias_se=0.01, rmse=abs(bias) + 0.01, rmse_se=0.001, time_per_call_s=1e-4 * B,
                reference=1.0, reference_se=0.0)


@pytest.fixture(scope="module")
def table():
    rows = []
    for scenario, q, B in itertools.product(("s", "t"), ("mi", "tc"), (8, 32, 128)):
        rows += [row(e, B, q, scenario=scenario) for e in ("naive", "mss", "stratified", "loo")]
        rows += [row("iwae", B, q, family="importance", k=16, scenario=scenario)]
        rows += [row(e, B, q, published=True, scenario=scenario) for e in ("mss_shipped", "hfvae")
                 + (("calc_mi",) if q == "mi" else ())]
    return pd.DataFrame(rows)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open instead of saved."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or True)
    yield figures
    for fig in figures:
        plots.pyplot().close(fig)


def _series(ax):
    return set(ax.get_legend_handles_labels()[1])


def _assert_legends_outside_the_panels(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_window_extent(renderer)), (legend, ax.get_title())


def test_published_variants_have_their_own_panel_row(table, drawn, tmp_path):
    assert plots.plot_bias(table, tmp_path / "b.png")
    (fig,) = drawn
    axes = np.array(fig.axes).reshape(-1, 2)  # rows: s estimators, s published, t estimators, t published
    assert [ax.get_title() for ax in axes[:, 0]] == ["s: mi, estimators", "s: mi, published variants",
                                                     "t: mi, estimators", "t: mi, published variants"]
    assert _series(axes[0, 0]) == {"naive", "mss", "stratified", "loo", "iwae k=16"}
    assert _series(axes[1, 0]) == {"mss_shipped", "hfvae", "calc_mi"} and _series(axes[1, 1]) == {"mss_shipped",
                                                                                                 "hfvae"}
    assert [lg.get_title().get_text() for lg in fig.legends] == ["estimators of log q(z)",
                                                                 "published variants (dashed)"]
    assert {t.get_text() for t in fig.legends[1].get_texts()} == {"mss_shipped", "hfvae", "calc_mi"}
    _assert_legends_outside_the_panels(fig)


@pytest.mark.parametrize("plot", ["plot_cost", "plot_pareto"])
def test_the_front_plots_leave_out_the_published_variants(table, drawn, tmp_path, plot):
    assert getattr(plots, plot)(table, tmp_path / "p.png")
    (fig,) = drawn
    shown = set().union(*(_series(ax) for ax in fig.axes))
    assert shown == {"naive", "mss", "stratified", "loo", "iwae k=16"}
    _assert_legends_outside_the_panels(fig)


def test_pareto_labels_do_not_overlap_and_every_skipped_point_is_covered():
    rng = np.random.default_rng(5)
    x, y = 10 ** rng.uniform(0, 3, 60), 10 ** rng.uniform(-2, 1, 60)
    span, w, h = (3.0, 3.0), 0.2, 0.07
    kept = label_positions(x, y, span, w, h)
    lx, ly = np.log10(x) / span[0], np.log10(y) / span[1]

    def clash(i, j):
        return abs(lx[i] - lx[j]) < w and abs(ly[i] - ly[j]) < h

    assert kept[0] == 0 and all(not clash(i, j) for i, j in itertools.combinations(kept, 2))
    for i in set(range(60)) - set(kept):  # greedy in order: a point is skipped only for an earlier label
        assert any(clash(i, j) for j in kept if j < i)
