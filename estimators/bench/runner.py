r"""The benchmark runner: plan a grid (validating everything up front), then run it unit by unit.

For every unit (scenario, estimator, batch_size, k) the runner draws R replicate batches --
B distinct indices uniformly without replacement, one z_i ~ q(z|n_i) each -- and makes one
``decompose`` call per replicate, which yields all four quantities (mi, kl_agg, tc, dimwise_kl)
and their per-sample terms. Each replicate has its own generators, seeded from the unit and r
(see :mod:`.grid`), so the numbers do not depend on what else runs. The estimates are compared
with the scenario's exact reference (``estimators.references``), computed once and cached on disk.

A log p(x) unit (task, estimator, k) draws its R replicates in a few vectorised calls of
``estimators.linear_gaussian.sample_log_px_estimates``; every estimator of a (task, k) sees the
same draws (common random numbers).

After each unit its rows go to the CSV, rewritten atomically; a rerun skips units whose rows are
all there with status "ok". A unit that raises is recorded with status "error" and its message,
and the run goes on.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import linear_gaussian
from .. import references as reference_module
from ..decompose import decompose
from ..posteriors import Posteriors, load_posteriors
from ..registry import ESTIMATORS
from ..scenarios import SCENARIOS, make_scenario
from .grid import AGGREGATE_QUANTITIES, ALL_QUANTITIES, LOG_PX, Preset, ScenarioSpec, Unit
from .metrics import is_nonnegative, sign_consistent, summarize, theory_columns
from .store import COLUMNS, ReferenceCache, ResultStore, check_writable

__all__ = ["Plan", "plan", "execute", "run_unit", "compute_reference", "reference_samples", "known_names"]

# Smallest k of each log p(x) estimator: the order-j jackknife needs k >= j + 1 (Nowozin 2018);
# smaller k of a grid are skipped for it, not an error.
LOG_PX_MIN_K = {"iwae": 1, "iwae_jackknife1": 2, "iwae_jackknife2": 3}
Z95 = 1.959963984540054  # two-sided 95% normal quantile
TIMED_CHUNKS = 8  # a log_px unit's replicates are drawn in this many timed calls
REFERENCE_BUDGET = 2 * 10**10  # kernel terms N^2 S of one reference: about half a minute here


def known_names() -> dict[str, tuple[str, ...]]:
    r"""The names the grid can use: scenarios, log p(x) tasks, estimators of both kinds, quantities."""
    return {
        "scenarios": tuple(SCENARIOS),
        "tasks": tuple(linear_gaussian.LOG_PX_TASKS),
        "estimators": tuple(ESTIMATORS),
        "log_px_estimators": tuple(linear_gaussian.LOG_PX_ESTIMATORS),
        "quantities": ALL_QUANTITIES,
    }


def _listing(names) -> str:
    return ", ".join(sorted(names)) if names else "(none available)"


@dataclass
class Plan:
    r"""A validated grid, ready to run: the units in order and everything they need."""

    units: list[Unit]
    fields: dict[tuple, Posteriors] = field(default_factory=dict)  # Unit.field_id -> field
    specs: dict[tuple, ScenarioSpec] = field(default_factory=dict)
    reference_settings: dict = field(default_factory=dict)  # field_id -> exact_references kwargs
    preset: Preset | None = None


def _build_field(spec: ScenarioSpec) -> Posteriors:
    if spec.path is not None:
        return load_posteriors(spec.path)
    kwargs = {"N": spec.N, "D": spec.D, "seed": spec.seed}
    if spec.separation is not None:
        kwargs["separation"] = spec.separation
    return make_scenario(spec.name, **kwargs)


def _task_size(task) -> tuple[int, int]:
    r"""(N, D) columns of a log p(x) task: N = data points per estimate (1), D = latent dims."""
    return 1, int(task.latent_dim)


def plan(preset: Preset, *, posteriors: list[str] | None = None, scenarios: list[str] | None = None,
         estimators: list[str] | None = None, quantities: list[str] | None = None,
         N: int | None = None, D: int | None = None, separations: list[float] | None = None,
         seed: int = 0) -> Plan:
    r"""Validate a grid and build its fields; nothing is written.

    Args:
        preset: the base grid (axes already overridden by the caller where asked).
        posteriors: posterior files (``.npz``/``.pt``); each becomes a scenario named by its stem,
            replacing the preset's named scenarios.
        scenarios: restrict to these scenario / log p(x) task names.
        estimators: restrict to these estimator names (aggregate or log p(x)).
        quantities: restrict to these quantities.
        N, D, separations: override the size and the knob(s) of the named scenarios (N is capped
            at a scenario's largest, e.g. 1797 for vae-digits).
        seed: the global seed (it draws the replicates; the fields depend on their own seeds only).

    Raises:
        ValueError: an unknown name (the message lists the known ones), a batch size above N or
            below what an estimator needs, a bad k or replicate count, or a posterior file that
            fails validation. FileNotFoundError: a missing posterior file.
    """
    known = known_names()
    agg_known, px_known = set(known["estimators"]), set(known["log_px_estimators"])
    if quantities is not None:
        bad = [q for q in quantities if q not in known["quantities"]]
        if bad:
            raise ValueError(f"unknown quantity {bad[0]!r}; known quantities: {_listing(known['quantities'])}")
    qsel = tuple(quantities or preset.quantities)
    if estimators is not None:
        bad = [e for e in estimators if e not in agg_known | px_known]
        if bad:
            raise ValueError(f"unknown estimator {bad[0]!r}; known estimators: {_listing(agg_known | px_known)}")
    agg_est = [e for e in (estimators if estimators is not None else known["estimators"]) if e in agg_known]
    px_est = [e for e in (estimators if estimators is not None else known["log_px_estimators"]) if e in px_known]
    if preset.estimators is not None and estimators is None:
        agg_est = [e for e in agg_est if e in preset.estimators]
        px_est = [e for e in px_est if e in preset.estimators]

    # Scenarios: files replace the named ones; --scenarios filters (and may name tasks).
    if scenarios is not None:
        bad = [s for s in scenarios if s not in set(known["scenarios"]) | set(known["tasks"])]
        if bad:
            raise ValueError(f"unknown scenario {bad[0]!r}; known scenarios: {_listing(known['scenarios'])}"
                             + (f"; log p(x) tasks: {_listing(known['tasks'])}" if known["tasks"] else ""))
    specs: list[ScenarioSpec] = []
    if posteriors:
        specs += [ScenarioSpec(Path(p).stem, path=str(p)) for p in posteriors]
    if not posteriors or scenarios is not None:
        specs += _named_specs(preset, scenarios, N, D, separations)
    if scenarios is not None:
        tasks = [s for s in scenarios if s in known["tasks"]]
    elif posteriors:
        tasks = []
    else:
        tasks = list(preset.log_px_tasks) if preset.log_px_tasks is not None else list(known["tasks"])
        tasks = [t for t in tasks if t in known["tasks"]]

    if preset.replicates < 2 or (tasks and preset.log_px_replicates < 2):
        raise ValueError(f"replicates must be at least 2 (a standard error needs two), got {preset.replicates}")
    for b in preset.batch_sizes:
        if int(b) != b or b < 1:
            raise ValueError(f"batch sizes must be positive integers, got {b!r}")
    for k in tuple(preset.k) + tuple(preset.log_px_k):
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
    if preset.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {preset.dtype!r}")

    agg_q = tuple(q for q in qsel if q in AGGREGATE_QUANTITIES)
    units: list[Unit] = []
    fields: dict[tuple, Posteriors] = {}
    spec_of: dict[tuple, ScenarioSpec] = {}
    if agg_q and agg_est:
        for spec in specs:
            fid = (spec.name, spec.separation)
            if fid in spec_of:
                raise ValueError(f"scenario {spec.name!r} appears twice with the same settings; "
                                 "give each posterior file a distinct name")
            # Estimates and reference both see the field rounded to the run's dtype.
            fld = _build_field(spec).to(getattr(torch, preset.dtype))
            label = spec.name
            fields[fid] = fld
            spec_of[fid] = spec
            for est in agg_est:
                info = ESTIMATORS[est]
                for b in preset.batch_sizes:
                    if b > fld.N:
                        raise ValueError(f"batch size {b} is larger than N = {fld.N} of scenario {label!r} "
                                         "(a batch holds distinct data points)")
                    if b < info.min_batch:
                        raise ValueError(f"batch size {b} is too small for estimator {est!r}: "
                                         f"it needs at least {info.min_batch}")
                    for k in (preset.k if info.needs_k else (0,)):
                        units.append(Unit(label, "aggregate", fld.N, fld.D, spec.separation, spec.seed, est,
                                          int(b), int(k), agg_q, preset.replicates, preset.dtype, seed))
    if LOG_PX in qsel and px_est:
        for task in tasks:
            n, d = _task_size(linear_gaussian.LOG_PX_TASKS[task])
            spec_of[(task, None)] = ScenarioSpec(task, kind="log_px")
            for est in px_est:
                for k in preset.log_px_k:
                    if k < LOG_PX_MIN_K.get(est, 1):
                        continue
                    cap = preset.jackknife2_max_k if est == "iwae_jackknife2" else None
                    if cap is not None and k > cap:
                        continue
                    units.append(Unit(task, "log_px", n, d, None, 0, est, 0, int(k), (LOG_PX,),
                                      preset.log_px_replicates, preset.dtype, seed))
    if not units:
        raise ValueError("the grid is empty: no (scenario, estimator, quantity) combination is selected")
    # The reference depends on the field and the preset only, never on which cells run.
    settings = {fid: {"samples": reference_samples(fld.N, preset.reference_samples),
                      "quadrature_nodes": preset.quadrature_nodes, "seed": 0}
                for fid, fld in fields.items()}
    return Plan(units, fields, spec_of, settings, preset)


def _named_specs(preset: Preset, scenarios, N, D, separations) -> list[ScenarioSpec]:
    r"""The preset's scenario specs, restricted to ``scenarios`` and with N, D, separations overridden.

    A named scenario the preset lacks takes the preset's first N, D and its separations."""
    base = list(preset.scenarios)
    names = list(dict.fromkeys(s.name for s in base)) if scenarios is None else \
        [s for s in dict.fromkeys(scenarios) if s in SCENARIOS]
    default_seps = tuple(dict.fromkeys(s.separation for s in base)) or (0.5,)
    out = []
    for name in names:
        own = [s for s in base if s.name == name]
        first = own[0] if own else (base[0] if base else ScenarioSpec(name))
        seps = tuple(separations) if separations else tuple(dict.fromkeys(s.separation for s in own)) or default_seps
        n = first.N if N is None else N
        max_n = getattr(SCENARIOS[name], "max_N", None)
        if n is not None and max_n is not None:
            n = min(n, max_n)
        d = first.D if D is None else D
        for sep in seps:
            out.append(ScenarioSpec(name, N=n, D=d, separation=sep, seed=first.seed))
    return out


def reference_samples(N: int, wanted: int) -> int:
    r"""Monte Carlo draws per component for a field's reference: the preset's number, lowered where
    the cost N^2 S would pass :data:`REFERENCE_BUDGET` kernel terms (at least 2).

    How the presets choose S: SPEC wants reference_se <= bias_se / 10 for every cell. The smallest
    bias_se of a field is that of the ``exact`` estimator at the largest batch, about
    sigma / sqrt(B R) with sigma the sd of a per-sample term such as log q(z|n) - log q(z); the
    reference averages the same kind of term over N S stratified draws (its control variates only
    shrink it), so N S >= 100 B_max R meets the rule. The report flags every cell where it fails.
    """
    return int(max(2, min(wanted, REFERENCE_BUDGET // (N * N))))


# ----------------------------------------------------------------------------------- references

def compute_reference(fld: Posteriors, settings: dict, cache: ReferenceCache | None) -> dict:
    r"""``exact_references`` of a field, from the disk cache when there."""
    key = None
    if cache is not None:
        key = cache.key(fld.mu, fld.logvar, settings, reference_module)
        hit = cache.get(key)
        if hit is not None:
            return hit
    mu, logvar = fld.mu.to(torch.float64), fld.logvar.to(torch.float64)
    value = reference_module.exact_references(mu, logvar, **settings)
    if cache is not None:
        cache.put(key, value)
    return value


def _log_px_reference(task_name: str) -> dict:
    ref = linear_gaussian.log_px_reference(task_name)
    return {"value": float(ref["value"]), "se": float(ref["se"]), "method": ref["method"]}


# ----------------------------------------------------------------------------------- units

def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _decompose_call(fld: Posteriors, index: torch.Tensor, z: torch.Tensor, unit: Unit, info, generator):
    r"""One estimator call on one replicate batch: every quantity and its per-sample terms."""
    kwargs = {"estimator": unit.estimator, "generator": generator}
    if info.needs_k:
        kwargs["k"] = unit.k
    if info.needs_field:
        return decompose(z, fld.mu, fld.logvar, fld.N, index=index, **kwargs)
    return decompose(z, fld.mu[index], fld.logvar[index], fld.N, **kwargs)


def _aggregate_estimates(unit: Unit, fld: Posteriors, info):
    r"""R replicate estimates, 95% intervals and call times of every quantity of ``unit``."""
    dtype = getattr(torch, unit.dtype)
    fld = fld.to(dtype)
    R, B = unit.replicates, unit.batch_size

    def replicate(r: int):
        g = _generator(unit.batch_seed(r))  # the same batches for every estimator
        index = torch.randperm(fld.N, generator=g)[:B]
        z = fld.sample(index, generator=g)
        g_est = _generator(unit.estimator_seed(r))
        t0 = time.perf_counter()
        out = _decompose_call(fld, index, z, unit, info, g_est)
        return out, time.perf_counter() - t0

    est = {q: np.empty(R) for q in unit.quantities}
    lo = {q: np.full(R, np.nan) for q in unit.quantities}
    hi = {q: np.full(R, np.nan) for q in unit.quantities}
    times = []
    with torch.no_grad():
        replicate(0)  # warm-up: first calls pay for allocation and dispatch; result discarded
        for r in range(R):
            out, dt = replicate(r)
            times.append(dt)
            for q in unit.quantities:
                est[q][r] = float(out[q])
                terms = out.get(f"{q}_terms")
                if terms is not None and terms.numel() > 1:
                    t = terms.detach().to(torch.float64)
                    half = Z95 * float(t.std()) / math.sqrt(t.numel())
                    m = float(t.mean())
                    lo[q][r], hi[q][r] = m - half, m + half
    return est, lo, hi, statistics.median(times)


def _log_px_estimates(unit: Unit):
    lg = linear_gaussian
    task = lg.LOG_PX_TASKS[unit.scenario]
    dtype = getattr(torch, unit.dtype)
    R = unit.replicates
    chunks = [len(c) for c in np.array_split(np.arange(R), min(TIMED_CHUNKS, R)) if len(c)]
    values, times = [], []
    with torch.no_grad():
        lg.sample_log_px_estimates(task, unit.estimator, unit.k, chunks[0], _generator(0), dtype)  # warm-up
        for c, size in enumerate(chunks):
            g = _generator(unit.batch_seed(c))  # not the estimator's: the same draws for every estimator
            t0 = time.perf_counter()
            out = lg.sample_log_px_estimates(task, unit.estimator, unit.k, size, g, dtype)
            times.append((time.perf_counter() - t0) / size)
            values.append(np.asarray(torch.as_tensor(out).detach().to(torch.float64).reshape(-1)))
    est = np.concatenate(values)
    predicted = float(lg.predicted_bias(task, unit.estimator, unit.k))
    return est, statistics.median(times), predicted


def _base_row(unit: Unit, quantity: str, info) -> dict:
    row = {c: math.nan for c in COLUMNS}
    row.update({
        "scenario": unit.scenario, "quantity": quantity, "estimator": unit.estimator, "N": unit.N, "D": unit.D,
        "batch_size": unit.batch_size, "k": unit.k, "replicates": unit.replicates,
        "separation": math.nan if unit.separation is None else float(unit.separation),
        "scenario_seed": unit.scenario_seed, "dtype": unit.dtype, "seed": unit.seed, "unit_seed": unit.unit_seed,
        "family": getattr(info, "family", "iwae" if unit.kind == "log_px" else ""),
        "published_variant": bool(getattr(info, "published_variant", False)),
        "reference_method": "", "bias_sign_theory": "", "bias_sign_ok": None, "reference_se_ok": None,
        "status": "ok", "error": "",
    })
    row.update(theory_columns(quantity, unit.N, unit.D, unit.batch_size,
                              unbiased_inside=bool(getattr(info, "unbiased_inside", False)),
                              estimator=unit.estimator))
    return row


def _finish_row(row: dict, ref: dict, estimates, *, lower=None, upper=None) -> dict:
    q = row["quantity"]
    row["reference"], row["reference_se"] = float(ref["value"]), float(ref["se"])
    row["reference_method"] = ref["method"]
    row.update(summarize(estimates, row["reference"], row["reference_se"], lower=lower, upper=upper,
                         nonnegative=is_nonnegative(q)))
    row["bias_sign_ok"] = sign_consistent(row["bias_sign_theory"], row["bias"], row["bias_se"], row["reference_se"])
    return row


def run_unit(unit: Unit, plan_: Plan, references: dict[tuple, dict | Exception]) -> list[dict]:
    r"""Run one unit and return its rows (one per quantity); an exception becomes status-"error" rows."""
    info = ESTIMATORS[unit.estimator] if unit.kind == "aggregate" else None
    rows = [_base_row(unit, q, info) for q in unit.quantities]
    try:
        if isinstance(references.get(unit.field_id), Exception):
            exc = references[unit.field_id]
            raise RuntimeError(f"reference failed: {type(exc).__name__}: {exc}")
        if unit.kind == "aggregate":
            est, lo, hi, t = _aggregate_estimates(unit, plan_.fields[unit.field_id], info)
            ref = references[unit.field_id]
            for row in rows:
                q = row["quantity"]
                _finish_row(row, ref[q], est[q], lower=lo[q], upper=hi[q])
                row["time_per_call_s"], row["reference_samples"] = t, ref.get("samples", math.nan)
        else:
            est, t, predicted = _log_px_estimates(unit)
            row = _finish_row(rows[0], references[unit.field_id], est)
            row["time_per_call_s"], row["predicted_bias"] = t, predicted
    except Exception as exc:  # recorded, and the run goes on
        for row in rows:
            row["status"], row["error"] = "error", f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return rows


# ----------------------------------------------------------------------------------- execution

def execute(plan_: Plan, out: str | Path, name: str, *, progress: bool = True, log=print) -> Path:
    r"""Run the planned units into ``<out>/<name>.csv``, skipping units already finished there.

    References are computed first (cached in ``<out>/.cache/references``). Returns the CSV path.
    """
    from tqdm.auto import tqdm

    out = check_writable(out)
    store = ResultStore(out / f"{name}.csv")
    cache = ReferenceCache(out / ".cache" / "references")
    todo = [u for u in plan_.units if not store.is_done(u)]
    order = [u.row_id(q) for u in plan_.units for q in u.quantities]
    if not todo:
        log(f"all {len(plan_.units)} units already in {store.path}; nothing to run")
        return store.path

    references: dict[tuple, dict | Exception] = {}
    for fid in dict.fromkeys(u.field_id for u in todo):
        t0 = time.perf_counter()
        where = fid[0] + (f" (separation {fid[1]:g})" if fid[1] is not None else "")
        try:
            if plan_.specs[fid].kind == "log_px":
                references[fid] = _log_px_reference(fid[0])
            else:
                references[fid] = compute_reference(plan_.fields[fid], plan_.reference_settings[fid], cache)
                log(f"reference {where}: {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # its cells are recorded as errors; the rest of the grid runs
            references[fid] = exc
            log(f"reference {where} failed: {type(exc).__name__}: {exc}")

    bar = tqdm(total=len(plan_.units), initial=len(plan_.units) - len(todo), desc=name, unit="unit",
               disable=not progress, dynamic_ncols=True)
    try:
        for unit in todo:
            bar.set_postfix_str(f"{unit.scenario} {unit.estimator} B={unit.batch_size} k={unit.k}", refresh=False)
            store.put(run_unit(unit, plan_, references), order)
            bar.update(1)
    finally:
        bar.close()
    return store.path
