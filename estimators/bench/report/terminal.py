r"""A compact plain-text summary of a benchmark CSV, for the terminal."""
from __future__ import annotations

import pandas as pd

from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from .format import fmt
from .select import best_by_rmse, latest_cells

__all__ = ["terminal_table"]


def terminal_table(df: pd.DataFrame, max_rows: int = 40) -> str:
    r"""Per scenario and quantity, the lowest-RMSE estimator at each batch size; log p(x) at the
    largest k; then failed cells."""
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
            lines.append(f"  {task:<24} {est:<18} k={int(r['k']):<5} bias {fmt(r['bias'], r['bias_se'])}")
    errors = df[df["status"] != "ok"]
    if len(errors):
        lines.append(f"{len(errors)} failed cell(s), e.g. {errors.iloc[0]['estimator']}: {errors.iloc[0]['error']}")
    return "\n".join(lines)
