r"""Which rows a report shows: benchmark CSVs of a folder, the latest run of each cell, the
aggregate-quantity rows with their plot labels, and the lowest-RMSE estimator per cell."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..csvcheck import is_foreign
from ..grid import AGGREGATE_QUANTITIES
from ..store import read_results

__all__ = ["load_results", "latest_cells", "aggregate_rows", "direct_rows", "best_by_rmse", "is_published", "CELL",
           "DIRECT_FAMILIES"]

CELL = ["scenario", "separation", "quantity", "estimator", "batch_size", "k", "dtype"]
_EXCLUDE_BEST = {"exact"}  # full-N evaluation: the gold standard, not a minibatch choice
DIRECT_FAMILIES = ("moment", "density_ratio")  # estimators.direct: reported apart from the log q(z) estimators


OTHER_REPORTS = ("gradients", "training")  # results/ CSVs of `python -m estimators gradients`: their own schema


def load_results(folder: str | os.PathLike) -> dict[str, pd.DataFrame]:
    r"""Every benchmark ``*.csv`` in ``folder`` (not hidden, not one of :data:`OTHER_REPORTS`), by file stem.

    CSVs of someone else (no identity column in the header) are skipped; a benchmark CSV that
    fails the schema check (empty, truncated, a bad cell, a missing or unknown column) raises a
    ValueError naming the file, the line and the column."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {str(folder)!r} does not exist")
    out = {}
    for path in sorted(folder.glob("*.csv")):
        if path.name.startswith(".") or not path.is_file() or path.stem in OTHER_REPORTS or is_foreign(path):
            continue
        out[path.stem] = read_results(path)
    return out


def latest_cells(df: pd.DataFrame) -> pd.DataFrame:
    r"""One row per cell: finished rows only; where a cell was run with several replicate counts or
    seeds, the one with the most replicates (then the last written)."""
    if df.empty:
        return df
    ok = df[df["status"] == "ok"].copy()
    ok["_order"] = np.arange(len(ok))
    ok = ok.sort_values(["replicates", "_order"]).drop_duplicates(CELL, keep="last")
    return ok.sort_values("_order").drop(columns="_order")


def is_published(rows: pd.DataFrame) -> pd.Series:
    r"""Whether each row is a published variant (the column reads back as bool or as text)."""
    return rows["published_variant"].astype(str).eq("True")


def _scenario_labels(df: pd.DataFrame) -> pd.Series:
    seps = df.groupby("scenario")["separation"].nunique(dropna=True)
    many = set(seps[seps > 1].index)

    def label(row):
        if row["scenario"] in many:
            return f"{row['scenario']} (sep {row['separation']:g})"
        return str(row["scenario"])

    return df.apply(label, axis=1) if len(df) else pd.Series(dtype=str)


def _series_name(row) -> str:
    if int(row["k"]) <= 0:
        return str(row["estimator"])
    what = "steps" if row.get("family") == "density_ratio" else "k"  # the density ratio's k column: its steps
    return f"{row['estimator']} {what}={int(row['k'])}"


def _is_direct(d: pd.DataFrame) -> pd.Series:
    return d["family"].isin(DIRECT_FAMILIES)


def aggregate_rows(df: pd.DataFrame, *, direct: bool | None = False) -> pd.DataFrame:
    r"""The latest aggregate-quantity cells, with a scenario ``label`` (the separation where a scenario
    has several) and a ``series`` name (the estimator, with its k where it takes one).

    ``direct``: False (default) the estimators of log q(z) only; True the direct estimators only
    (``estimators.direct``: moment-based and density ratio); None both."""
    d = latest_cells(df)
    d = d[d["quantity"].isin(AGGREGATE_QUANTITIES)].copy()
    if d.empty:
        return d
    d["label"] = _scenario_labels(d)  # from every row, so that both kinds get the same labels
    if direct is not None:
        d = d[_is_direct(d) == bool(direct)].copy()
        if d.empty:
            return d
    d["series"] = d.apply(_series_name, axis=1)
    return d


def direct_rows(df: pd.DataFrame) -> pd.DataFrame:
    r"""The latest cells of the direct estimators (:func:`aggregate_rows` with ``direct=True``)."""
    return aggregate_rows(df, direct=True)


def best_by_rmse(df: pd.DataFrame) -> pd.DataFrame:
    r"""For each (scenario, quantity, batch size): the row with the lowest RMSE among estimators
    one would use in training (not ``exact``, not the published variants)."""
    d = aggregate_rows(df)
    if d.empty:
        return d
    d = d[~d["estimator"].isin(_EXCLUDE_BEST) & ~is_published(d)]
    idx = d.groupby(["label", "quantity", "batch_size"])["rmse"].idxmin()
    return d.loc[idx.values]
