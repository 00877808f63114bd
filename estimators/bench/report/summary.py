r"""The Markdown summary of a results folder (``README.md``) and :func:`write_report`, which
redraws every plot beside it.

For every benchmark CSV: its plots, the checks (failed cells, reference precision, predicted
signs), for each scenario and quantity the estimator with the lowest RMSE at each batch size,
bias tables, the log p(x) table; then the column table of the schema.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from ..metrics import Z_CHECK
from .columns import columns_table
from .format import fmt, md_table
from .plots import PLOTS, write_if_changed
from .select import aggregate_rows, best_by_rmse, latest_cells, load_results

__all__ = ["write_report", "summary_markdown"]


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
                    + md_table(["scenario"] + [f"B={b}" for b in batch], rows))
    return out


def _bias_tables(df: pd.DataFrame) -> list[str]:
    d = aggregate_rows(df)
    out = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        first = s.iloc[0]
        ref_parts = []
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            r = s[s["quantity"] == q].iloc[0]
            ref_parts.append(f"{q} = {fmt(r['reference'], r['reference_se'] or None)} ({r['reference_method']})")
        batch = sorted(set(s["batch_size"]))
        rows = []
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            for series in sorted(set(s[s["quantity"] == q]["series"])):
                g = s[(s["quantity"] == q) & (s["series"] == series)]
                cells = []
                for b in batch:
                    r = g[g["batch_size"] == b]
                    cells.append(fmt(r.iloc[0]["bias"], r.iloc[0]["bias_se"]) if len(r) else "")
                rows.append([q, series] + cells)
        out.append(f"#### {label} (N = {int(first['N'])}, D = {int(first['D'])}, R = {int(first['replicates'])})\n\n"
                   f"References: {'; '.join(ref_parts)}.\n\nBias ± Monte Carlo se (nats):\n\n"
                   + md_table(["quantity", "estimator"] + [f"B={b}" for b in batch], rows))
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
                cells.append(fmt(r["bias"], r["bias_se"]) + (f" (pred {pred:.3g})" if np.isfinite(pred) else ""))
            rows.append([task, est] + cells)
    return ("Bias of log p(x) ± se (predicted leading-order bias in brackets):\n\n"
            + md_table(["task", "estimator"] + [f"k={k}" for k in ks], rows))


def _checks(df: pd.DataFrame) -> list[str]:
    lines = []
    errors = df[df["status"] != "ok"]
    d = latest_cells(df)
    bad_ref = d[d["reference_se_ok"].astype(str).eq("False")]
    bad_sign = d[d["bias_sign_ok"].astype(str).eq("False")]
    lines.append(f"- cells: {len(d)} finished, {len(errors)} failed")
    lines.append("- reference precision (reference_se <= bias_se / 10, see docs/maths.md): "
                 + ("met in every cell" if bad_ref.empty else
                    f"NOT met in {len(bad_ref)} cell(s): "
                    + ", ".join(sorted({f'{r.scenario}/{r.quantity}' for r in bad_ref.itertuples()}))
                    + " (raise the reference samples)"))
    lines.append(f"- predicted bias signs (Jensen; IWAE-k a lower bound; exact = 0) within {Z_CHECK:g} "
                 "hypot(bias_se, reference_se): "
                 + ("all agree" if bad_sign.empty else
                    f"{len(bad_sign)} disagree: " + ", ".join(
                        f"{r.scenario}/{r.quantity}/{r.estimator} B={r.batch_size} "
                        f"(bias {r.bias:.3g} ± {r.bias_se:.2g})"
                        for r in bad_sign.head(10).itertuples())))
    for r in errors.head(10).itertuples():
        lines.append(f"- error in {r.scenario}/{r.quantity}/{r.estimator} B={r.batch_size} k={r.k}: {r.error}")
    return lines


def summary_markdown(frames: dict[str, pd.DataFrame], plots: dict[str, list[str]]) -> str:
    r"""The text of ``README.md`` for the benchmark CSVs ``frames`` (by name) and their plot files."""
    doc = ["# Benchmark results", "",
           "Generated by `python -m estimators report` from the CSVs in this folder; do not edit by hand.",
           "All values in nats. Bias = mean of R replicate estimates - exact reference; "
           "± is the Monte Carlo standard error.", ""]
    for name, df in frames.items():
        d = latest_cells(df)
        meta = d.iloc[0] if len(d) else df.iloc[0]
        doc += [f"## {name}", "",
                f"`{name}.csv`: {len(df)} rows; seed {int(meta['seed'])}, dtype {meta['dtype']}.", ""]
        doc += [f"![{p}]({p})" for p in plots.get(name, [])] + [""]
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
    doc += ["## Columns", "", "The CSV's columns, in file order (also in docs/csv.md):", "", columns_table(), ""]
    return "\n".join(doc)


def write_report(folder: str | os.PathLike, *, draw: bool = True) -> list[Path]:
    r"""Redraw every plot and ``README.md`` in ``folder`` from its CSVs; returns the report's files
    (a file whose content would not change is left untouched: same bytes, same mtime).

    With ``draw=False`` only ``README.md`` is rewritten; it shows the plots already in the folder.

    Raises:
        FileNotFoundError: the folder does not exist or holds no results CSV.
    """
    folder = Path(folder)
    frames = {k: v for k, v in load_results(folder).items() if len(v)}
    if not frames:
        raise FileNotFoundError(f"no results CSV (*.csv) in {str(folder)!r}; run `python -m estimators bench` first")
    written: list[Path] = []
    plots: dict[str, list[str]] = {}
    for name, df in frames.items():
        plots[name] = []
        for suffix, fn in PLOTS.items():
            path = folder / f"{name}-{suffix}.png"
            if fn(df, path) if draw else path.is_file():
                written += [path] if draw else []
                plots[name].append(path.name)
    readme = folder / "README.md"
    write_if_changed(readme, summary_markdown(frames, plots))  # unchanged text: the file is left alone
    return written + [readme]
