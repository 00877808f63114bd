r"""The lowest RMSE at equal cost: for each scenario, quantity and budget, the best estimator whose
cost per estimate fits the budget.

Two budgets (:data:`BUDGETS`): encoder evaluations per estimate (:func:`..cost.encoder_evaluations`)
and seconds per estimate (``time_per_call_s``). The candidates are the estimators of log q(z) one
could choose (published variants left out), compared only within one scenario (label and dtype) and
one quantity. The direct estimators (``estimators.direct``) are not candidates: they converge to a
moment-matched or discriminator value, not to the quantity, so a low RMSE on one field is that field's
luck, not a choice that carries over.

The budget levels reach as far as the minibatch estimators (those that cost B) do at the grid's
largest batch size: beyond it no minibatch configuration spends the budget, and the comparison would
favour the estimators that read more per sample. Encoder evaluations: the grid's batch sizes; time:
1-3 steps (1e-4, 3e-4, 1e-3 s, ...) from the fastest estimate to the slowest minibatch estimate at
the largest batch size. A last level, ``inf``, shows the lowest RMSE whatever it costs.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .cost import encoder_evaluations
from .select import aggregate_rows, is_published

__all__ = ["BUDGETS", "TIE_Z", "candidates", "budget_levels", "lowest_within", "equal_cost"]

BUDGETS = ("evaluations", "seconds")  # the two cost columns candidates() adds
TIE_Z = 1.96  # a runner-up within TIE_Z hypot(rmse_se) of the winner is not distinguishable from it (95%)


def candidates(df: pd.DataFrame) -> pd.DataFrame:
    r"""The rows an equal-cost comparison chooses from: latest aggregate cells of the estimators of log q(z)
    but the published variants, with finite RMSE and cost, and the columns ``evaluations`` (encoder evaluations
    per estimate), ``seconds`` (``time_per_call_s``) and ``group`` (the scenario label, with the dtype
    where the rows have several)."""
    d = aggregate_rows(df)
    if d.empty:
        return d
    d = d[~is_published(d)].copy()
    d["evaluations"] = encoder_evaluations(d)
    d["seconds"] = d["time_per_call_s"].astype(float)
    several = d["dtype"].nunique() > 1
    d["group"] = d["label"] + (", " + d["dtype"].astype(str) if several else "")
    keep = np.isfinite(d["rmse"].astype(float)) & np.isfinite(d["evaluations"]) & (d["seconds"] > 0)
    return d[keep]


def _costs_B(d: pd.DataFrame) -> pd.DataFrame:
    r"""The rows whose cost is their batch size (the minibatch family)."""
    return d[(d["evaluations"] == d["batch_size"].astype(float)) & (d["batch_size"] > 0)]


def _steps_of_3(lo: float, hi: float) -> list[float]:
    r"""1, 3, 10, 30, ... times powers of ten: from the first >= ``lo`` to the first >= ``hi``."""
    e = math.floor(math.log10(lo))
    out: list[float] = []
    while True:
        for m in (1.0, 3.0):
            level = float(f"{m * 10.0 ** e:.3g}")  # 0.0003, not 0.00030000000000000003
            if level >= lo * (1 - 1e-9):
                out.append(level)
                if level >= hi * (1 - 1e-9):
                    return out
        e += 1


def budget_levels(d: pd.DataFrame, budget: str) -> list[float]:
    r"""The budget levels of :func:`candidates` rows ``d`` (see the module docstring), ending with ``inf``;
    ``[]`` where no minibatch estimator ran (nothing to compare at equal cost)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    per = _costs_B(d)
    if per.empty:
        return []
    if budget == "evaluations":
        return sorted(set(float(b) for b in per["batch_size"])) + [math.inf]
    largest = per[per["batch_size"] == per["batch_size"].max()]
    return _steps_of_3(float(d["seconds"].min()), float(largest["seconds"].max())) + [math.inf]


def lowest_within(d: pd.DataFrame, budget: str, levels: list[float]) -> pd.DataFrame:
    r"""For each (group, quantity) of :func:`candidates` rows ``d`` and each level of ``levels``: the row
    with the lowest RMSE among those whose ``budget`` cost is at most the level (equal RMSE: the cheaper,
    then the first), with the columns ``level`` and ``tied`` (the other series whose RMSE is within
    :data:`TIE_Z` hypot(rmse_se) of the winner's at that level, a tuple); no row where nothing fits."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    out = []
    for _, g in d.groupby(["group", "quantity"], sort=False):
        g = g.sort_values(["rmse", budget], kind="stable")
        for level in levels:
            fits = g[g[budget] <= level * (1 + 1e-12)]
            if not len(fits):
                continue
            best = fits.iloc[0]
            se = np.hypot(fits["rmse_se"].astype(float).fillna(0), float(np.nan_to_num(float(best["rmse_se"]))))
            close = fits[(fits["rmse"] - best["rmse"] <= TIE_Z * se) & (fits["series"] != best["series"])]
            out.append(best.to_dict() | {"level": level, "tied": tuple(dict.fromkeys(close["series"]))})
    return pd.DataFrame(out)


def equal_cost(df: pd.DataFrame, budget: str) -> tuple[pd.DataFrame, list[float]]:
    r"""The winners of :func:`lowest_within` on the benchmark rows ``df`` at :func:`budget_levels`, and the
    levels; empty where fewer than two estimators compete."""
    d = candidates(df)
    if d.empty or d["estimator"].nunique() < 2:
        return pd.DataFrame(), []
    levels = budget_levels(d, budget)
    return (lowest_within(d, budget, levels) if levels else pd.DataFrame()), levels
