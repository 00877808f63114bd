r"""The MIG study's report: ``mig.csv`` (the tidy table), ``mig.png`` (plots) and ``mig.md`` (Markdown tables).

The PNG is byte-stable (fixed dpi, no software metadata; rewritten only when its bytes change), like the
benchmark's plots.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import pyplot, save_png
from ..files import write_atomic, write_if_changed

__all__ = ["write_mig_report", "plot_mig", "mig_markdown", "Z_FLAG"]

DPI = 100
Z_FLAG = 3.9  # |bias| > Z_FLAG se: a bias the replicates show (two-sided ~1e-4 per cell)


def _fmt(x, digits: int = 4) -> str:
    if x is None or pd.isna(x) or not math.isfinite(float(x)):
        return "-"
    x = float(x)
    return f"{x:.{digits}g}" if x != 0 else "0"


def plot_mig(df: pd.DataFrame, path: Path) -> bool:
    r"""Three panels against n_samples (log): the MIG estimate (mean, error bars 1.96 sd of one estimate) with the
    exact value; the bias of the MIG (error bars 1.96 se); the rms over (j, k) of the I's rmse and |bias|.
    One line per estimator. Returns False (writes nothing) for an empty table."""
    if df.empty:
        return False
    plt = pyplot()
    estimators = list(dict.fromkeys(df["estimator"]))
    colors = list(plt.get_cmap("tab10").colors)
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6), squeeze=False)
    mig = df[df["quantity"] == "mig"]
    exact = float(mig["reference"].iloc[0]) if len(mig) else math.nan
    for i, name in enumerate(estimators):
        style = {"color": colors[i % len(colors)], "marker": "os^vD"[i % 5], "capsize": 2, "lw": 1.1, "ms": 4}
        m = mig[mig["estimator"] == name].sort_values("n_samples")
        axes[0, 0].errorbar(m["n_samples"], m["mean"], yerr=1.96 * m["sd"].fillna(0.0), label=name, **style)
        axes[0, 1].errorbar(m["n_samples"], m["bias"], yerr=1.96 * m["bias_se"].fillna(0.0), label=name, **style)
        mi = df[(df["estimator"] == name) & (df["quantity"] == "mi")]
        g = mi.groupby("n_samples")
        rms_rmse = g["rmse"].apply(lambda s: math.sqrt(float((s ** 2).mean())))
        rms_bias = g["bias"].apply(lambda s: math.sqrt(float((s ** 2).mean())))
        axes[0, 2].plot(rms_rmse.index, rms_rmse.values, label=f"{name}: rmse", color=style["color"],
                        marker=style["marker"], lw=1.1, ms=4)
        axes[0, 2].plot(rms_bias.index, rms_bias.values, label=f"{name}: |bias|", color=style["color"],
                        marker=style["marker"], lw=1.0, ms=4, ls="--")
    axes[0, 0].axhline(exact, color="k", lw=0.8, ls=":", label="exact")
    axes[0, 1].axhline(0.0, color="k", lw=0.8, ls=":")
    titles = ("MIG estimate (bars: 1.96 sd of one estimate)", "MIG bias (bars: 1.96 se)",
              "I(z_j; v_k): rms over (j, k) [nats]")
    ticks = sorted(set(int(n) for n in df["n_samples"]))
    for ax, title in zip(axes[0], titles):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("n_samples", fontsize=8)
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3, lw=0.5)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, frameon=False)
    axes[0, 2].set_yscale("log")
    first = df.iloc[0]
    fig.suptitle(f"Sampled MIG vs exact: {first['field']} (N = {int(first['N'])}, D = {int(first['D'])}, "
                 f"R = {int(first['replicates'])}; factors {first['mig_factors']})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_png(fig, path, DPI)


def mig_markdown(df: pd.DataFrame) -> str:
    r"""Markdown: the exact MIG and per-factor gaps, then per estimator and n_samples the MIG's bias ± se, sd and
    rmse, and a summary of the I's (rms bias, rms rmse, the largest |bias| / se, cells biased beyond Z_FLAG se)."""
    if df.empty:
        return "## MIG: sampled estimates against exact references\n\n(no rows)\n"
    first = df.iloc[0]
    mig = df[df["quantity"] == "mig"]
    gaps = df[df["quantity"] == "normalized_gap"]
    lines = ["## MIG: sampled estimates against exact references", "",
             f"Field `{first['field']}` (N = {int(first['N'])}, D = {int(first['D'])}), MIG over "
             f"{first['mig_factors']}; R = {int(first['replicates'])} seeds per row (seed {int(first['seed'])}). "
             f"Exact MIG = {_fmt(mig['reference'].iloc[0], 6)} (quadrature error bound "
             f"{_fmt(mig['reference_error'].iloc[0], 2)}).", ""]
    g0 = gaps[(gaps["estimator"] == first["estimator"]) & (gaps["n_samples"] == first["n_samples"])]
    if len(g0):
        lines += ["| factor | top latent | exact gap / H(v) | bound |", "|---|---|---|---|"]
        lines += [f"| {r.factor} | z{int(r.latent)} | {_fmt(r.reference, 6)} | {_fmt(r.reference_error, 2)} |"
                  for r in g0.itertuples()]
        lines.append("")
    lines += ["| estimator | n_samples | MIG mean | bias ± se | sd | rmse ± se | I: rms bias | I: rms rmse | "
              f"I: max abs(bias)/se | I: cells beyond {Z_FLAG} se | s / estimate |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in mig.itertuples():
        mi = df[(df["quantity"] == "mi") & (df["estimator"] == r.estimator) & (df["n_samples"] == r.n_samples)]
        z = (mi["bias"].abs() / mi["bias_se"]).replace([np.inf], np.nan)
        lines.append(
            f"| {r.estimator} | {int(r.n_samples)} | {_fmt(r.mean)} | {_fmt(r.bias, 3)} ± {_fmt(r.bias_se, 2)} | "
            f"{_fmt(r.sd, 3)} | {_fmt(r.rmse, 3)} ± {_fmt(r.rmse_se, 2)} | "
            f"{_fmt(math.sqrt(float((mi['bias'] ** 2).mean())), 3)} | "
            f"{_fmt(math.sqrt(float((mi['rmse'] ** 2).mean())), 3)} | {_fmt(z.max(), 3)} | "
            f"{int((z > Z_FLAG).sum())} of {len(mi)} | {_fmt(r.seconds_per_estimate, 3)} |")
    lines += ["", "Normalised gap (I_(1) - I_(2)) / H(v) per factor: bias ± se of each estimator.", "",
              "| estimator | n_samples | " + " | ".join(str(f) for f in dict.fromkeys(gaps["factor"])) + " |",
              "|---|---|" + "---|" * len(set(gaps["factor"]))]
    for (name, n), g in gaps.groupby(["estimator", "n_samples"], sort=False):
        lines.append(f"| {name} | {int(n)} | " + " | ".join(f"{_fmt(r.bias, 3)} ± {_fmt(r.bias_se, 2)}"
                                                         for r in g.itertuples()) + " |")
    lines += ["", "n_samples: draws per entropy for `beta_tcvae` (the replica of the published code: one subset "
              "for the marginal and one per factor value), paired draws in all for `paired`. The MIG's reference "
              "error is the quadrature's bound, far below every se here.", ""]
    return "\n".join(lines)


def write_mig_report(df: pd.DataFrame, out) -> dict[str, Path]:
    r"""Write ``mig.csv``, ``mig.png`` and ``mig.md`` into the folder ``out`` (created); returns their paths.

    The CSV is written atomically, the PNG and the Markdown only when their bytes change."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "mig.csv", "png": out / "mig.png", "md": out / "mig.md"}
    write_atomic(paths["csv"], df.to_csv(index=False, float_format="%.10g"))
    plot_mig(df, paths["png"])
    write_if_changed(paths["md"], mig_markdown(df))
    return paths
