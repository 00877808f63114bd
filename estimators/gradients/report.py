r"""The gradient study's report: ``gradients.png`` (metrics against batch size) and ``gradients.md`` (tables).

The PNG is byte-stable (fixed dpi, no software metadata; rewritten only when its bytes change), like the benchmark's
plots. The markdown holds, per field and quantity, rel_bias +- se and snr of every estimator at every B, which
estimators share a gradient, and the training study's table when a ``training.csv`` is given.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import pyplot, save_png
from ..files import write_if_changed

__all__ = ["plot_gradients", "gradients_markdown", "training_markdown", "write_report"]

PLOT_METRICS = (("rel_bias", "rel. bias ||E g^ - g||/||g|| (symlog)"), ("snr", "SNR ||E g^|| / sd"),
                ("cos_single", "cos(g^_r, g): one step"))
QUANTITY_ORDER = ("grad_mi", "grad_kl_agg", "grad_tc", "grad_dimwise_kl")
DPI = 100


def _quantities(df: pd.DataFrame) -> list[str]:
    return [q for q in QUANTITY_ORDER if q in set(df["quantity"])]


def plot_gradients(df: pd.DataFrame, path: Path) -> bool:
    r"""Rows: (field, metric); columns: quantities; x: B (log); one line per estimator (error bars 1.96 se).

    Estimators whose gradient equals an earlier one's on every replicate (``same_gradient_as``) are drawn once,
    labelled "a = b". Returns False (writes nothing) for an empty table."""
    if df.empty:
        return False
    plt = pyplot()
    fields = list(dict.fromkeys(df["field"]))
    quantities = _quantities(df)
    # one series per estimator (and k), merged with those it equals everywhere
    df = df.copy()
    df["series"] = df["estimator"] + df["k"].map(lambda k: "" if pd.isna(k) else f" k={int(k)}")
    alias: dict[str, str] = {}
    for series, g in df.groupby("series", sort=False):
        same = set(g["same_gradient_as"].fillna(""))
        if len(same) == 1 and next(iter(same)):
            alias[series] = next(iter(same))
    labels: dict[str, list[str]] = {}
    for series in dict.fromkeys(df["series"]):
        root = series
        while root in alias and alias[root] in set(df["series"]):
            root = alias[root]
        labels.setdefault(root, []).append(series)
    drawn = list(labels)
    colors = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)
    style = {s: {"color": colors[i % len(colors)], "marker": "os^vD<>ph*"[i % 10]} for i, s in enumerate(drawn)}
    rows = [(f, m) for f in fields for m in PLOT_METRICS]
    fig, axes = plt.subplots(len(rows), len(quantities), figsize=(3.6 * len(quantities), 2.5 * len(rows)),
                             squeeze=False)
    for r, (field, (metric, label)) in enumerate(rows):
        for c, q in enumerate(quantities):
            ax = axes[r, c]
            sub = df[(df["field"] == field) & (df["quantity"] == q)]
            for series in drawn:
                s = sub[sub["series"] == series].sort_values("batch_size")
                if s.empty:
                    continue
                name = " = ".join(labels[series])
                ax.errorbar(s["batch_size"], s[metric], yerr=1.96 * s[f"{metric}_se"].fillna(0.0), label=name,
                            capsize=2, lw=1.1, ms=3.5, **style[series])
            ax.set_xscale("log", base=2)
            Bs = sorted(set(int(b) for b in sub["batch_size"])) or [1]
            ax.set_xticks(Bs, [str(b) for b in Bs])
            ax.minorticks_off()
            if metric == "snr":
                ax.set_yscale("log")
                ax.minorticks_off()
            if metric == "cos_single":
                low = float(np.nanmin(sub[metric])) if len(sub) else 0.0
                ax.set_ylim(max(-1.05, min(-0.1, low - 0.1)), 1.05)
            if metric == "rel_bias":  # symlog: the worst estimators are off by factors of 10, the best by percents
                ax.set_yscale("symlog", linthresh=0.1, linscale=0.8)
                ax.set_ylim(bottom=0.0)
                ax.minorticks_off()
            ax.grid(alpha=0.3, lw=0.5)
            ax.tick_params(which="both", labelsize=7)
            ax.set_title(f"{field}: {q}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel("batch size B", fontsize=8)
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    width, height = fig.get_figwidth(), fig.get_figheight()
    ncol = min(len(names), 4)
    legend_in = 0.6 + 0.22 * math.ceil(len(names) / max(ncol, 1))
    fig.suptitle("Gradients of the minibatch estimates vs the exact gradient (error bars: 1.96 bootstrap se)",
                 fontsize=10, y=1 - 0.12 / height)
    fig.legend(handles, names, loc="lower center", ncol=ncol, fontsize=7.5, frameon=False)
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=legend_in / height, top=1 - 0.5 / height,
                        wspace=0.25, hspace=0.55)
    return save_png(fig, path, DPI)


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.0f}"


def _bias_cell(row) -> str:
    r"""``rel_bias ± se · snr``; the bias in parentheses where rel_bias^2 is within 3 of its ses of 0."""
    bias = f"{_fmt(row['rel_bias'], 2)} ± {_fmt(row['rel_bias_se'], 2)}"
    sq, se = row["rel_bias_sq"], row["rel_bias_sq_se"]
    if not (math.isfinite(sq) and math.isfinite(se)) or sq < 3 * se:
        bias = f"({bias})"
    return f"{bias} · {_fmt(row['snr'], 2)}"


def _step_table(f: pd.DataFrame, q: str) -> list[str]:
    r"""What one step sees, for quantity ``q`` of one field: cos(E g^, g), ||E g^||/||g||, cos(g^_r, g), rel_rmse."""
    sub = f[f["quantity"] == q]
    if sub.empty:
        return []
    Bs = sorted(set(int(b) for b in sub["batch_size"]))
    lines = [f"*{q}, direction and size*: `cos(E g^, g), ||E g^||/||g||, cos(g^_r, g), rel_rmse` (the mean "
             "gradient's direction and length, one replicate's direction, its relative RMSE)", "",
             "| estimator | " + " | ".join(f"B = {b}" for b in Bs) + " |", "|---|" + "---|" * len(Bs)]
    sub = sub.assign(series=sub["estimator"] + sub["k"].map(lambda k: "" if pd.isna(k) else f" (k={int(k)})"))
    for series, s in sub.groupby("series", sort=False):
        if any(x for x in s["same_gradient_as"].fillna("")):
            continue  # equal to an earlier row
        cells = []
        for b in Bs:
            r = s[s["batch_size"] == b]
            cells.append("" if r.empty else ", ".join(_fmt(r.iloc[0][m], 2) for m in
                                                       ("cos_mean", "norm_ratio", "cos_single", "rel_rmse")))
        lines.append(f"| {series} | " + " | ".join(cells) + " |")
    return lines + [""]


def gradients_markdown(df: pd.DataFrame) -> str:
    r"""The summary's gradient section: settings, then per field and quantity a table of rel_bias +- se / snr."""
    if df.empty:
        return "## Gradient study\n\n(no rows)\n"
    first = df.iloc[0]
    lines = ["## Gradient study: what training sees", "",
             f"Preset `{first['preset']}`, R = {int(first['replicates'])} replicate batches per cell (the same "
             f"batches for every estimator), exact gradient from {int(first['exact_groups'])} groups x "
             f"{int(first['exact_samples'])} draws per component over all N components; seed {int(first['seed'])}.",
             "Each cell: `rel_bias ± se · snr` -- rel_bias = ||E g^ - g|| / ||g|| (noise-debiased), in parentheses "
             "where its square is within 3 ses of 0 (no bias detectable); snr = ||E g^|| / sqrt(E||g^ - E g^||^2) "
             "of one replicate. ses: bootstrap over the replicates and the exact gradient's groups. `same as`: the "
             "estimator whose gradient this one equals on every replicate (e.g. a constant offset in the value); "
             "such rows are left out of the direction tables.", ""]
    fields = list(dict.fromkeys(df["field"]))
    for field in fields:
        f = df[df["field"] == field]
        r0 = f.iloc[0]
        lines += [f"### {field} (N = {int(r0['N'])}, D = {int(r0['D'])}, P = {int(r0['num_params'])} parameters)", ""]
        for q in _quantities(f):
            sub = f[f["quantity"] == q]
            Bs = sorted(set(int(b) for b in sub["batch_size"]))
            g = sub.iloc[0]
            lines += [f"**{q}** (||g|| = {_fmt(g['exact_grad_norm'], 4)}, se {_fmt(g['exact_grad_se'], 4)})", "",
                      "| estimator | " + " | ".join(f"B = {b}" for b in Bs) + " | same as |",
                      "|---|" + "---|" * len(Bs) + "---|"]
            sub = sub.assign(series=sub["estimator"] + sub["k"].map(lambda k: "" if pd.isna(k) else f" (k={int(k)})"))
            for series, s in sub.groupby("series", sort=False):
                cells = []
                for b in Bs:
                    row = s[s["batch_size"] == b]
                    if row.empty:
                        cells.append("")
                        continue
                    cells.append(_bias_cell(row.iloc[0]))
                same = ", ".join(sorted(set(x for x in s["same_gradient_as"].fillna("") if x)))
                star = "*" if bool(s.iloc[0]["published_variant"]) else ""
                lines.append(f"| {series}{star} | " + " | ".join(cells) + f" | {same} |")
            lines.append("")
            if q in ("grad_mi", "grad_tc"):
                lines += _step_table(f, q)
    lines += ["\\* published variant (a replica of shipped code).", ""]
    return "\n".join(lines)


def training_markdown(tr: pd.DataFrame) -> str:
    r"""The training study's table: per estimator and B, mean ± sd over seeds of the exact tc, mi and recon."""
    if tr is None or tr.empty:
        return ""
    first = tr.iloc[0]
    seeds = sorted(set(int(s) for s in tr["seed"]))
    lines = ["## Training study: does the estimator's bias change the model?", "",
             f"The digits VAE (D = {int(first['latent_dim'])}) trained as a beta-TCVAE, loss = recon + mi + "
             f"{first['beta']:g} tc + dimwise_kl with every term from the named estimator at batch size B, "
             f"{int(first['steps'])} Adam steps, seeds {', '.join(map(str, seeds))} (paired: the same initialisation "
             "and batches for every estimator). Judged by the exact tc and mi of the trained encoder's posteriors on "
             "all 1797 digits and the reconstruction error -log p(x | z = mu) (nats per image); mean ± sd over "
             "seeds. `tc reported` is what the estimator itself says the trained model's tc is.", "",
             "| B | estimator | exact tc | exact mi | recon | dimwise_kl | tc reported |", "|---|---|---|---|---|---|---|"]
    for (B, est), g in tr.groupby(["batch_size", "estimator"], sort=False):
        def ms(col, d=3):
            v = g[col].to_numpy(dtype=float)
            sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
            return f"{_fmt(float(np.mean(v)), d)} ± {_fmt(sd, d)}"
        lines.append(f"| {int(B)} | {est} | {ms('tc')} | {ms('mi')} | {ms('recon', 2)} | {ms('dimwise_kl')} | "
                     f"{ms('tc_reported')} |")
    lines.append("")
    base = "mss" if "mss" in set(tr["estimator"]) else None
    if base is not None and len(seeds) > 1:
        lines += [f"Paired differences from `{base}` (same seed and B; mean ± se over seeds, se = sd / sqrt(seeds)):",
                  "", "| B | estimator | Δ exact tc | Δ exact mi | Δ recon |", "|---|---|---|---|---|"]
        for (B, est), g in tr.groupby(["batch_size", "estimator"], sort=False):
            if est == base:
                continue
            ref = tr[(tr["batch_size"] == B) & (tr["estimator"] == base)].set_index("seed")
            g = g.set_index("seed")
            common = sorted(set(g.index) & set(ref.index))
            if len(common) < 2:
                continue

            def diff(col, d=3):
                v = (g.loc[common, col] - ref.loc[common, col]).to_numpy(dtype=float)
                return f"{_fmt(float(v.mean()), d)} ± {_fmt(float(v.std(ddof=1) / math.sqrt(len(v))), d)}"
            lines.append(f"| {int(B)} | {est} | {diff('tc')} | {diff('mi')} | {diff('recon', 2)} |")
        lines.append("")
    return "\n".join(lines)


def columns_markdown(gradients: bool = True, training: bool = True) -> str:
    r"""The columns of ``gradients.csv`` and ``training.csv``, one line each."""
    from .runner import COLUMN_DOCS, COLUMNS
    from .training import TRAINING_COLUMN_DOCS, TRAINING_COLUMNS

    lines = []
    if gradients:
        lines += ["## Columns of gradients.csv", "", "| column | meaning |", "|---|---|"]
        lines += [f"| `{c}` | {COLUMN_DOCS.get(c, '')} |" for c in COLUMNS] + [""]
    if training:
        lines += ["## Columns of training.csv", "", "| column | meaning |", "|---|---|"]
        lines += [f"| `{c}` | {TRAINING_COLUMN_DOCS.get(c, '')} |" for c in TRAINING_COLUMNS] + [""]
    return "\n".join(lines)


def write_report(out: str | Path, df: pd.DataFrame | None = None, training: pd.DataFrame | None = None) -> list[Path]:
    r"""Write ``gradients.png`` and ``gradients.md`` into ``out`` from the tables (read from ``out`` when None)."""
    from .runner import read_gradients_csv
    from .training import read_training_csv

    out = Path(out)
    if df is None and (out / "gradients.csv").is_file():
        df = read_gradients_csv(out / "gradients.csv")
    if training is None and (out / "training.csv").is_file():
        training = read_training_csv(out / "training.csv")
    written = []
    text = "# Gradients of the estimators, and what they do to a trained model\n\n"
    if df is not None and not df.empty:
        plot_gradients(df, out / "gradients.png")
        written.append(out / "gradients.png")
        text += "![gradient metrics against batch size](gradients.png)\n\n" + gradients_markdown(df) + "\n"
    if training is not None and not training.empty:
        text += training_markdown(training) + "\n"
    text += columns_markdown(df is not None and not df.empty, training is not None and not training.empty)
    write_if_changed(out / "gradients.md", text)
    written.append(out / "gradients.md")
    return written
