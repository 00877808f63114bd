r"""The sampled MIG estimates benchmarked against the exact references: bias, sd and rmse over R seeds.

For each estimator of :data:`MIG_ESTIMATORS` and each n_samples, R replicates with generators seeded from
SHA-256 of (seed, replicate) -- the same seeds for every estimator and n_samples -- estimate the MIG, each factor's
normalised gap, every I(z_j; v_k), every H(z_j) and every sum_v p(v) H(z_j | v_k = v); :func:`run_mig_study`
returns one tidy row per (estimator, n_samples, quantity, latent, factor) with the exact reference, its error
bound and the metrics (as the benchmark's: bias = mean - reference with se sd / sqrt(R); sd (ddof 1) with the
delta-method se from the fourth moment; rmse with the delta-method se).

n_samples means what each estimator means by it: draws per entropy for ``beta_tcvae`` (the marginal and every
(factor, value) conditional each get their own subset: (1 + sum_k |V_k|) subsets of n_samples), paired draws in
all for ``paired``. The ``terms_per_estimate`` column counts the 1-D kernel terms each evaluates.
"""
from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pandas as pd
import torch

from ..validation import as_int
from .exact import mig_references
from .factors import FactorField, check_factors, select_factors
from .report import write_mig_report
from .sampled import mig_beta_tcvae, mig_sampled

__all__ = ["MIG_ESTIMATORS", "STUDY_COLUMNS", "QUANTITIES", "run_mig_study", "summarize", "replicate_seed",
           "write_mig_report"]

MIG_ESTIMATORS = {"beta_tcvae": mig_beta_tcvae, "paired": mig_sampled}
QUANTITIES = ("mig", "normalized_gap", "mi", "entropy", "conditional_entropy")
STUDY_COLUMNS = ("field", "N", "D", "mig_factors", "estimator", "n_samples", "quantity", "latent", "factor",
                 "reference", "reference_error", "mean", "bias", "bias_se", "sd", "sd_se", "rmse", "rmse_se",
                 "replicates", "seed", "seconds_per_estimate", "terms_per_estimate")


def replicate_seed(seed: int, replicate: int) -> int:
    r"""The generator seed of one replicate: 63 bits of SHA-256 of ``"mig:{seed}:{replicate}"``."""
    digest = hashlib.sha256(f"mig:{seed}:{replicate}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def summarize(estimates, reference: float) -> dict[str, float]:
    r"""mean, bias, bias_se, sd, sd_se, rmse, rmse_se of R replicate ``estimates`` against ``reference``.

    The formulas of the benchmark's metrics (docs/maths.md, "Benchmark and metrics"): sd_se by the delta method
    with the fourth central moment, Var(s^2) ~ (m4 - s^4 (R-3)/(R-1)) / R, se(s) = se(s^2) / (2 s); rmse_se =
    se(mean squared error) / (2 rmse). NaN where R = 1.
    """
    x = np.asarray(estimates, dtype=np.float64).ravel()
    R, mean = x.size, float(x.mean())
    err2 = (x - reference) ** 2
    rmse = math.sqrt(float(err2.mean()))
    out = {"mean": mean, "bias": mean - reference, "bias_se": math.nan, "sd": math.nan, "sd_se": math.nan,
           "rmse": rmse, "rmse_se": math.nan}
    if R > 1:
        dev = x - mean
        sd = float(np.sqrt((dev ** 2).sum() / (R - 1)))
        var_s2 = max((float((dev ** 4).mean()) - sd ** 4 * (R - 3) / (R - 1)) / R, 0.0)
        out.update(bias_se=sd / math.sqrt(R), sd=sd, sd_se=math.sqrt(var_s2) / (2 * sd) if sd > 0 else 0.0,
                   rmse_se=float(err2.std(ddof=1)) / math.sqrt(R) / (2 * rmse) if rmse > 0 else 0.0)
    return out


def _check_reference(reference: dict, field: FactorField, names: list[str]) -> None:
    want = {"N": field.N, "D": field.D, "factor_names": list(field.names), "factors_in_mig": names}
    got = {key: reference.get(key) for key in want}
    if got != want:
        raise ValueError(f"reference does not belong to this field and factor selection: expected {want}, got {got}")


def run_mig_study(mu, logvar, factors, *, factor_names=None, factor_sizes=None, factors_in_mig=None,
                  sample_sizes=(1000, 10_000), replicates: int = 20, estimators=("beta_tcvae", "paired"),
                  seed: int = 0, dtype: torch.dtype = torch.float64, reference: dict | None = None,
                  quadrature_nodes: int = 32, field_name: str = "field", log=None) -> pd.DataFrame:
    r"""Bias, sd and rmse of the sampled MIG estimates (and of each I, H) against the exact references.

    Args:
        mu, logvar, factors, factor_names, factor_sizes, factors_in_mig: the field and its factors, as
            :func:`estimators.mig.mig_references` (the MIG averages over ``factors_in_mig``; the published dSprites
            setting is scale, orientation, pos_x, pos_y).
        sample_sizes: the n_samples of each estimator (see the module notes), each >= 1.
        replicates: R >= 2 seeds per (estimator, n_samples).
        estimators: names of :data:`MIG_ESTIMATORS`.
        seed: the study's seed (replicate r uses :func:`replicate_seed` (seed, r) for every estimator).
        dtype: precision of the kernel's log-sums.
        reference: the result of :func:`estimators.mig.mig_references` for this field and ``factors_in_mig``
            (computed when None).
        quadrature_nodes: nodes of the reference's quadrature when it is computed here.
        field_name: label of the field in the table.
        log: optional callable taking one progress line (str).

    Returns:
        pandas.DataFrame with the columns :data:`STUDY_COLUMNS`, one row per (estimator, n_samples, quantity,
        latent, factor); ``latent`` is the exact top latent for ``normalized_gap`` rows and empty for ``mig``.

    Raises:
        ValueError: bad inputs, naming the argument.
    """
    field = check_factors(mu, logvar, factors, factor_names=factor_names, factor_sizes=factor_sizes)
    index = select_factors(field, factors_in_mig)
    names = [field.names[k] for k in index]
    try:
        R = as_int("replicates", replicates, minimum=2)
        sizes = [as_int("sample_sizes", s, minimum=1) for s in sample_sizes]
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    if not sizes:
        raise ValueError("sample_sizes must hold at least one n_samples")
    unknown = [e for e in estimators if e not in MIG_ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"estimators: unknown {unknown or '(none given)'}; known: {', '.join(MIG_ESTIMATORS)}")
    if reference is None:
        reference = mig_references(field.mu, field.logvar, field, factors_in_mig=index,
                                   quadrature_nodes=quadrature_nodes)
        if log is not None:
            log(f"exact references: {reference['quadratures']} quadratures, {reference['seconds']:.1f} s")
    _check_reference(reference, field, names)
    ref_mi = reference["mi"][:, list(index)]
    ref_mi_err = reference["mi_error"][:, list(index)]
    ref_cond = reference["conditional_entropy"][:, list(index)]
    ref_cond_err = reference["conditional_entropy_error"][:, list(index)]
    rows = []
    base = {"field": field_name, "N": field.N, "D": field.D, "mig_factors": " ".join(names), "replicates": R,
            "seed": int(seed)}
    for name in estimators:
        fn = MIG_ESTIMATORS[name]
        for S in sizes:
            start = time.perf_counter()
            runs = [fn(None, None, field, n_samples=S, factors_in_mig=index, dtype=dtype,
                       generator=torch.Generator().manual_seed(replicate_seed(seed, r))) for r in range(R)]
            seconds = (time.perf_counter() - start) / R
            if log is not None:
                log(f"{name} n_samples={S}: {R} replicates, {seconds:.2f} s each")
            common = dict(base, estimator=name, n_samples=S, seconds_per_estimate=seconds,
                          terms_per_estimate=float(np.mean([r["terms"] for r in runs])))

            def add(quantity, latent, factor, ref, ref_err, values):
                rows.append(dict(common, quantity=quantity, latent=latent, factor=factor, reference=float(ref),
                                 reference_error=float(ref_err), **summarize(values, float(ref))))

            add("mig", pd.NA, "", reference["mig"], reference["mig_error"], [r["mig"] for r in runs])
            for c, k in enumerate(index):
                add("normalized_gap", reference["top_latent"][k], field.names[k], reference["normalized_gap"][k],
                    reference["normalized_gap_error"][k], [float(r["normalized_gap"][c]) for r in runs])
            for j in range(field.D):
                add("entropy", j, "", reference["entropy"][j], reference["entropy_error"][j],
                    [float(r["entropy"][j]) for r in runs])
            for c, k in enumerate(index):
                for j in range(field.D):
                    add("mi", j, field.names[k], ref_mi[j, c], ref_mi_err[j, c], [float(r["mi"][j, c]) for r in runs])
                    add("conditional_entropy", j, field.names[k], ref_cond[j, c], ref_cond_err[j, c],
                        [float(r["conditional_entropy"][j, c]) for r in runs])
    df = pd.DataFrame(rows, columns=list(STUDY_COLUMNS))
    df["latent"] = df["latent"].astype("Int64")
    return df
