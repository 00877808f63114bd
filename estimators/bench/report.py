r"""Reports from the benchmark CSVs: plots, a Markdown summary and a compact terminal table.

Every ``<name>.csv`` in the results folder (one per benchmark run name, e.g. ``quick.csv``,
``standard.csv``) gets

* ``<name>-bias.png``: bias with 95% error bars (1.96 bias_se) against batch size, one row of
  panels per scenario, one panel per quantity, one line per estimator (log x, symlog y: the
  published variants are off by multiples of log N);
* ``<name>-pareto.png``: RMSE against time per call (log-log), every (estimator, batch size, k)
  a point, the Pareto front (no other point is both faster and more accurate) as a black line;
* ``<name>-log_px.png`` (when the CSV has log_px rows): |bias| of log p(x) against k on log-log
  axes, one panel per encoder (task), with the predicted bias overlaid as dashed lines;

and ``README.md`` summarises all of them: for each scenario and quantity the estimator with the
lowest RMSE at each batch size, bias tables, and the checks (reference precision, predicted
signs, failed cells).

Column glossary (the CSV): see :data:`COLUMN_DOC`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import AGGREGATE_QUANTITIES, LOG_PX
from .store import read_results, write_atomic

__all__ = ["load_results", "latest_cells", "write_report", "terminal_table", "COLUMN_DOC"]

COLUMN_DOC = {
    "scenario": "scenario name, posterior file stem, or log p(x) task",
    "quantity": "mi, kl_agg, tc, dimwise_kl (nats) or log_px",
    "estimator": "estimator name (estimators.registry; iwae* for log_px)",
    "N, D": "data points and latent dimensions of the field",
    "batch_size": "B, points per replicate batch (0: not applicable, log_px)",
    "k": "importance samples (0: the estimator takes none)",
    "replicates": "R, independent replicate batches",
    "reference, reference_se, reference_method": "exact reference (closed / quadrature / mc) and its se",
    "mean, bias, bias_se": "mean of the R estimates, mean - reference, sd / sqrt(R)",
    "sd, sd_se": "sd of the estimates (ddof 1) and its se (delta method, fourth moment)",
    "rmse, rmse_se": "sqrt(mean (estimate - reference)^2) and its se (delta method)",
    "rel_bias, rel_bias_se": "bias / |reference| (empty where the reference is 0)",
    "frac_negative(_se)": "fraction of estimates below 0 (all four quantities are >= 0)",
    "coverage(_se)": "fraction of replicates whose interval mean(terms) +- 1.96 sd(terms)/sqrt(B) covers the reference",
    "reference_se_ok": "SPEC: reference_se <= bias_se / 10",
    "reference_samples": "Monte Carlo draws per component behind an mc reference",
    "time_per_call_s": "median seconds per estimator call (one replicate; per estimate for log_px), after a warm-up",
    "log_N, log_B": "log N and log B: the scales of the naive/mws biases",
    "mws_offset": "SPEC's exact per-sample constant mws - naive for this quantity",
    "bias_sign_theory": "+ / - : sign the bias must have (Jensen, unbiased inner sum); 0: exact; empty: none",
    "bias_sign_ok": "observed bias agrees with bias_sign_theory within 4 se",
    "predicted_bias": "log_px: leading-order bias predicted from the Renyi divergence",
    "seed, unit_seed": "global seed and the unit's derived seed",
    "status, error": "ok, or error with the message",
}

_CELL = ["scenario", "separation", "quantity", "estimator", "batch_size", "k", "dtype"]
_EXCLUDE_BEST = {"exact"}  # full-N evaluation: the gold standard, not a minibatch choice


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_results(folder: str | os.PathLike) -> dict[str, pd.DataFrame]:
    r"""Every benchmark ``*.csv`` in ``folder`` (not hidden; other CSVs are skipped), by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {str(folder)!r} does not exist")
    out = {}
    for path in sorted(folder.glob("*.csv")):
        if path.name.startswith("."):
            continue
        df = read_results(path)
        if {"scenario", "quantity", "estimator", "status", "bias"} <= set(df.columns):  # skip foreign CSVs
            out[path.stem] = df
    return out


def latest_cells(df: pd.DataFrame) -> pd.DataFrame:
    r"""One row per cell: finished rows only; where a cell was run with several replicate counts or
    seeds, the one with the most replicates (then the last written)."""
    if df.empty:
        return df
    ok = df[df["status"] == "ok"].copy()
    ok["_order"] = np.arange(len(ok))
    ok = ok.sort_values(["replicates", "_order"]).drop_duplicates(_CELL, keep="last")
    return ok.sort_values("_order").drop(columns="_order")


def _scenario_labels(df: pd.DataFrame) -> pd.Series:
    seps = df.groupby("scenario")["separation"].nunique(dropna=True)
    many = set(seps[seps > 1].index)

    def label(row):
        if row["scenario"] in many:
            return f"{row['scenario']} (sep {row['separation']:g})"
        return str(row["scenario"])

    return df.apply(label, axis=1) if len(df) else pd.Series(dtype=str)


def _series_name(row) -> str:
    return f"{row['estimator']} k={int(row['k'])}" if int(row["k"]) > 0 else str(row["estimator"])


def _styles(names) -> dict[str, dict]:
    r"""A distinct colour per series: tab10 first, then the light half of tab20."""
    plt = _plt()
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


def _agg(df: pd.DataFrame) -> pd.DataFrame:
    d = latest_cells(df)
    d = d[d["quantity"].isin(AGGREGATE_QUANTITIES)].copy()
    if d.empty:
        return d
    d["label"] = _scenario_labels(d)
    d["series"] = d.apply(_series_name, axis=1)
    return d


def _panel_grid(d: pd.DataFrame):
    r"""One panel per (scenario label, quantity): rows are scenarios, columns quantities."""
    plt = _plt()
    labels = list(dict.fromkeys(d["label"]))
    quantities = [q for q in AGGREGATE_QUANTITIES if q in set(d["quantity"])]
    styles = _styles(set(d["series"]))
    fig, axes = plt.subplots(len(labels), len(quantities), figsize=(4.2 * len(quantities), 3.2 * len(labels)),
                             squeeze=False)
    return labels, quantities, styles, fig, axes


def plot_bias(df: pd.DataFrame, path: Path) -> bool:
    r"""Bias +- 1.96 se against batch size: rows = scenarios, columns = quantities."""
    d = _agg(df)
    if d.empty:
        return False
    labels, quantities, styles, fig, axes = _panel_grid(d)
    for i, label in enumerate(labels):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[(d["label"] == label) & (d["quantity"] == q)]
            n_series = cell["series"].nunique()
            for s, (series, g) in enumerate(cell.groupby("series", sort=True)):
                g = g.sort_values("batch_size")
                published = bool(g["published_variant"].astype(str).eq("True").any())
                dodge = 2.0 ** (0.05 * (s - (n_series - 1) / 2))  # side by side, so error bars stay visible
                ax.errorbar(g["batch_size"] * dodge, g["bias"], yerr=1.96 * g["bias_se"].fillna(0), label=series,
                            marker="o", ms=3, lw=1.2, capsize=2, ls="--" if published else "-", **styles[series])
            ax.axhline(0.0, color="black", lw=0.8)
            ax.set_xscale("log", base=2)
            _symlog_if_wide(ax, cell["bias"].abs().to_numpy() + 1.96 * cell["bias_se"].fillna(0).to_numpy())
            ax.set_title(f"{label}: {q}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if i == len(labels) - 1:
                ax.set_xlabel("batch size B")
            if j == 0:
                ax.set_ylabel("bias (nats)")
    _title_and_legend(fig, axes, "Bias against batch size (error bars: 95% Monte Carlo interval; "
                      "dashed: published variants)")
    _save(fig, path)
    return True


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
    d = _agg(df)
    d = d[(d["time_per_call_s"] > 0) & (d["rmse"] > 0)]
    if d.empty:
        return False
    labels, quantities, styles, fig, axes = _panel_grid(d)
    for i, label in enumerate(labels):
        for j, q in enumerate(quantities):
            ax = axes[i][j]
            cell = d[(d["label"] == label) & (d["quantity"] == q)]
            for series, g in cell.groupby("series", sort=True):
                published = bool(g["published_variant"].astype(str).eq("True").any())
                ax.scatter(g["time_per_call_s"], g["rmse"], s=8 + 3 * np.log2(g["batch_size"]) ** 2,
                           label=series, alpha=0.8, marker="x" if published else "o", **styles[series])
            usable = cell[~cell["published_variant"].astype(str).eq("True")]
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
            ax.set_title(f"{label}: {q}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if i == len(labels) - 1:
                ax.set_xlabel("time per call (s)")
            if j == 0:
                ax.set_ylabel("RMSE (nats)")
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
    plt = _plt()
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


def _save(fig, path: Path) -> None:
    plt = _plt()
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------- tables

def _fmt(x: float, se: float | None = None) -> str:
    if x is None or not np.isfinite(x):
        return ""
    digits = 3
    if se is not None and np.isfinite(se) and se > 0:
        digits = max(0, min(6, 1 - int(math.floor(math.log10(se)))))
        return f"{x:.{digits}f} ± {se:.{digits}f}"
    return f"{x:.4g}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def best_by_rmse(df: pd.DataFrame) -> pd.DataFrame:
    r"""For each (scenario, quantity, batch size): the row with the lowest RMSE among estimators
    one would use in training (not ``exact``, not the published variants)."""
    d = _agg(df)
    if d.empty:
        return d
    d = d[~d["estimator"].isin(_EXCLUDE_BEST) & ~d["published_variant"].astype(str).eq("True")]
    idx = d.groupby(["label", "quantity", "batch_size"])["rmse"].idxmin()
    return d.loc[idx.values]


def _best_tables(df: pd.DataFrame) -> list[str]:
    best = best_by_rmse(df)
    if best.empty:
        return []
    out = []
    batch = sorted(set(best["batch_size"]))
    for q in [q for q in AGGREGATE_QUANTITIES if q in set(best["quantity"])]:
        rows = []
        for label in dict.fromkeys(best["label"]):
            cells = []
            for b in batch:
                r = best[(best["label"] == label) & (best["quantity"] == q) & (best["batch_size"] == b)]
                cells.append(f"{r.iloc[0]['series']} ({r.iloc[0]['rmse']:.3g})" if len(r) else "")
            rows.append([label] + cells)
        out.append(f"**{q}**: lowest RMSE (nats) at each batch size\n\n"
                    + _md_table(["scenario"] + [f"B={b}" for b in batch], rows))
    return out


def _bias_tables(df: pd.DataFrame) -> list[str]:
    d = _agg(df)
    out = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        first = s.iloc[0]
        ref_parts = []
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            r = s[s["quantity"] == q].iloc[0]
            ref_parts.append(f"{q} = {_fmt(r['reference'], r['reference_se'] or None)} ({r['reference_method']})")
        batch = sorted(set(s["batch_size"]))
        rows = []
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            for series in sorted(set(s[s["quantity"] == q]["series"])):
                g = s[(s["quantity"] == q) & (s["series"] == series)]
                cells = []
                for b in batch:
                    r = g[g["batch_size"] == b]
                    cells.append(_fmt(r.iloc[0]["bias"], r.iloc[0]["bias_se"]) if len(r) else "")
                rows.append([q, series] + cells)
        out.append(f"#### {label} (N = {int(first['N'])}, D = {int(first['D'])}, R = {int(first['replicates'])})\n\n"
                   f"References: {'; '.join(ref_parts)}.\n\nBias ± Monte Carlo se (nats):\n\n"
                   + _md_table(["quantity", "estimator"] + [f"B={b}" for b in batch], rows))
    return out


def _log_px_table(df: pd.DataFrame) -> str | None:
    d = latest_cells(df)
    d = d[d["quantity"] == LOG_PX]
    if d.empty:
        return None
    ks = sorted(set(d["k"]))
    rows = []
    for task in dict.fromkeys(d["scenario"]):
        for est in sorted(set(d[d["scenario"] == task]["estimator"])):
            g = d[(d["scenario"] == task) & (d["estimator"] == est)]
            cells = []
            for k in ks:
                r = g[g["k"] == k]
                if not len(r):
                    cells.append("")
                    continue
                r = r.iloc[0]
                pred = float(r["predicted_bias"])
                cells.append(_fmt(r["bias"], r["bias_se"]) + (f" (pred {pred:.3g})" if np.isfinite(pred) else ""))
            rows.append([task, est] + cells)
    return ("Bias of log p(x) ± se (predicted leading-order bias in brackets):\n\n"
            + _md_table(["task", "estimator"] + [f"k={k}" for k in ks], rows))


def _checks(df: pd.DataFrame) -> list[str]:
    lines = []
    errors = df[df["status"] != "ok"]
    d = latest_cells(df)
    bad_ref = d[d["reference_se_ok"].astype(str).eq("False")]
    bad_sign = d[d["bias_sign_ok"].astype(str).eq("False")]
    lines.append(f"- cells: {len(d)} finished, {len(errors)} failed")
    lines.append(f"- reference precision (reference_se <= bias_se / 10): "
                 + ("met in every cell" if bad_ref.empty else
                    f"NOT met in {len(bad_ref)} cell(s): "
                    + ", ".join(sorted({f'{r.scenario}/{r.quantity}' for r in bad_ref.itertuples()}))
                    + " (raise the reference samples)"))
    lines.append("- predicted bias signs (Jensen; exact = 0) at 4 se: "
                 + ("all agree" if bad_sign.empty else
                    f"{len(bad_sign)} disagree: " + ", ".join(
                        f"{r.scenario}/{r.quantity}/{r.estimator} B={r.batch_size} "
                        f"(bias {r.bias:.3g} ± {r.bias_se:.2g})"
                        for r in bad_sign.head(10).itertuples())))
    for r in errors.head(10).itertuples():
        lines.append(f"- error in {r.scenario}/{r.quantity}/{r.estimator} B={r.batch_size} k={r.k}: {r.error}")
    return lines


def write_report(folder: str | os.PathLike) -> list[Path]:
    r"""Redraw every plot and ``README.md`` in ``folder`` from its CSVs; returns the files written.

    Raises:
        FileNotFoundError: the folder does not exist or holds no results CSV.
    """
    folder = Path(folder)
    frames = load_results(folder)
    frames = {k: v for k, v in frames.items() if len(v)}
    if not frames:
        raise FileNotFoundError(f"no results CSV (*.csv) in {str(folder)!r}; run `python -m estimators bench` first")
    written = []
    doc = ["# Benchmark results", "",
           "Generated by `python -m estimators report` from the CSVs in this folder; do not edit by hand.",
           "All values in nats. Bias = mean of R replicate estimates - exact reference; "
           "± is the Monte Carlo standard error.", ""]
    for name, df in frames.items():
        plots = []
        for suffix, fn in (("bias", plot_bias), ("pareto", plot_pareto), ("log_px", plot_log_px)):
            path = folder / f"{name}-{suffix}.png"
            if fn(df, path):
                written.append(path)
                plots.append(path.name)
        d = latest_cells(df)
        meta = d.iloc[0] if len(d) else df.iloc[0]
        doc += [f"## {name}", "",
                f"`{name}.csv`: {len(df)} rows; seed {int(meta['seed'])}, dtype {meta['dtype']}.", ""]
        doc += [f"![{p}]({p})" for p in plots] + [""]
        doc += ["### Checks", ""] + _checks(df) + [""]
        best = _best_tables(df)
        if best:
            doc += ["### Lowest RMSE", "",
                    "Among the estimators one would train with (`exact`, the full-N evaluation, and the "
                    "published variants are left out); RMSE in brackets.", ""]
            for t in best:
                doc += [t, ""]
        bias = _bias_tables(df)
        if bias:
            doc += ["### Bias by scenario", ""]
            for t in bias:
                doc += [t, ""]
        px = _log_px_table(df)
        if px:
            doc += ["### log p(x)", "", px, ""]
    doc += ["## Columns", "", _md_table(["column", "meaning"], [[f"`{k}`", v] for k, v in COLUMN_DOC.items()]), ""]
    readme = folder / "README.md"
    write_atomic(readme, "\n".join(doc))
    written.append(readme)
    return written


def terminal_table(df: pd.DataFrame, max_rows: int = 40) -> str:
    r"""A compact plain-text summary: per scenario and quantity, the lowest-RMSE estimator at each
    batch size, then failed cells."""
    best = best_by_rmse(df)
    lines = []
    if not best.empty:
        batch = sorted(set(best["batch_size"]))
        head = ["scenario", "quantity"] + [f"B={b}" for b in batch]
        rows = []
        for label in dict.fromkeys(best["label"]):
            for q in [q for q in AGGREGATE_QUANTITIES if q in set(best["quantity"])]:
                cells = []
                for b in batch:
                    r = best[(best["label"] == label) & (best["quantity"] == q) & (best["batch_size"] == b)]
                    cells.append(f"{r.iloc[0]['series']} {r.iloc[0]['rmse']:.2g}" if len(r) else "")
                rows.append([label, q] + cells)
        rows = rows[:max_rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        lines.append("lowest RMSE (estimator, rmse in nats):")
        for r in [head] + rows:
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    d = latest_cells(df)
    px = d[d["quantity"] == LOG_PX]
    if len(px):
        lines.append("log p(x): |bias| at the largest k")
        for (task, est), g in px.groupby(["scenario", "estimator"], sort=False):
            r = g.sort_values("k").iloc[-1]
            lines.append(f"  {task:<24} {est:<18} k={int(r['k']):<5} bias {_fmt(r['bias'], r['bias_se'])}")
    errors = df[df["status"] != "ok"]
    if len(errors):
        lines.append(f"{len(errors)} failed cell(s), e.g. {errors.iloc[0]['estimator']}: {errors.iloc[0]['error']}")
    return "\n".join(lines)
