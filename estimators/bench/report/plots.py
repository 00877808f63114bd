r"""The report's plots, one PNG per benchmark CSV and kind:

* ``<name>-bias.png``: bias with 95% error bars (1.96 bias_se) against batch size, one row of
  panels per scenario, one panel per quantity, one line per estimator (log x, symlog y: the
  published variants are off by multiples of log N);
* ``<name>-pareto.png``: RMSE against time per call (log-log), every (estimator, batch size, k)
  a point, the Pareto front (no other point is both faster and more accurate) as a black line;
* ``<name>-log_px.png`` (when the CSV has log_px rows): |bias| of log p(x) against k on log-log
  axes, one panel per encoder (task), with the predicted bias overlaid as dashed lines;
* ``<name>-direct.png`` (when the CSV has rows of the direct estimators, ``estimators.direct``): their
  bias against batch size, one row of panels per scenario, one panel per quantity (kept out of the
  bias plot, which stays the log q(z) estimators');
* ``<name>-density_ratio.png`` (when it has density-ratio rows): the density-ratio TC's bias against
  its training steps (one line per field, labelled with its true tc) and against the true tc (one line
  per budget; dashed: the bias of an estimate of 0).

Each ``plot_*`` returns False (and writes nothing) when the CSV has no rows for it.

The PNGs are byte-stable: the same rows give the same bytes (no timestamp, no matplotlib version
in the metadata), and a file is rewritten only when its bytes change, so redrawing a report from
unchanged data leaves the files -- and a git checkout of them -- untouched. (The Pareto plot shows
``time_per_call_s``, which changes with every run.)
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ...figures import pyplot, save_png
from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from .select import aggregate_rows, direct_rows, is_published, latest_cells

__all__ = ["plot_bias", "plot_pareto", "plot_log_px", "plot_direct", "plot_density_ratio", "pareto_front", "PLOTS"]

DPI = 110


def _styles(names) -> dict[str, dict]:
    r"""A distinct colour per series: tab10 first, then the light half of tab20."""
    plt = pyplot()
    colors = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
    return {n: {"color": colors[i % len(colors)]} for i, n in enumerate(sorted(names))}


def _title_and_legend(fig, axes, title: str) -> None:
    r"""Title on top, one shared legend below the panels, and the space both need."""
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    width, height = fig.get_figwidth(), fig.get_figheight()
    ncol = min(len(names), 6)
    legend_in = 0.75 + 0.2 * math.ceil(len(names) / max(ncol, 1))  # x label + legend rows
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / height)
    fig.legend(handles, names, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    # Fixed margins in inches: tight_layout measures every tick label and costs seconds per figure.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=legend_in / height,
                        top=1 - 0.55 / height, wspace=0.28, hspace=0.45 * 3.2 / (height / max(len(axes), 1)))


def _panel_grid(d: pd.DataFrame):
    r"""One panel per (scenario label, quantity): rows are scenarios, columns quantities."""
    plt = pyplot()
    labels = list(dict.fromkeys(d["label"]))
    quantities = [q for q in AGGREGATE_QUANTITIES if q in set(d["quantity"])]
    styles = _styles(set(d["series"]))
    fig, axes = plt.subplots(len(labels), len(quantities), figsize=(4.2 * len(quantities), 3.2 * len(labels)),
                             squeeze=False)
    return labels, quantities, styles, fig, axes


def _label_panel(ax, title: str, xlabel: str | None, ylabel: str | None) -> None:
    r"""Title and grid of one panel; axis labels only on the bottom row and the left column."""
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def _bias_panels(d: pd.DataFrame, path: Path, title: str, line) -> bool:
    r"""Bias +- 1.96 se against batch size, rows = scenarios, columns = quantities; ``line(g, s, n_series)``
    gives series s's x values and line style."""
    labels, quantities, styles, fig, axes = _panel_grid(d)
    for i, label in enumerate(labels):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[(d["label"] == label) & (d["quantity"] == q)]
            n_series = cell["series"].nunique()
            for s, (series, g) in enumerate(cell.groupby("series", sort=True)):
                g = g.sort_values("batch_size")
                x, ls = line(g, s, n_series)
                ax.errorbar(x, g["bias"], yerr=1.96 * g["bias_se"].fillna(0), label=series, marker="o", ms=3,
                            lw=1.2, capsize=2, ls=ls, **styles[series])
            ax.axhline(0.0, color="black", lw=0.8)
            ax.set_xscale("log", base=2)
            _symlog_if_wide(ax, cell["bias"].abs().to_numpy() + 1.96 * cell["bias_se"].fillna(0).to_numpy())
            _label_panel(ax, f"{label}: {q}", "batch size B" if i == len(labels) - 1 else None,
                         "bias (nats)" if j == 0 else None)
    _title_and_legend(fig, axes, title)
    _save(fig, path)
    return True


def plot_bias(df: pd.DataFrame, path: Path) -> bool:
    r"""Bias +- 1.96 se against batch size: rows = scenarios, columns = quantities."""
    d = aggregate_rows(df)
    if d.empty:
        return False

    def line(g, s, n_series):
        dodge = 2.0 ** (0.05 * (s - (n_series - 1) / 2))  # side by side, so error bars stay visible
        return g["batch_size"] * dodge, "--" if bool(is_published(g).any()) else "-"

    return _bias_panels(d, path, "Bias against batch size (error bars: 95% Monte Carlo interval; "
                        "dashed: published variants)", line)


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


def plot_pareto(df: pd.DataFrame, path: Path) -> bool:
    r"""RMSE against time per call, log-log, with the Pareto front."""
    d = aggregate_rows(df)
    d = d[(d["time_per_call_s"] > 0) & (d["rmse"] > 0)]
    if d.empty:
        return False
    labels, quantities, styles, fig, axes = _panel_grid(d)
    for i, label in enumerate(labels):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[(d["label"] == label) & (d["quantity"] == q)]
            for series, g in cell.groupby("series", sort=True):
                published = bool(is_published(g).any())
                ax.scatter(g["time_per_call_s"], g["rmse"], s=8 + 3 * np.log2(g["batch_size"]) ** 2,
                           label=series, alpha=0.8, marker="x" if published else "o", **styles[series])
            usable = cell[~is_published(cell)]
            if len(usable):
                t, e = usable["time_per_call_s"].to_numpy(), usable["rmse"].to_numpy()
                f = pareto_front(t, e)
                ax.step(t[f], e[f], where="post", color="black", lw=1)
                for idx in f:
                    r = usable.iloc[idx]
                    ax.annotate(f"{r['series']} B={int(r['batch_size'])}", (t[idx], e[idx]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            _label_panel(ax, f"{label}: {q}", "time per call (s)" if i == len(labels) - 1 else None,
                         "RMSE (nats)" if j == 0 else None)
    _title_and_legend(fig, axes, "Error against time per call (marker size grows with B; black: Pareto front "
                      "of the estimators one would train with; x: published variants)")
    _save(fig, path)
    return True


def plot_log_px(df: pd.DataFrame, path: Path) -> bool:
    r"""|bias| of log p(x) against k, log-log, one panel per task, predicted bias dashed."""
    d = latest_cells(df)
    d = d[d["quantity"] == LOG_PX]
    if d.empty:
        return False
    plt = pyplot()
    from matplotlib.ticker import NullFormatter

    tasks = list(dict.fromkeys(d["scenario"]))
    cols = min(len(tasks), 3)
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    styles = _styles(set(d["estimator"]))
    for ax, task in zip(axes.flat, tasks):
        cell = d[d["scenario"] == task]
        for est, g in cell.groupby("estimator", sort=True):
            g = g.sort_values("k")
            size, half = g["bias"].abs().to_numpy(), 1.96 * g["bias_se"].fillna(0).to_numpy()
            # log axis: the lower bar stops at a tenth of the value; hollow = not distinguishable from 0
            ax.errorbar(g["k"], size, yerr=[np.minimum(half, 0.9 * size), half], ms=0, capsize=2, lw=1.2,
                        label=f"{est} |bias|", **styles[est])
            sig = size > half
            ax.scatter(g["k"][sig], size[sig], s=14, **styles[est])
            ax.scatter(g["k"][~sig], size[~sig], s=14, facecolors="white", edgecolors=styles[est]["color"], zorder=3)
            pred = g[np.isfinite(g["predicted_bias"].astype(float))]
            if len(pred):
                ax.plot(pred["k"], pred["predicted_bias"].astype(float).abs(), ls="--", lw=1,
                        label=f"{est} predicted", **styles[est])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("k")
        ax.set_ylabel("|bias| of log p(x) (nats)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle("IWAE-k and jackknife: |bias| of log p(x) against k (error bars 95%; hollow: within 1.96 se "
                 "of 0; dashed: predicted bias)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_direct(df: pd.DataFrame, path: Path) -> bool:
    r"""The direct estimators' bias +- 1.96 se against batch size: rows = scenarios, columns = quantities."""
    d = direct_rows(df)
    if d.empty:
        return False
    return _bias_panels(d, path, "Moment-based and density-ratio estimators: bias against batch size (95% error "
                        "bars; density ratio: its training batch)",
                        lambda g, s, n_series: (g["batch_size"], "-" if len(g) > 1 else "none"))


def plot_density_ratio(df: pd.DataFrame, path: Path) -> bool:
    r"""Density-ratio TC: bias against training steps (per field) and against the true tc (per budget)."""
    d = direct_rows(df)
    d = d[(d["family"] == "density_ratio") & (d["quantity"] == "tc")] if len(d) else d
    if d.empty:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0), squeeze=False)
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
    left.legend(fontsize=7)
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
    right.legend(fontsize=7)
    batch = sorted(set(int(b) for b in d["batch_size"]))
    fig.suptitle(f"Density-ratio TC (FactorVAE discriminator, training batch {', '.join(map(str, batch))}): "
                 "error bars 95% over independent trainings", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _save(fig, path: Path) -> bool:
    return save_png(fig, path, DPI)


# suffix of the file name -> plot function, in the order the summary shows them
PLOTS = {"bias": plot_bias, "pareto": plot_pareto, "log_px": plot_log_px, "direct": plot_direct,
         "density_ratio": plot_density_ratio}
