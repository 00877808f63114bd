r"""The report's plots, one PNG per benchmark CSV and kind:

* ``<name>-bias.png``: bias with 95% error bars (1.96 bias_se) against batch size, one panel per
  quantity; for each scenario a row of the estimators of log q(z) and, below it, a row of the published
  variants (dashed), each with its own legend under the figure (log x, symlog y: the published variants
  are off by multiples of log N);
* ``<name>-pareto.png``: RMSE against time per estimate (log-log), every (estimator, batch size, k) a point,
  the Pareto front (no other point is both faster and more accurate) as a black line, its points labelled
  where the labels do not overlap;
* ``<name>-cost.png``: the same against encoder evaluations per estimate (:mod:`.cost`): the equal-cost
  comparison of the summary;
* ``<name>-log_px.png`` (when the CSV has log_px rows): |bias| of log p(x) against k on log-log
  axes, one panel per encoder (task), with the predicted bias overlaid as dashed lines;
* ``<name>-direct.png`` (when the CSV has rows of the direct estimators, ``estimators.direct``): their
  bias against batch size, one row of panels per scenario, one panel per quantity (kept out of the
  bias plot, which stays the log q(z) estimators');
* ``<name>-density_ratio.png`` (when it has density-ratio rows): the density-ratio TC's bias against
  its training steps (one line per field, labelled with its true tc) and against the true tc (one line
  per budget; dashed: the bias of an estimate of 0).

The Pareto and cost plots show the estimators the summary's equal-cost tables choose from
(:func:`.budget.candidates`: the published variants, far off, are in the bias plot). Legends sit outside
the panels, under the figure (or under their panel), so that they cover no data. Each ``plot_*``
returns False (and writes nothing) when the CSV has no rows for it.

The PNGs are byte-stable: the same rows give the same bytes (no timestamp, no matplotlib version
in the metadata), and a file is rewritten only when its bytes change, so redrawing a report from
unchanged data leaves the files -- and a git checkout of them -- untouched. (The Pareto plot shows
``time_per_call_s``, which changes with every run.)
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ...figures import pyplot, save_png
from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from ..metrics import ROUNDING
from .budget import candidates
from .select import aggregate_rows, direct_rows, is_published, latest_cells

__all__ = ["plot_bias", "plot_pareto", "plot_cost", "plot_log_px", "plot_direct", "plot_density_ratio",
           "pareto_front", "label_positions", "PLOTS"]

DPI = 110
PANEL_W, PANEL_H = 4.0, 2.75  # inches per panel
_GAP = 0.6  # inches between panel rows: this row's x ticks and the next row's title
_WSPACE = 0.55  # inches between panel columns: the y tick labels
_TOP, _LEFT, _RIGHT = 0.55, 0.75, 0.2  # inches: the title; the y label and ticks; the right edge
_XLABEL = 0.5  # inches under the bottom row: its tick labels and x label
_LEGEND_TITLE, _LEGEND_ROW = 0.26, 0.2  # inches per legend title and per row of entries
LEGEND_COLUMNS = 6


def _styles(names, palette: str = "tab10") -> dict[str, dict]:
    r"""A distinct colour per series: ``palette`` first, then the light half of tab20."""
    plt = pyplot()
    colors = list(plt.get_cmap(palette).colors) + list(plt.get_cmap("tab20").colors[1::2])
    return {n: {"color": colors[i % len(colors)]} for i, n in enumerate(sorted(names))}


def _legend_columns(width: float, names) -> int:
    r"""Legend columns that fit a figure ``width`` inches wide: at most :data:`LEGEND_COLUMNS`, each as wide as
    the longest entry (a handle and about 0.062 inches per character at font size 8)."""
    names = list(names)
    entry = 0.5 + 0.062 * max(len(n) for n in names)
    return max(1, min(len(names), LEGEND_COLUMNS, int((width - 0.3) // entry)))


def _legend_height(width: float, legends: list[tuple[str, list[str]]]) -> float:
    r"""Inches the figure-level ``legends`` (title, entries) take, stacked, in a figure ``width`` inches wide."""
    return sum((_LEGEND_TITLE if title else 0.08) + _LEGEND_ROW * math.ceil(len(names) / _legend_columns(width, names))
               for title, names in legends if names)


def _wrap(title: str, width: float) -> str:
    r"""``title`` wrapped to the figure's width (about 0.085 inches per character at font size 10)."""
    return textwrap.fill(title, max(20, int((width - 0.3) / 0.085)))


def _figure(nrows: int, ncols: int, legends: list[tuple[str, list[str]]], title: str, panel=(PANEL_W, PANEL_H)):
    r"""A grid of panels with fixed margins in inches (tight_layout measures every tick label and costs
    seconds per figure), ``title`` on top (wrapped to the width) and room under the panels for the stacked
    ``legends`` (title, entries) that :func:`_legends` draws."""
    plt = pyplot()
    width = _LEFT + _RIGHT + panel[0] * ncols + _WSPACE * (ncols - 1)
    title = _wrap(title, width)
    top = _TOP + 0.17 * title.count("\n")
    legend_in = _legend_height(width, legends)
    height = top + _XLABEL + legend_in + panel[1] * nrows + _GAP * (nrows - 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=_LEFT / width, right=1 - _RIGHT / width, top=1 - top / height,
                        bottom=(_XLABEL + legend_in) / height, wspace=_WSPACE / panel[0], hspace=_GAP / panel[1])
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    return fig, axes


def _legends(fig, groups: list[tuple[str, dict]]) -> None:
    r"""One legend per ``(title, {name: handle})`` under the panels, stacked top-down in the order given, each
    placed under the measured bottom of the one before (the room :func:`_figure` left for them)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    top = _legend_height(width, [(t, list(h)) for t, h in groups]) / height
    renderer = fig.canvas.get_renderer()
    for title, handles in groups:
        if not handles:
            continue
        legend = fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, top),
                            ncol=_legend_columns(width, handles), fontsize=8, title=title or None, title_fontsize=8,
                            frameon=False, borderaxespad=0.0, borderpad=0.1, labelspacing=0.3)
        box = legend.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        top = box.y0 - 0.06 / height


def _label_panel(ax, title: str, xlabel: str | None, ylabel: str | None) -> None:
    r"""Title and grid of one panel; axis labels only on the bottom row and the left column."""
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def _empty_panel(ax, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_alpha(0.3)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="grey", transform=ax.transAxes)


def _bias_panels(d: pd.DataFrame, path: Path, title: str, line, groups) -> bool:
    r"""Bias +- 1.96 se against batch size, one column per quantity, one row per (scenario, group).

    ``groups``: ``[(name, legend title, mask over d, dashed)]``; a scenario gets a row for each group with
    rows, the panel titles carry the group's name (where there are several) and each group its own
    colours and legend. ``line(g, s, n_series)`` gives series s's x values and line style."""
    labels = list(dict.fromkeys(d["label"]))
    quantities = [q for q in AGGREGATE_QUANTITIES if q in set(d["quantity"])]
    groups = [g for g in groups if g[2].any()]
    rows = [(label, gi) for label in labels for gi, g in enumerate(groups) if (g[2] & (d["label"] == label)).any()]
    # each group its own palette (tab10, then Dark2): a dashed line and its colour name one series
    styles = [_styles(set(d[g[2]]["series"]), ("tab10", "Dark2")[min(gi, 1)]) for gi, g in enumerate(groups)]
    fig, axes = _figure(len(rows), len(quantities), [(g[1], sorted(st)) for g, st in zip(groups, styles)], title)
    handles: list[dict] = [{} for _ in groups]
    for i, (label, gi) in enumerate(rows):
        name, _, mask, dashed = groups[gi]
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[mask & (d["label"] == label) & (d["quantity"] == q)]
            panel = f"{label}: {q}" + (f", {name}" if len(groups) > 1 and name else "")
            if cell.empty:
                _empty_panel(ax, f"no {name or 'estimator'} of {q}")
                ax.set_title(panel, fontsize=9)
                continue
            n_series = cell["series"].nunique()
            for s, (series, g) in enumerate(cell.groupby("series", sort=True)):
                g = g.sort_values("batch_size")
                x, ls = line(g, s, n_series)
                h = ax.errorbar(x, g["bias"], yerr=1.96 * g["bias_se"].fillna(0), label=series, marker="o", ms=3,
                                lw=1.2, capsize=2, ls="--" if dashed and ls == "-" else ls, **styles[gi][series])
                handles[gi].setdefault(series, h)
            ax.axhline(0.0, color="black", lw=0.8)
            ax.set_xscale("log", base=2)
            _symlog_if_wide(ax, cell["bias"].abs().to_numpy() + 1.96 * cell["bias_se"].fillna(0).to_numpy())
            _label_panel(ax, panel, "batch size B" if i == len(rows) - 1 else None, "bias (nats)" if j == 0 else None)
    _legends(fig, [(g[1], dict(sorted(h.items()))) for g, h in zip(groups, handles)])
    _save(fig, path)
    return True


def plot_bias(df: pd.DataFrame, path: Path) -> bool:
    r"""Bias +- 1.96 se against batch size: per scenario a row of the estimators of log q(z) and a row of
    the published variants (``published_variant``), one column per quantity."""
    d = aggregate_rows(df)
    if d.empty:
        return False
    published = is_published(d)

    def line(g, s, n_series):
        dodge = 2.0 ** (0.05 * (s - (n_series - 1) / 2))  # side by side, so error bars stay visible
        return g["batch_size"] * dodge, "-"

    groups = [("estimators", "estimators of log q(z)", ~published, False),
              ("published variants", "published variants (dashed)", published, True)]
    return _bias_panels(d, path, "Bias against batch size (error bars: 95% Monte Carlo interval); per scenario, "
                        "the estimators of log q(z), then the published variants (dashed)", line, groups)


def _symlog_if_wide(ax, magnitudes: np.ndarray) -> None:
    r"""Symmetric log y axis when biases span more than 20-fold (the published variants are
    off by multiples of log N); ticks at 0 and at most four powers of ten per sign."""
    m = magnitudes[np.isfinite(magnitudes) & (magnitudes > 0)]
    if len(m) < 2 or m.max() / m.min() <= 20:
        return
    lo = math.floor(math.log10(max(np.percentile(m, 20), 1e-6)))
    hi = math.ceil(math.log10(m.max()))
    ax.set_yscale("symlog", linthresh=10.0**lo, linscale=0.5)
    step = max(1, math.ceil((hi - lo + 1) / 4))
    powers = [10.0**e for e in range(lo, hi + 1, step)]
    ax.set_yticks([-p for p in reversed(powers)] + [0.0] + powers)
    ax.set_yticklabels([f"-{p:g}" for p in reversed(powers)] + ["0"] + [f"{p:g}" for p in powers], fontsize=7)
    ax.minorticks_off()


def _plain_log_ticks(ax) -> None:
    r"""Decade labels only: unlabelled minor ticks (mathtext minor labels are slow and cluttered)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, numticks=6))
        axis.set_minor_formatter(NullFormatter())


def pareto_front(time_s: np.ndarray, error: np.ndarray) -> np.ndarray:
    r"""Indices of the points no other point beats on both time and error, sorted by time."""
    order = np.lexsort((error, time_s))
    front, best = [], math.inf
    for i in order:
        if error[i] < best:
            front.append(i)
            best = error[i]
    return np.asarray(front, dtype=int)


def label_positions(x: np.ndarray, y: np.ndarray, span: tuple[float, float] | None = None, width: float = 0.2,
                    height: float = 0.07) -> list[int]:
    r"""Which of the points (x, y), in order, get a label: each one whose label box (``width`` by ``height``,
    fractions of the panel on log axes; ``span``: the panel's decades in x and y, by default the points')
    clears the boxes of every point labelled before it, so that no two labels overlap."""
    lx, ly = np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float))
    if span is None:
        span = (float(np.ptp(lx)) if len(lx) else 1.0, float(np.ptp(ly)) if len(ly) else 1.0)
    span_x, span_y = max(span[0], 1e-12), max(span[1], 1e-12)
    kept: list[int] = []
    for i in range(len(lx)):
        if all(abs(lx[i] - lx[j]) / span_x >= width or abs(ly[i] - ly[j]) / span_y >= height for j in kept):
            kept.append(i)
    return kept


def _front_panels(d: pd.DataFrame, path: Path, x_col: str, xlabel: str, title: str) -> bool:
    r"""RMSE against ``x_col`` (log-log) per scenario (rows) and quantity (columns), the Pareto front in
    black and its points labelled where the labels do not overlap. RMSE at rounding level (an exactly
    computed 0) is drawn at the panel's floor, as a triangle."""
    from matplotlib.lines import Line2D

    labels = list(dict.fromkeys(d["label"]))
    quantities = [q for q in AGGREGATE_QUANTITIES if q in set(d["quantity"])]
    styles = _styles(set(d["series"]))
    fig, axes = _figure(len(labels), len(quantities), [("", sorted(styles))], title)
    handles: dict = {}
    for i, label in enumerate(labels):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[(d["label"] == label) & (d["quantity"] == q)]
            rounding = cell["rmse"] <= ROUNDING * (1.0 + cell["reference"].abs())
            floor = 0.5 * float(cell.loc[~rounding, "rmse"].min()) if (~rounding).any() else 1e-9
            y_all = cell["rmse"].where(~rounding, floor).to_numpy()
            for series, g in cell.groupby("series", sort=True):
                at = cell.index.get_indexer(g.index)
                size = 8 + 3 * np.log2(g["batch_size"].clip(lower=1)) ** 2
                for marker, sel in (("o", ~rounding.loc[g.index].to_numpy()), ("v", rounding.loc[g.index].to_numpy())):
                    if sel.any():
                        ax.scatter(g[x_col].to_numpy()[sel], y_all[at][sel], s=size.to_numpy()[sel], alpha=0.8,
                                   marker=marker, label=series, **styles[series])
                # one marker size in the legend, whatever B the first point has
                handles.setdefault(series, Line2D([], [], marker="o", ls="none", ms=6, alpha=0.8, **styles[series]))
            x = cell[x_col].to_numpy(float)
            f = pareto_front(x, y_all)
            ax.step(x[f], y_all[f], where="post", color="black", lw=1)
            span = (float(np.ptp(np.log10(x))), float(np.ptp(np.log10(y_all))))
            right = np.log10(x.max()) - 0.3 * span[0]  # labels of the right third point left
            for idx in f[label_positions(x[f], y_all[f], span)]:
                r = cell.iloc[idx]
                left = np.log10(x[idx]) > right
                ax.annotate(f"{r['series']} B={int(r['batch_size'])}", (x[idx], y_all[idx]), fontsize=6,
                            xytext=(-3 if left else 3, 3), textcoords="offset points", ha="right" if left else "left")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            _label_panel(ax, f"{label}: {q}", xlabel if i == len(labels) - 1 else None,
                         "RMSE (nats)" if j == 0 else None)
    _legends(fig, [("", dict(sorted(handles.items())))])
    _save(fig, path)
    return True


_MARKERS = "marker size grows with B; triangles: RMSE at rounding level, drawn at the panel's floor"


def plot_pareto(df: pd.DataFrame, path: Path) -> bool:
    r"""RMSE against time per estimate, log-log, with the Pareto front (the equal-time comparison)."""
    d = candidates(df)
    if d.empty:
        return False
    return _front_panels(d, path, "seconds", "time per estimate (s)",
                         "Error against time per estimate (black: Pareto front; published variants left out; "
                         + _MARKERS + ")")


def plot_cost(df: pd.DataFrame, path: Path) -> bool:
    r"""RMSE against encoder evaluations per estimate (:mod:`.cost`), log-log, with the Pareto front."""
    d = candidates(df)
    if d.empty:
        return False
    return _front_panels(d, path, "evaluations", "encoder evaluations per estimate",
                         "Error against encoder evaluations per estimate (B minibatch, B (1 + k) iwae, B + N exact; "
                         "black: Pareto front; published variants left out; " + _MARKERS + ")")


def plot_log_px(df: pd.DataFrame, path: Path) -> bool:
    r"""|bias| of log p(x) against k, log-log, one panel per task, predicted bias dashed."""
    d = latest_cells(df)
    d = d[d["quantity"] == LOG_PX]
    if d.empty:
        return False
    from matplotlib.ticker import NullFormatter

    tasks = list(dict.fromkeys(d["scenario"]))
    cols = min(len(tasks), 3)
    rows = math.ceil(len(tasks) / cols)
    styles = _styles(set(d["estimator"]))
    predicted = set(d[np.isfinite(d["predicted_bias"].astype(float))]["estimator"])
    names = sorted([f"{e} |bias|" for e in styles] + [f"{e} predicted" for e in predicted])
    fig, axes = _figure(rows, cols, [("", names)], "IWAE-k and jackknife: |bias| of log p(x) against k (error bars "
                        "95%; hollow: within 1.96 se of 0; dashed: predicted bias)", panel=(4.4, 3.2))
    handles: dict = {}
    for n, (ax, task) in enumerate(zip(axes.flat, tasks)):
        cell = d[d["scenario"] == task]
        for est, g in cell.groupby("estimator", sort=True):
            g = g.sort_values("k")
            size, half = g["bias"].abs().to_numpy(), 1.96 * g["bias_se"].fillna(0).to_numpy()
            # log axis: the lower bar stops at a tenth of the value; hollow = not distinguishable from 0
            h = ax.errorbar(g["k"], size, yerr=[np.minimum(half, 0.9 * size), half], ms=0, capsize=2, lw=1.2,
                            label=f"{est} |bias|", **styles[est])
            handles.setdefault(f"{est} |bias|", h)
            sig = size > half
            ax.scatter(g["k"][sig], size[sig], s=14, **styles[est])
            ax.scatter(g["k"][~sig], size[~sig], s=14, facecolors="white", edgecolors=styles[est]["color"], zorder=3)
            pred = g[np.isfinite(g["predicted_bias"].astype(float))]
            if len(pred):
                (h,) = ax.plot(pred["k"], pred["predicted_bias"].astype(float).abs(), ls="--", lw=1,
                               label=f"{est} predicted", **styles[est])
                handles.setdefault(f"{est} predicted", h)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, alpha=0.3, which="both")
        _label_panel(ax, task, "k" if n + cols >= len(tasks) else None,
                     "|bias| of log p(x) (nats)" if n % cols == 0 else None)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    _legends(fig, [("", dict(sorted(handles.items())))])
    _save(fig, path)
    return True


def plot_direct(df: pd.DataFrame, path: Path) -> bool:
    r"""The direct estimators' bias +- 1.96 se against batch size: rows = scenarios, columns = quantities."""
    d = direct_rows(df)
    if d.empty:
        return False
    everything = pd.Series(True, index=d.index)
    return _bias_panels(d, path, "Moment-based and density-ratio estimators: bias against batch size (95% error "
                        "bars; density ratio: its training batch)",
                        lambda g, s, n_series: (g["batch_size"], "-" if len(g) > 1 else "none"),
                        [("", "", everything, False)])


def plot_density_ratio(df: pd.DataFrame, path: Path) -> bool:
    r"""Density-ratio TC: bias against training steps (per field) and against the true tc (per budget)."""
    d = direct_rows(df)
    d = d[(d["family"] == "density_ratio") & (d["quantity"] == "tc")] if len(d) else d
    if d.empty:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), squeeze=False)
    left, right = axes[0]
    fields = d.groupby("label", sort=False)["reference"].first().sort_values()
    styles = _styles(fields.index)
    for label, ref in fields.items():
        g = d[d["label"] == label].sort_values("k")
        left.errorbar(g["k"], g["bias"], yerr=1.96 * g["bias_se"].fillna(0), marker="o", ms=3, capsize=2, lw=1.2,
                      label=f"{label} (tc {ref:.3g})", **styles[label])
    left.axhline(0.0, color="black", lw=0.8)
    left.set_xscale("log")
    _label_panel(left, "bias against training steps", "training steps", "bias of tc (nats)")
    budgets = sorted(set(d["k"]))
    bstyles = _styles([f"{b}" for b in budgets])
    for b in budgets:
        g = d[d["k"] == b].sort_values("reference")
        right.errorbar(g["reference"], g["bias"], yerr=1.96 * g["bias_se"].fillna(0), marker="o", ms=3, capsize=2,
                       lw=1.2, label=f"{int(b)} steps", **bstyles[f"{b}"])
    span = np.array([0.0, float(d["reference"].max()) * 1.05])
    right.plot(span, -span, ls="--", color="grey", lw=1, label="estimate 0")
    right.axhline(0.0, color="black", lw=0.8)
    _label_panel(right, "bias against the true tc", "true tc (nats)", None)
    for ax in (left, right):  # under the panel: a legend inside would cover the lines
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    batch = sorted(set(int(b) for b in d["batch_size"]))
    fig.suptitle(f"Density-ratio TC (FactorVAE discriminator, training batch {', '.join(map(str, batch))}): "
                 "error bars 95% over independent trainings", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _save(fig, path: Path) -> bool:
    return save_png(fig, path, DPI)


# suffix of the file name -> plot function, in the order the summary shows them
PLOTS = {"bias": plot_bias, "cost": plot_cost, "pareto": plot_pareto, "log_px": plot_log_px, "direct": plot_direct,
         "density_ratio": plot_density_ratio}
