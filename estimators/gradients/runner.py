r"""Run a gradient-study preset into a tidy, resumable CSV (``<out>/gradients.csv``).

One row per (field, quantity, estimator, B, k); the columns are :data:`COLUMNS` (documented in
:data:`COLUMN_DOCS`). A cell (field, estimator, B, k: its four quantity rows) is the unit of work: after each one
the whole CSV is rewritten atomically (:func:`estimators.files.write_atomic`), so an interrupted run loses at most
one cell, and ``resume=True`` skips the cells already in the file (same preset settings). The exact gradient of a
field is cached in :func:`estimators.files.cache_dir` (``gradients/``), keyed by the field's data, parameters and
the draw settings.

``same_gradient_as`` names the first estimator (registry order) whose mean gradient agrees with this one to 1e-9
relative along two fixed random directions (``probe_1``, ``probe_2``) on the same field, quantity, B and
replicate batches: an estimator that differs from another by a constant has exactly its gradient.
"""
from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..files import atomic_path, cache_dir, write_atomic
from ..log_qz import ESTIMATORS
from .encoders import EncoderProblem, make_problem
from .exact import ExactGradient, exact_gradient
from .presets import GradientPreset
from .study import METRICS, estimator_gradients, gradient_metrics, same_gradient, threads

__all__ = ["COLUMNS", "COLUMN_DOCS", "run_gradient_study", "read_gradients_csv", "cells_of", "exact_for"]

COLUMN_DOCS = {
    "field": "encoder problem (linear-d2, linear-d5, vae-digits, ...)",
    "quantity": "grad_mi, grad_kl_agg, grad_tc or grad_dimwise_kl: the gradient w.r.t. theta of that quantity",
    "estimator": "name in estimators.ESTIMATORS",
    "family": "minibatch, importance or exact",
    "published_variant": "a replica of shipped code, bug included",
    "unbiased_inside": "exp(log q^) is unbiased for q(z)",
    "N": "data-set size", "D": "latent dimensions", "num_params": "P, the number of encoder parameters theta",
    "batch_size": "B", "k": "importance samples (iwae; empty otherwise)", "replicates": "R replicate batches",
    "exact_groups": "G groups of the exact gradient", "exact_samples": "draws per component in one group",
    "exact_value": "full-data Monte Carlo value of the quantity (mean over groups)",
    "exact_grad_norm": "||g||, the exact gradient's norm (debiased for its Monte Carlo noise)",
    "exact_grad_se": "norm of the per-coordinate se of the exact gradient",
    "rel_bias": "||E g^ - g|| / ||g|| (debiased, clipped at 0)",
    "rel_bias_sq": "its square before the clip: nearly unbiased, the statistic to test zero bias with",
    "cos_mean": "cos(E g^, g) (debiased norms, clipped to [-1, 1])",
    "norm_ratio": "||E g^|| / ||g||: with cos_mean, a bias that rescales rather than turns the gradient", "cos_single": "mean over replicates of cos(g^_r, g): what one step sees",
    "snr": "||E g^|| / sqrt(E ||g^ - E g^||^2)", "rel_rmse": "sqrt(E ||g^ - g||^2) / ||g||",
    "estimate_mean": "mean over replicates of the estimate itself",
    "time_per_call_s": "seconds per replicate: encoding, one decompose call and one backward pass per quantity",
    "probe_1": "E g^ . v1 (v1 a fixed random unit direction): identifies equal gradients",
    "probe_2": "E g^ . v2",
    "same_gradient_as": "first estimator (registry order) with the same mean gradient on the same batches, or empty",
    "seed": "global seed of the replicate batches", "preset": "the preset's name",
}
for _m in METRICS:
    COLUMN_DOCS.setdefault(_m, _m)
    COLUMN_DOCS[f"{_m}_se"] = f"bootstrap se of {_m} (joint resampling of replicates and exact groups)"
COLUMNS = ("field", "quantity", "estimator", "family", "published_variant", "unbiased_inside", "N", "D", "num_params",
           "batch_size", "k", "replicates", "exact_groups", "exact_samples", "exact_value", "exact_grad_norm",
           "exact_grad_se") + tuple(c for m in METRICS for c in (m, f"{m}_se")) + (
           "estimate_mean", "time_per_call_s", "probe_1", "probe_2", "same_gradient_as", "seed", "preset")
KEY = ("field", "estimator", "batch_size", "k", "replicates", "seed")


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.numpy().tobytes() if isinstance(p, torch.Tensor) else repr(p).encode())
    return h.hexdigest()[:20]


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def exact_for(problem: EncoderProblem, preset: GradientPreset, *, cache: bool = True, progress=None) -> ExactGradient:
    r"""The exact gradient of ``problem`` with the preset's draw settings, cached on disk when ``cache``."""
    key = _digest(problem.name, problem.x, problem.get_flat(), preset.exact_groups, preset.exact_samples,
                  preset.seed, torch.__version__, "v1")
    path = cache_dir() / "gradients" / f"exact-{problem.name}-{key}.pt"
    if cache and path.is_file():
        try:
            data = torch.load(path, weights_only=True)
            return ExactGradient(data["groups"], data["values"], int(data["samples"]))
        except Exception:  # corrupt: recompute
            pass
    g = torch.Generator().manual_seed(_seed("exact", preset.seed, problem.name))
    result = exact_gradient(problem, groups=preset.exact_groups, samples=preset.exact_samples, generator=g,
                            progress=progress)
    if cache:
        try:
            with atomic_path(path) as tmp:
                torch.save({"groups": result.groups, "values": result.values, "samples": result.samples}, tmp)
        except OSError:
            pass
    return result


def cells_of(preset: GradientPreset, problem: EncoderProblem) -> list[tuple[str, int, int | None]]:
    r"""The (estimator, B, k) cells of one field: registry order, B within [min_batch, N]."""
    names = preset.estimators if preset.estimators is not None else tuple(ESTIMATORS)
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"estimators: unknown {', '.join(unknown)}; known: {', '.join(ESTIMATORS)}")
    out = []
    for name in names:
        info = ESTIMATORS[name]
        for B in preset.batch_sizes:
            if not max(info.min_batch, 1) <= B <= problem.N:
                continue
            for k in (preset.k if info.needs_k else (None,)):
                out.append((name, B, k))
    return out


def _probes(P: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(20260)
    V = torch.randn(P, 2, generator=g, dtype=torch.float64)
    return V / V.norm(dim=0)


def _mark_same(df: pd.DataFrame) -> pd.DataFrame:
    r"""Fill ``same_gradient_as`` from the probes: first earlier estimator (registry order) agreeing to 1e-9."""
    order = {n: i for i, n in enumerate(ESTIMATORS)}
    df = df.copy()
    df["same_gradient_as"] = ""
    groups = df.groupby(["field", "quantity", "batch_size", "replicates", "seed"], sort=False, dropna=False)
    for _, g in groups:
        g = g.assign(_o=g["estimator"].map(lambda n: order.get(n, len(order)))).sort_values(["_o", "k"])
        seen: list[tuple[str, np.ndarray]] = []
        for i, row in g.iterrows():
            probe = torch.tensor([row["probe_1"], row["probe_2"]], dtype=torch.float64)
            match = next((n for n, p in seen if n != row["estimator"] and same_gradient(probe, p)), "")
            df.at[i, "same_gradient_as"] = match
            seen.append((row["estimator"], probe))
    return df


def read_gradients_csv(path) -> pd.DataFrame:
    r"""Read a gradients CSV and check its columns; a ValueError naming the file otherwise."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"same_gradient_as": object, "estimator": object, "field": object})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable gradients CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a gradients CSV, missing columns {', '.join(missing)}")
    df["same_gradient_as"] = df["same_gradient_as"].fillna("").astype(str) if "same_gradient_as" in df else ""
    return df[list(COLUMNS)]


def _write(path: Path, df: pd.DataFrame) -> None:
    df = _mark_same(df)[list(COLUMNS)]
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.17g")
    write_atomic(path, buf.getvalue())


def _key(row) -> tuple:
    k = row["k"]
    k = None if k is None or (isinstance(k, float) and math.isnan(k)) else int(k)
    return (row["field"], row["estimator"], int(row["batch_size"]), k, int(row["replicates"]), int(row["seed"]))


def run_gradient_study(preset: GradientPreset, out: str | Path, *, resume: bool = False, progress: bool = True,
                       cache: bool = True, num_threads: int | None = 1) -> pd.DataFrame:
    r"""Run every cell of ``preset`` into ``<out>/gradients.csv``; return the table.

    Args:
        preset: the grid.
        out: the output folder (created).
        resume: keep the rows already in the CSV (same preset settings) and run only the missing cells; without it
            the CSV is replaced.
        progress: tqdm bars on stderr.
        cache: cache the exact gradients on disk.
        num_threads: torch threads while it runs (default 1, see :func:`~estimators.gradients.study.threads`;
            None: leave torch's setting).
    """
    with threads(num_threads):
        return _run(preset, out, resume=resume, progress=progress, cache=cache)


def _run(preset: GradientPreset, out, *, resume: bool, progress: bool, cache: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gradients.csv"
    rows: list[dict] = []
    if resume and path.is_file():
        rows = read_gradients_csv(path).to_dict("records")
    done = {_key(r) for r in rows}
    for field in preset.fields:
        problem = make_problem(field)
        todo = [c for c in cells_of(preset, problem)
                if (field, c[0], c[1], c[2], preset.replicates, preset.seed) not in done]
        if not todo:
            continue
        with tqdm(total=preset.exact_groups, desc=f"{field}: exact gradient", leave=False, disable=not progress,
                  dynamic_ncols=True) as bar:
            exact = exact_for(problem, preset, cache=cache, progress=lambda: bar.update(1))
        V = _probes(problem.num_params)
        N, D, P = problem.N, problem.D, problem.num_params
        for name, B, k in tqdm(todo, desc=f"{field}: estimator gradients", disable=not progress, dynamic_ncols=True):
            info = ESTIMATORS[name]
            result = estimator_gradients(problem, name, B, replicates=preset.replicates, k=k, seed=preset.seed,
                                         quantities=preset.quantities)
            for q in preset.quantities:
                # the same resamples for every estimator of a (field, B, quantity): paired ses, equal gradients equal metrics
                gen = torch.Generator().manual_seed(_seed("boot", preset.seed, field, B, q))
                m = gradient_metrics(result.grads[q], exact.groups[q], boot=preset.boot, generator=gen)
                probe = result.grads[q].mean(0) @ V
                rows.append({"field": field, "quantity": f"grad_{q}", "estimator": name, "family": info.family,
                             "published_variant": bool(info.published_variant),
                             "unbiased_inside": bool(info.unbiased_inside), "N": N, "D": D, "num_params": P,
                             "batch_size": B, "k": (float("nan") if k is None else k),
                             "replicates": preset.replicates, "exact_groups": exact.num_groups,
                             "exact_samples": exact.samples, "exact_value": float(exact.values[q].mean()),
                             **m, "estimate_mean": float(result.values[q].mean()),
                             "time_per_call_s": result.seconds_per_call, "probe_1": float(probe[0]),
                             "probe_2": float(probe[1]), "same_gradient_as": "", "seed": preset.seed,
                             "preset": preset.name})
            _write(path, pd.DataFrame(rows))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if rows:
        _write(path, df)
        return read_gradients_csv(path)
    return df
