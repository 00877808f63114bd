r"""How wrong the user's function is at their own batch size and data-set size.

On each field (built-in scenarios at N = ``dataset_size``, or the user's posteriors), R replicate
batches of B distinct indices are drawn uniformly without replacement, one z_i ~ q(z|n_i) each (the
same batches for the user's function and the comparison estimator: common random numbers); the
estimates are compared with the field's exact references (:func:`estimators.exact_references`,
cached on disk in ``<cache>/audit-references``: computed once per field) by the benchmark's
metrics (bias, sd and RMSE, each with its standard error).
"""
from __future__ import annotations

import numpy as np
import torch

from ..bench.metrics import summarize
from ..bench.plan import reference_samples
from ..bench.reference_cache import ReferenceCache, compute_reference
from ..decompose import decompose
from ..files import cache_dir
from ..numerics import log_normal, log_standard_normal
from ..posteriors import Posteriors
from ..scenarios import make_scenario
from .fixtures import Fixture
from .harness import AuditError, call, understand

__all__ = ["DEFAULT_SCENARIOS", "MAX_REFERENCE_N", "accuracy", "estimates_of", "fields_for"]

DEFAULT_SCENARIOS = ("gaussian", "clustered", "heteroscedastic")
MAX_REFERENCE_N = 32768  # a full-N reference costs N^2 S kernel terms: about a minute here at this N
REFERENCE_SAMPLES = 256  # Monte Carlo draws per component wanted (lowered at large N by the budget)


def fields_for(dataset_size: int, D: int, scenarios, posteriors: Posteriors | None) -> list[tuple[str, Posteriors]]:
    r"""The fields of the accuracy part: the user's posteriors, or the named scenarios at N = dataset_size."""
    if posteriors is not None:
        if posteriors.N > MAX_REFERENCE_N:
            raise ValueError(f"--posteriors holds N = {posteriors.N} points; exact references of more than "
                             f"{MAX_REFERENCE_N} are not available yet (pass a sub-sample)")
        return [(posteriors.name or "posteriors", posteriors)]
    if dataset_size > MAX_REFERENCE_N:
        raise ValueError(f"dataset_size must be at most {MAX_REFERENCE_N} for the accuracy part (its exact references "
                         f"cost N^2 kernel terms), got {dataset_size}; the classification itself runs up to N = 737,280")
    return [(name, make_scenario(name, N=dataset_size, D=D, separation=0.5)) for name in scenarios]


def estimates_of(output_values: dict, z, mu, logvar) -> dict[str, float]:
    r"""The quantities of one call: the scalars as returned, or the four built from per-sample values."""
    if "log_qz" not in output_values:
        return {k: float(v) for k, v in output_values.items()}
    lq, lp = torch.as_tensor(output_values["log_qz"]), torch.as_tensor(output_values["log_prod_qz"])
    z, mu, logvar = (t.to(torch.float64) for t in (z, mu, logvar))
    own, prior = log_normal(z, mu, logvar).sum(1), log_standard_normal(z)
    return {"mi": float((own - lq).mean()), "kl_agg": float((lq - prior).mean()), "tc": float((lq - lp).mean()),
            "dimwise_kl": float((lp - prior).mean())}


def accuracy(fn, *, batch_size: int, fields, replicates: int, compare_with: str, seed: int = 0,
             dtype: torch.dtype = torch.float32) -> list[dict]:
    r"""Rows (field, quantity, reference, its se, then bias/sd/rmse of the user's function and of ``compare_with``)."""
    cache = ReferenceCache(cache_dir() / "audit-references")
    rows = []
    for name, fld in fields:
        if batch_size > fld.N:
            raise ValueError(f"batch_size must be at most the field's N = {fld.N} ({name}), got {batch_size}")
        settings = {"samples": reference_samples(fld.N, REFERENCE_SAMPLES), "seed": 0}
        refs = compute_reference(fld, settings, cache)
        g = torch.Generator().manual_seed(seed)
        yours: dict[str, list[float]] = {}
        theirs: dict[str, list[float]] = {}
        for _ in range(replicates):
            index = torch.randperm(fld.N, generator=g)[:batch_size]
            mu, logvar = fld.mu[index], fld.logvar[index]
            z = mu + torch.randn(mu.shape, generator=g, dtype=mu.dtype) * torch.exp(0.5 * logvar)
            fx = Fixture(name, batch_size, fld.D, fld.N, dtype, 0, z.to(dtype), mu.to(dtype), logvar.to(dtype))
            out = understand(call(fn, fx)[1], fx)
            for k, v in estimates_of(out.values, z, mu, logvar).items():
                yours.setdefault(k, []).append(v)
            with torch.no_grad():
                t = decompose(z, mu, logvar, fld.N, compare_with)
            for k in yours:
                theirs.setdefault(k, []).append(float(t[k]))
        for q, values in yours.items():
            x = np.array(values)
            if not np.all(np.isfinite(x)):
                raise AuditError(f"the function returned a non-finite {q} on a batch of the field {name!r} "
                                 f"(B = {batch_size}, N = {fld.N})")
            ref = refs[q]
            mine, other = summarize(x, ref["value"], ref["se"]), summarize(np.array(theirs[q]), ref["value"], ref["se"])
            rows.append({"field": name, "N": fld.N, "D": fld.D, "batch_size": batch_size, "replicates": replicates,
                         "quantity": q, "reference": ref["value"], "reference_se": ref["se"],
                         **{f"{k}": mine[k] for k in ("mean", "bias", "bias_se", "sd", "sd_se", "rmse", "rmse_se")},
                         "compare_with": compare_with,
                         **{f"compare_{k}": other[k] for k in ("bias", "bias_se", "sd", "rmse")}})
    return rows
