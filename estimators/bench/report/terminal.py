r"""A compact plain-text summary of a benchmark CSV, for the terminal."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from .format import fmt
from .budget import equal_cost
from .select import aggregate_rows, latest_cells

__all__ = ["terminal_table", "estimator_tables", "WIDTH"]

WIDTH = 100  # columns of the terminal the tables are laid out for


def _aligned(head: list[str], rows: list[list[str]], indent: str = "  ", width: int = WIDTH) -> list[str]:
    r"""A plain-text table; where it is wider than ``width``, its columns after the first are split
    into several tables, each repeating the first column."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    chunks, current, used = [], [], len(indent) + widths[0]
    for i in range(1, len(head)):
        if current and used + 2 + widths[i] > width:
            chunks.append(current)
            current, used = [], len(indent) + widths[0]
        current.append(i)
        used += 2 + widths[i]
    chunks.append(current)
    lines = []
    for cols in chunks:
        for r in [head] + rows:
            lines.append(indent + "  ".join(str(r[i]).ljust(widths[i]) for i in [0] + cols).rstrip())
    return lines


def estimator_tables(df: pd.DataFrame, width: int = WIDTH) -> list[str]:
    r"""Per scenario and quantity: every estimator's bias ± se (rmse) at each batch size, laid
    out in ``width`` columns; the reference above each table."""
    d = aggregate_rows(df)
    lines = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        first = s.iloc[0]
        lines.append(f"{label} (N = {int(first['N'])}, D = {int(first['D'])}, R = {int(first['replicates'])}): "
                     "bias ± se (rmse) of every estimator, nats")
        batch = sorted(set(s["batch_size"]))
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            g = s[s["quantity"] == q]
            ref = g.iloc[0]
            se = ref["reference_se"] if ref["reference_se"] > 0 else None
            lines.append(f"{q}: reference {fmt(ref['reference'], se)} ({ref['reference_method']})")
            rows = []
            for series in dict.fromkeys(g["series"]):
                cells = []
                for b in batch:
                    r = g[(g["series"] == series) & (g["batch_size"] == b)]
                    if not len(r):
                        cells.append("")
                        continue
                    r = r.iloc[0]
                    rmse = f" ({r['rmse']:.3g})" if np.isfinite(r["rmse"]) else ""
                    cells.append(fmt(r["bias"], r["bias_se"]) + rmse)
                rows.append([series] + cells)
            lines += _aligned(["estimator"] + [f"B={b}" for b in batch], rows, width=width)
    return lines


def terminal_table(df: pd.DataFrame, max_rows: int = 40, *, every_estimator: bool = False,
                   width: int = WIDTH) -> str:
    r"""Per scenario and quantity, the lowest-RMSE estimator at equal encoder evaluations per estimate
    (:mod:`.budget`: within each budget, the grid's batch sizes, then at any cost); log p(x) at the
    largest k; then failed cells. With ``every_estimator``, first every estimator's bias ± se and rmse
    (:func:`estimator_tables`: for a posterior file of one's own). Laid out in ``width`` columns."""
    best, levels = equal_cost(df, "evaluations")
    lines = estimator_tables(df, width=width) if every_estimator else []
    if not best.empty:
        head = ["scenario / quantity"] + [f"<= {x:g} evals" if np.isfinite(x) else "any cost" for x in levels]
        rows = []
        for group in dict.fromkeys(best["group"]):
            for q in [q for q in AGGREGATE_QUANTITIES if q in set(best["quantity"])]:
                cells = []
                for level in levels:
                    r = best[(best["group"] == group) & (best["quantity"] == q) & (best["level"] == level)]
                    cells.append(f"{r.iloc[0]['series']} B={int(r.iloc[0]['batch_size'])} {r.iloc[0]['rmse']:.2g}"
                                 if len(r) else "")
                rows.append([f"{group} {q}"] + cells)
        lines.append("lowest RMSE at equal encoder evaluations per estimate (iwae: B (1 + k); exact: B + N; nats):")
        lines += _aligned(head, rows[:max_rows], indent="", width=width)
    d = latest_cells(df)
    px = d[d["quantity"] == LOG_PX]
    if len(px):
        lines.append("log p(x): |bias| at the largest k")
        for (task, est), g in px.groupby(["scenario", "estimator"], sort=False):
            r = g.sort_values("k").iloc[-1]
            lines.append(f"  {task:<24} {est:<18} k={int(r['k']):<5} bias {fmt(r['bias'], r['bias_se'])}")
    errors = df[df["status"] != "ok"]
    if len(errors):
        lines.append(f"{len(errors)} failed cell(s), e.g. {errors.iloc[0]['estimator']}: {errors.iloc[0]['error']}")
    return "\n".join(lines)
