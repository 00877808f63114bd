r"""The report's section "At the largest batch size": every estimator's bias and RMSE (each +- se) on mi
and tc at the grid's largest batch size, per scenario, and one generated sentence per published variant
comparing it with the correct estimator it was meant to compute (:data:`COUNTERPARTS`).

The sentences come from the numbers only: the range of the variant's bias and of its counterpart's
over the scenarios, in how many scenarios the two biases differ by more than :data:`Z_DIFFER`
hypot(bias_se) (the reference is shared, so its error cancels in the difference; the two run on the same
replicate batches, so the hypot of the two se is conservative), and the range of the RMSE ratio.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...direct import DIRECT_ESTIMATORS
from ...log_qz import ESTIMATORS
from ..metrics import ROUNDING, Z_CHECK
from .cost import encoder_evaluations
from .format import fmt, md_table
from .select import aggregate_rows, is_published

__all__ = ["COUNTERPARTS", "QUANTITIES", "Z_DIFFER", "largest_batch", "largest_rows", "largest_tables",
           "variant_sentences", "rmse_cell"]

# published variant -> the correct estimator it was meant to compute
COUNTERPARTS = {
    "mss_shipped": "mss",      # the MSS weight matrix, filled with the wrong stride
    "mss_per_dim": "mss",      # the (shipped) MSS matrix added once per dimension
    "tc_no_constant": "mws",   # the same code's minibatch weighted sampling, without its constant
    "hfvae": "stratified",     # stratified plus a constant offset
    "calc_mi": "naive",        # naive's mi in expectation, with an analytic own term
}
QUANTITIES = ("mi", "tc")  # the quantities the section reports
Z_DIFFER = Z_CHECK  # a difference of two biases beyond Z_DIFFER se is counted as real

_ORDER = {name: i for i, name in enumerate(list(ESTIMATORS) + list(DIRECT_ESTIMATORS))}


def largest_batch(df: pd.DataFrame) -> int | None:
    r"""The largest batch size of the log q(z) estimators' aggregate cells of ``df`` (None: there are none)."""
    d = aggregate_rows(df)
    return int(d["batch_size"].max()) if len(d) else None


def largest_rows(df: pd.DataFrame) -> pd.DataFrame:
    r"""The aggregate cells at :func:`largest_batch`, for :data:`QUANTITIES`: the estimators of log q(z) and
    the moment-based ones (the density ratio's batch is its training batch, not a minibatch), with a
    ``kind`` column (0 correct, 1 direct, 2 published), sorted by kind, registry order and k, and the
    encoder evaluations per estimate (``evaluations``)."""
    B = largest_batch(df)
    if B is None:
        return pd.DataFrame()
    d = aggregate_rows(df, direct=None)
    d = d[(d["batch_size"] == B) & d["quantity"].isin(QUANTITIES) & (d["family"] != "density_ratio")].copy()
    direct = d["family"].isin(("moment",))
    d["kind"] = np.where(is_published(d), 2, np.where(direct, 1, 0))
    d["_order"] = d["estimator"].map(_ORDER).fillna(len(_ORDER))
    d["evaluations"] = encoder_evaluations(d)
    return d.sort_values(["kind", "_order", "k"], kind="stable").drop(columns="_order")


def rmse_cell(r) -> str:
    r"""``rmse ± se`` of one row; ``0 (rounding)`` where the estimates equal the reference up to rounding."""
    if np.isfinite(r["rmse"]) and r["rmse"] <= ROUNDING * (1.0 + abs(float(r["reference"]))):
        return "0 (rounding)"
    return fmt(r["rmse"], r["rmse_se"])


def _bias_cell(r) -> str:
    if abs(float(r["bias"])) <= ROUNDING * (1.0 + abs(float(r["reference"]))):
        return "0 (rounding)"
    return fmt(r["bias"], r["bias_se"])


def largest_tables(df: pd.DataFrame) -> list[str]:
    r"""One Markdown block per scenario: its references, then per estimator the bias ± se and RMSE ± se of
    each of :data:`QUANTITIES` at the largest batch size and the encoder evaluations per estimate."""
    d = largest_rows(df)
    if d.empty:
        return []
    out = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        qs = [q for q in QUANTITIES if q in set(s["quantity"])]
        refs = "; ".join(f"{q} = {fmt(r['reference'], r['reference_se'] or None)}"
                         for q in qs for r in [s[s["quantity"] == q].iloc[0]])
        rows = []
        for series in dict.fromkeys(s["series"]):
            g = s[s["series"] == series]
            cells = []
            for q in qs:
                r = g[g["quantity"] == q]
                cells += [_bias_cell(r.iloc[0]), rmse_cell(r.iloc[0])] if len(r) else ["", ""]
            kind = int(g["kind"].iloc[0])
            name = f"{series} (published)" if kind == 2 else series
            rows.append([name] + cells + [f"{g['evaluations'].iloc[0]:.0f}"])
        head = ["estimator"] + [f"{q} {what}" for q in qs for what in ("bias", "RMSE")] + ["encoder evals"]
        first = s.iloc[0]
        out.append(f"**{label}** (N = {int(first['N'])}, D = {int(first['D'])}, R = {int(first['replicates'])}; "
                   f"references: {refs})\n\n" + md_table(head, rows))
    return out


def _span(x: np.ndarray, fmt_one) -> str:
    lo, hi = float(np.min(x)), float(np.max(x))
    return fmt_one(lo) if fmt_one(lo) == fmt_one(hi) else f"{fmt_one(lo)} to {fmt_one(hi)}"


def _signed(x: float) -> str:
    return f"{x:+.3g}"


def _ratio(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{float(f'{x:.2g}'):.0f}"  # 0.9, 2.7, 120, 5200


def _compare(v: pd.DataFrame, c: pd.DataFrame, q: str, variant: str, counterpart: str) -> str | None:
    r"""The part of the sentence on quantity ``q``: biases, how many scenarios differ, RMSE ratio."""
    pair = v[v["quantity"] == q].merge(c[c["quantity"] == q], on="label", suffixes=("_v", "_c"))
    if pair.empty:
        return None
    n = len(pair)
    diff = pair["bias_v"] - pair["bias_c"]
    se = np.hypot(pair["bias_se_v"].fillna(0), pair["bias_se_c"].fillna(0))
    differ = int((diff.abs() > Z_DIFFER * se).sum())
    where = "the scenario" if n == 1 else f"the {n} scenarios"
    text = (f"on {q} its bias is {_span(pair['bias_v'], _signed)} nats over {where} against "
            f"{_span(pair['bias_c'], _signed)} for `{counterpart}`, "
            f"beyond {Z_DIFFER:g} se of it in {differ} of {n}")
    ok = pair["rmse_c"] > 0
    if ok.any():
        ratio = (pair["rmse_v"] / pair["rmse_c"])[ok]
        text += f", and its RMSE {_span(ratio, _ratio)} times `{counterpart}`'s"
    return text


def variant_sentences(df: pd.DataFrame) -> list[str]:
    r"""One sentence per published variant at the largest batch size, comparing it with its counterpart
    (:data:`COUNTERPARTS`) on each of :data:`QUANTITIES` both define; a variant without a counterpart row
    gets a sentence saying so."""
    d = largest_rows(df)
    if d.empty:
        return []
    B = int(d["batch_size"].iloc[0])
    out = []
    for variant in dict.fromkeys(d[d["kind"] == 2]["estimator"]):
        counterpart = COUNTERPARTS.get(variant)
        v = d[(d["estimator"] == variant) & (d["k"] == 0)]
        c = d[(d["estimator"] == counterpart) & (d["k"] == 0)] if counterpart else d.iloc[:0]
        if c.empty:
            out.append(f"`{variant}` (published): no correct counterpart at B = {B} in this CSV.")
            continue
        parts = [p for q in QUANTITIES if (p := _compare(v, c, q, variant, counterpart))]
        if parts:
            out.append(f"`{variant}` (published) against `{counterpart}` at B = {B}: " + "; ".join(parts) + ".")
    return out
