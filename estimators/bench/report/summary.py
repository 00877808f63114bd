r"""The Markdown summary of a results folder (``README.md``) and :func:`write_report`, which
redraws every plot beside it.

For every benchmark CSV: its plots, the checks (failed cells, reference precision, predicted
signs, references inside their certified brackets), for each scenario and quantity the estimator with
the lowest RMSE at equal encoder evaluations and at equal time (:mod:`.budget`), every estimator's
bias and RMSE on mi and tc at the largest batch size with a sentence per published variant
(:mod:`.largest`), bias tables, each reference's certified bracket and its width, the direct
estimators (moment-based and density ratio), the log p(x) table; then the column table of the schema.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...files import write_if_changed
from ..grid import AGGREGATE_QUANTITIES, LOG_PX
from ..metrics import Z_CHECK
from .budget import TIE_Z, equal_cost
from .columns import columns_table
from .cost import COST_RULES, DENSITY_RATIO_EVAL, encoder_evaluations
from .format import fmt, md_table
from .largest import QUANTITIES as LARGEST_QUANTITIES, Z_DIFFER, largest_batch, largest_tables, rmse_cell, \
    variant_sentences
from .plots import PLOTS
from .select import DIRECT_FAMILIES, aggregate_rows, direct_rows, latest_cells, load_results

__all__ = ["write_report", "summary_markdown", "seconds_text", "DIRECT_DWARF"]

DIRECT_DWARF = 100.0  # |bias| / reference_se above which a direct estimator's cell needs no finer reference


def _bias_cells(g: pd.DataFrame, batch) -> list[str]:
    r"""``bias +- se`` of one series at each batch size ("" where it has no cell)."""
    out = []
    for b in batch:
        r = g[g["batch_size"] == b]
        out.append(fmt(r.iloc[0]["bias"], r.iloc[0]["bias_se"]) if len(r) else "")
    return out


def _level_head(budget: str, level: float) -> str:
    r"""A column header naming the budget: ``≤ 512 encoder evals``, ``≤ 3 ms``, ``any cost``."""
    if math.isinf(level):
        return "any cost"
    return f"≤ {level:g} encoder evals" if budget == "evaluations" else f"≤ {seconds_text(level)}"


def seconds_text(x: float) -> str:
    r"""Seconds in the unit a reader takes in at a glance: ``0.3 ms``, ``12 ms``, ``1.5 s``."""
    return f"{x:.2g} s" if x >= 1 else f"{float(f'{x * 1e3:.2g}'):g} ms"


def _winner_cell(r, budget: str) -> str:
    r"""``series B=b: rmse ± se``, the cost where the column has no budget, and the ties."""
    cell = f"{r['series']} B={int(r['batch_size'])}: {rmse_cell(r)}"
    if math.isinf(r["level"]):
        cell += (f" ({r['evaluations']:.0f} evals)" if budget == "evaluations"
                 else f" ({seconds_text(r['seconds'])})")
    if r["tied"]:
        cell += " (≈ " + ", ".join(r["tied"]) + ")"
    return cell


def _equal_cost_tables(df: pd.DataFrame, budget: str) -> list[str]:
    r"""Per quantity: the lowest RMSE ± se within each budget level, one row per scenario."""
    best, levels = equal_cost(df, budget)
    if best.empty:
        return []
    out = []
    for q in [q for q in AGGREGATE_QUANTITIES if q in set(best["quantity"])]:
        rows = []
        for group in dict.fromkeys(best["group"]):
            cells = []
            for level in levels:
                r = best[(best["group"] == group) & (best["quantity"] == q) & (best["level"] == level)]
                cells.append(_winner_cell(r.iloc[0], budget) if len(r) else "")
            rows.append([group] + cells)
        what = "encoder evaluations" if budget == "evaluations" else "time"
        out.append(f"**{q}** at equal {what} per estimate\n\n"
                   + md_table(["scenario"] + [_level_head(budget, x) for x in levels], rows))
    return out


_EQUAL_COST_INTRO = (
    "For each scenario and quantity: the estimator, at the batch size B shown, with the lowest RMSE ± se among "
    "those whose cost per estimate fits the budget at the head of the column; same scenario, same quantity, same "
    "budget. The published variants are left out, and so are the moment-based and density-ratio estimators "
    "(they converge to a moment-matched or a discriminator's value, not to the quantity: a low RMSE on one field "
    "does not carry over; see their own section). ≈: estimators whose RMSE is within "
    "{tie:g} hypot(rmse_se) of the winner's (not distinguishable at 95%; every estimator ran on the same replicate "
    "batches). `any cost`: the lowest RMSE whatever it costs, with its cost. The budgets stop at what the "
    "minibatch estimators spend at the largest batch size: beyond it no minibatch configuration of this grid "
    "spends the budget.")
_EVALUATIONS = (
    "**Encoder evaluations** (`≤ n encoder evals`): the posteriors q(z|x) one estimate reads, each an encoder "
    "pass in training: {rules}.")
_TIME = (
    "**Time** (`≤ t`): the estimator's own median seconds per estimate (`time_per_call_s`; the encoder's time "
    "not included), on the machine that wrote the CSV, in steps of about 3x.")


def _cost_rules_text() -> str:
    names = {"minibatch": "the minibatch estimators", "importance": "`iwae` (k more posteriors per sample)",
             "exact": "`exact` (every posterior of the data set)"}
    return ", ".join(f"{COST_RULES[f]} for {what}" for f, what in names.items())


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
                cells = _bias_cells(g, batch)
                rows.append([q, series] + cells)
        out.append(f"#### {label} (N = {int(first['N'])}, D = {int(first['D'])}, R = {int(first['replicates'])})\n\n"
                   f"References: {'; '.join(ref_parts)}.\n\nBias ± Monte Carlo se (nats):\n\n"
                   + md_table(["quantity", "estimator"] + [f"B={b}" for b in batch], rows))
    return out


_BRACKET_Z = 4.0  # a reference more than 4 se outside its bracket is an error (estimators.references.brackets)


def _outside_bracket(rows: pd.DataFrame) -> pd.Series:
    r"""Rows whose reference lies outside [reference_lower, reference_upper] by more than 4 reference_se
    (plus float rounding); False where there is no bracket (log_px)."""
    ref, se = rows["reference"].astype(float), rows["reference_se"].astype(float).fillna(0)
    lo, hi = rows["reference_lower"].astype(float), rows["reference_upper"].astype(float)
    slack = _BRACKET_Z * se + 1e-8 * (1 + ref.abs())
    return (ref < lo - slack) | (ref > hi + slack)


def _bracket_tables(df: pd.DataFrame) -> list[str]:
    r"""Per scenario: each quantity's reference, se, method, certified bracket and its width."""
    d = aggregate_rows(df, direct=None)
    out = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        rows = []
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            r = s[s["quantity"] == q].iloc[0]
            lo, hi = float(r["reference_lower"]), float(r["reference_upper"])
            if not (np.isfinite(lo) and np.isfinite(hi)):
                continue  # a row without a bracket (written before brackets existed)
            rows.append([q, f"{r['reference']:.6g}", f"{r['reference_se']:.2g}", r["reference_method"],
                         f"{lo:.6g}", f"{hi:.6g}", f"{hi - lo:.3g}"])
        if rows:
            out.append(f"**{label}**\n\n" + md_table(["quantity", "reference", "se", "method", "lower", "upper",
                                                        "width"], rows))
    return out


def _direct_tables(df: pd.DataFrame) -> list[str]:
    r"""The direct estimators: bias ± se at each batch size (the density ratio's: its training batch), the sd at
    the largest, and the median seconds per estimate, per scenario, quantity and estimator."""
    d = direct_rows(df)
    if d.empty:
        return []
    batch = sorted(set(int(b) for b in d["batch_size"]))
    rows = []
    for label in dict.fromkeys(d["label"]):
        s = d[d["label"] == label]
        for q in [q for q in AGGREGATE_QUANTITIES if q in set(s["quantity"])]:
            for series in sorted(set(s[s["quantity"] == q]["series"])):
                g = s[(s["quantity"] == q) & (s["series"] == series)]
                cells = _bias_cells(g, batch)
                last = g.sort_values("batch_size").iloc[-1]
                rows.append([label, q, series, f"{last['reference']:.4g}"] + cells
                            + [f"{last['sd']:.3g}", f"{g['time_per_call_s'].median():.2g}"])
    return [md_table(["scenario", "quantity", "estimator", "reference"] + [f"B={b}" for b in batch]
                     + ["sd (largest B)", "s / estimate"], rows)]


def _density_ratio_table(df: pd.DataFrame) -> str | None:
    r"""Density-ratio TC: bias ± se by field (rows, with the true tc) and training steps (columns)."""
    d = direct_rows(df)
    d = d[(d["family"] == "density_ratio") & (d["quantity"] == "tc")] if len(d) else d
    if d.empty:
        return None
    steps = sorted(set(int(k) for k in d["k"]))
    rows = []
    for label, ref in d.groupby("label", sort=False)["reference"].first().sort_values().items():
        g = d[d["label"] == label]
        cells = []
        for k in steps:
            r = g[g["k"] == k]
            cells.append(fmt(r.iloc[0]["bias"], r.iloc[0]["bias_se"]) if len(r) else "")
        rows.append([label, f"{ref:.4g}"] + cells)
    cost = ", ".join(f"{k} steps {encoder_evaluations(d[d['k'] == k]).max():.0f}" for k in steps)
    return (md_table(["scenario", "true tc"] + [f"{k} steps" for k in steps], rows)
            + f"\n\nEncoder evaluations per estimate (2 B steps + {DENSITY_RATIO_EVAL}, B = the training batch): {cost}.")


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
    imprecise = d[d["reference_se_ok"].astype(str).eq("False")]
    # The direct estimators' replicates vary less than the log q(z) estimators' the reference samples are
    # planned for; where their bias dwarfs the reference's se (DIRECT_DWARF times), the judgement stands.
    direct = imprecise["family"].isin(DIRECT_FAMILIES)
    dwarfed = direct & (imprecise["bias"].abs() >= DIRECT_DWARF * imprecise["reference_se"])
    bad_ref = imprecise[~dwarfed]
    bad_sign = d[d["bias_sign_ok"].astype(str).eq("False")]
    lines.append(f"- cells: {len(d)} finished, {len(errors)} failed")
    lines.append("- reference precision (reference_se <= bias_se / 10, see docs/maths.md): "
                 + ("met in every cell" if bad_ref.empty else
                    f"NOT met in {len(bad_ref)} cell(s): "
                    + ", ".join(sorted({f'{r.scenario}/{r.quantity}' for r in bad_ref.itertuples()}))
                    + " (raise the reference samples)")
                 + (f"; {int(dwarfed.sum())} cell(s) of the moment-based and density-ratio estimators fall short "
                    f"of it with a bias over {DIRECT_DWARF:g} reference_se from 0 (the reference's error cannot "
                    "change their verdict)" if dwarfed.any() else ""))
    lines.append(f"- predicted bias signs (Jensen; IWAE-k a lower bound; exact = 0) within {Z_CHECK:g} "
                 "hypot(bias_se, reference_se): "
                 + ("all agree" if bad_sign.empty else
                    f"{len(bad_sign)} disagree: " + ", ".join(
                        f"{r.scenario}/{r.quantity}/{r.estimator} B={r.batch_size} "
                        f"(bias {r.bias:.3g} ± {r.bias_se:.2g})"
                        for r in bad_sign.head(10).itertuples())))
    agg = d[d["quantity"].isin(AGGREGATE_QUANTITIES)]
    if "reference_lower" in agg and len(agg):
        outside = agg[_outside_bracket(agg)]
        bracketed = agg["reference_lower"].astype(float).notna() & agg["reference_upper"].astype(float).notna()
        unbracketed = agg[~bracketed]
        lines.append(f"- references inside their certified brackets (within {_BRACKET_Z:g} reference_se): "
                     + ("every one" if outside.empty and unbracketed.empty else
                        f"NOT {len(outside)} outside, {len(unbracketed)} without a bracket: " + ", ".join(
                            sorted({f'{r.scenario}/{r.quantity}' for r in pd.concat([outside, unbracketed])
                                    .itertuples()}))))
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
        evaluations, time = _equal_cost_tables(df, "evaluations"), _equal_cost_tables(df, "seconds")
        if evaluations or time:
            doc += ["### Lowest RMSE at equal cost", "", _EQUAL_COST_INTRO.format(tie=TIE_Z), ""]
            if evaluations:
                doc += [_EVALUATIONS.format(rules=_cost_rules_text()), ""]
                for t in evaluations:
                    doc += [t, ""]
            if time:
                doc += [_TIME, ""]
                for t in time:
                    doc += [t, ""]
        largest = largest_tables(df)
        if largest:
            B = largest_batch(df)
            doc += [f"### At the largest batch size (B = {B})", "",
                    f"Each estimator's bias ± se and RMSE ± se on {' and '.join(LARGEST_QUANTITIES)} at B = {B}, "
                    "the largest batch size of this grid, with its encoder evaluations per estimate; the "
                    "moment-based estimators (tc only) after the estimators of log q(z), the published variants "
                    "last.", ""]
            for t in largest:
                doc += [t, ""]
            sentences = variant_sentences(df)
            if sentences:
                doc += ["How each published variant compares with the correct estimator it was meant to compute "
                        f"(generated from the tables above; \"beyond {Z_DIFFER:g} se\": the two biases differ by "
                        f"more than {Z_DIFFER:g} hypot(bias_se)):", ""]
                doc += [f"- {t}" for t in sentences] + [""]
        bias = _bias_tables(df)
        if bias:
            doc += ["### Bias by scenario", ""]
            for t in bias:
                doc += [t, ""]
        brackets = _bracket_tables(df)
        if brackets:
            doc += ["### Certified brackets", "",
                    "Each reference with the deterministic bounds around it (docs/maths.md, \"Certified brackets\": "
                    "pairwise-distance bounds on the mixture entropy, the moment-matched Gaussian, 0 <= mi <= log N, "
                    "tc >= 0); a reference outside its bracket by more than 4 se would be an error.", ""]
            for t in brackets:
                doc += [t, ""]
        direct = _direct_tables(df)
        if direct:
            doc += ["### Moment-based and density-ratio estimators", "",
                    "`estimators.direct` (docs/maths.md, \"Density-ratio and moment-based estimators\"): "
                    "`moment_kl` and `moment_dimwise_kl` are lower bounds of the batch's own aggregate posterior "
                    "(plug-in estimates of the field's bounds), `moment_tc` and `gaussian_tc_means` (the TC metric "
                    "of disentanglement evaluation code) are estimates, `density_ratio` is the FactorVAE "
                    "discriminator trained on the whole field (B: its training batch). Time: seconds per estimate.",
                    ""] + direct + [""]
        ratio = _density_ratio_table(df)
        if ratio:
            doc += ["### Density-ratio TC against budget and true tc", "",
                    "Bias ± se of the density-ratio TC over independent trainings, by field (sorted by its true "
                    "tc) and training steps.", "", ratio, ""]
        px = _log_px_table(df)
        if px:
            doc += ["### log p(x)", "", px, ""]
    doc += ["## Columns", "", "The CSV's columns, in file order (also in docs/csv.md):", "", columns_table(), ""]
    return "\n".join(doc)


PARALLEL_ROWS = 1000  # from this many rows, the plots are drawn in parallel processes (Agg is single-threaded)


def _draw_one(suffix: str, df: pd.DataFrame, path: Path) -> bool:
    return PLOTS[suffix](df, path)  # module level, so that a worker process can run it by name


def _draw(jobs: list[tuple], frames: dict[str, pd.DataFrame]) -> list[bool]:
    r"""Draw every (name, suffix, path) plot; whether each was drawn. A big report draws its plots in up to
    one process per core (the standard one: 43 s of rendering, 6 plots); the bytes are the same either way."""
    cores = os.cpu_count() or 1
    if cores < 2 or sum(len(df) for df in frames.values()) < PARALLEL_ROWS:
        return [_draw_one(suffix, frames[name], path) for name, suffix, path in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold torch's thread pools, which a forked child must not inherit
    with ProcessPoolExecutor(min(cores, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_draw_one, suffix, frames[name], path) for name, suffix, path in jobs]
        return [f.result() for f in futures]


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
    jobs = [(name, suffix, folder / f"{name}-{suffix}.png") for name in frames for suffix in PLOTS]
    drawn = _draw(jobs, frames) if draw else [path.is_file() for _, _, path in jobs]
    for (name, _, path), shown in zip(jobs, drawn):
        plots.setdefault(name, [])
        if shown:
            written += [path] if draw else []
            plots[name].append(path.name)
    readme = folder / "README.md"
    write_if_changed(readme, summary_markdown(frames, plots))  # unchanged text: the file is left alone
    return written + [readme]
