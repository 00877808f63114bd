r"""Planning: validate a grid up front, build its fields and list its units in order.

Everything that can be wrong with a grid (an unknown name, a batch size above N or below what an
estimator needs, a bad k or replicate count, a posterior file that fails validation) is found
here, before anything runs or is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import log_px
from ..direct import DIRECT_ESTIMATORS
from ..log_qz import ESTIMATORS, FAMILIES
from ..posteriors import Posteriors, load_posteriors
from ..scenarios import SCENARIOS, make_scenario
from ..validation import as_int
from .grid import AGGREGATE_QUANTITIES, ALL_QUANTITIES, LOG_PX, ScenarioSpec
from .presets import Preset
from .tasks import AggregateUnit, DirectUnit, LogPxUnit, Unit

__all__ = ["Plan", "plan", "known_names", "reference_samples", "build_field", "REFERENCE_BUDGET"]

REFERENCE_BUDGET = 2 * 10**10  # kernel terms N^2 S of one reference: about half a minute here


@dataclass
class Plan:
    r"""A validated grid, ready to run: the units in order and the fields they run on."""

    units: list[Unit]
    fields: dict[tuple, Posteriors] = field(default_factory=dict)  # AggregateUnit.field_id -> field
    reference_settings: dict = field(default_factory=dict)  # field_id -> exact_references kwargs


def known_names() -> dict[str, tuple[str, ...]]:
    r"""The names a grid can use: scenarios, log p(x) tasks, estimators of both kinds, quantities.

    Aggregate estimators come in the grid's default order: by family (``estimators.log_qz.FAMILIES``:
    minibatch, importance, exact), in registry order within a family, so the order of the rows of a
    report does not depend on the order in which modules register their estimators.
    """
    by_family = sorted(ESTIMATORS, key=lambda name: FAMILIES.index(ESTIMATORS[name].family))  # stable
    return {
        "scenarios": tuple(SCENARIOS),
        "tasks": tuple(log_px.LOG_PX_TASKS),
        "estimators": tuple(by_family),
        "log_px_estimators": tuple(log_px.LOG_PX_ESTIMATORS),
        "direct_estimators": tuple(DIRECT_ESTIMATORS),
        "quantities": ALL_QUANTITIES,
    }


def _listing(names) -> str:
    return ", ".join(sorted(names)) if names else "(none available)"


def build_field(spec: ScenarioSpec) -> Posteriors:
    r"""The field of posteriors a spec names: its file, or its scenario at its size, knob and seed."""
    if spec.path is not None:
        return load_posteriors(spec.path)
    kwargs = {"N": spec.N, "D": spec.D, "seed": spec.seed}
    if spec.separation is not None:
        kwargs["separation"] = spec.separation
    return make_scenario(spec.name, **kwargs)


def _check_names(kind: str, given, known, extra: str = "") -> None:
    bad = [n for n in given if n not in known]
    if bad:
        plural = "quantities" if kind == "quantity" else f"{kind}s"
        raise ValueError(f"unknown {kind} {bad[0]!r}; known {plural}: {_listing(known)}{extra}")


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
    direct_known = set(known["direct_estimators"])
    if quantities is not None:
        _check_names("quantity", quantities, known["quantities"])
    qsel = tuple(quantities or preset.quantities)
    if estimators is not None:
        _check_names("estimator", estimators, agg_known | px_known | direct_known)
    agg_est = [e for e in (estimators if estimators is not None else known["estimators"]) if e in agg_known]
    px_est = [e for e in (estimators if estimators is not None else known["log_px_estimators"]) if e in px_known]
    direct_est = [e for e in (estimators if estimators is not None else known["direct_estimators"])
                  if e in direct_known]
    if preset.estimators is not None and estimators is None:
        agg_est = [e for e in agg_est if e in preset.estimators]
        px_est = [e for e in px_est if e in preset.estimators]
    if preset.direct_estimators is not None and estimators is None:
        direct_est = [e for e in direct_est if e in preset.direct_estimators]

    # Scenarios: files replace the named ones; --scenarios filters (and may name tasks).
    if scenarios is not None:
        _check_names("scenario", scenarios, set(known["scenarios"]) | set(known["tasks"]),
                     f"; log p(x) tasks: {_listing(known['tasks'])}" if known["tasks"] else "")
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

    replicates = as_int("replicates", preset.replicates, 2)  # a standard error needs two
    px_replicates = as_int("log_px_replicates", preset.log_px_replicates, 2) if tasks else None
    batch_sizes = [as_int("batch size", b, 1) for b in preset.batch_sizes]
    ks = [as_int("k", k, 1) for k in preset.k]
    px_ks = [as_int("k", k, 1) for k in preset.log_px_k]
    if preset.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {preset.dtype!r}")

    agg_q = tuple(q for q in qsel if q in AGGREGATE_QUANTITIES)
    direct_est = [e for e in direct_est if any(q in agg_q for q in DIRECT_ESTIMATORS[e].quantities)]
    dr_steps = [as_int("density-ratio steps", k, 1) for k in preset.density_ratio_steps]
    dr_batch = as_int("density-ratio batch size", preset.density_ratio_batch_size, 2)
    dr_replicates = as_int("density-ratio replicates", preset.density_ratio_replicates, 2)
    units: list[Unit] = []
    direct_units: list[Unit] = []  # after every aggregate unit (rows of the CSV in that order)
    fields: dict[tuple, Posteriors] = {}
    if agg_q and (agg_est or direct_est):
        for spec in specs:
            if spec.field_id in fields:
                raise ValueError(f"scenario {spec.name!r} appears twice with the same settings; "
                                 "give each posterior file a distinct name")
            # Estimates and reference both see the field rounded to the run's dtype.
            fld = build_field(spec).to(getattr(torch, preset.dtype))
            fields[spec.field_id] = fld
            for est in direct_est:
                info = DIRECT_ESTIMATORS[est]
                dq = tuple(q for q in info.quantities if q in agg_q)
                if info.needs_steps:  # trains on the whole field: its own batch size, steps and replicates
                    if fld.D < 2:
                        continue  # a total correlation needs two dimensions
                    for steps in dr_steps:
                        direct_units.append(DirectUnit(spec.name, fld.N, fld.D, spec.separation, spec.seed, est,
                                                       dr_batch, steps, dq, dr_replicates, preset.dtype, seed))
                    continue
                for b in batch_sizes:
                    if b > fld.N:
                        raise ValueError(f"batch size {b} is larger than N = {fld.N} of scenario {spec.name!r} "
                                         "(a batch holds distinct data points)")
                    if b < info.min_batch(fld.D):
                        continue  # below what it needs in this D (a Gaussian TC of b <= D means): skipped
                    direct_units.append(DirectUnit(spec.name, fld.N, fld.D, spec.separation, spec.seed, est, b,
                                                   None, dq, replicates, preset.dtype, seed))
            for est in agg_est:
                info = ESTIMATORS[est]
                own_q = tuple(q for q in agg_q if q in info.quantities)  # calc_mi defines mi only
                if not own_q:
                    continue
                for b in batch_sizes:
                    if b > fld.N:
                        raise ValueError(f"batch size {b} is larger than N = {fld.N} of scenario {spec.name!r} "
                                         "(a batch holds distinct data points)")
                    if b < info.min_batch:
                        raise ValueError(f"batch size {b} is too small for estimator {est!r}: "
                                         f"it needs at least {info.min_batch}")
                    for k in (ks if info.needs_k else (None,)):
                        units.append(AggregateUnit(spec.name, fld.N, fld.D, spec.separation, spec.seed, est, b, k,
                                                   own_q, replicates, preset.dtype, seed))
    units += direct_units
    if LOG_PX in qsel and px_est:
        for task in tasks:
            latent_dim = int(log_px.LOG_PX_TASKS[task].latent_dim)
            for est in px_est:
                info = log_px.LOG_PX_ESTIMATORS[est]
                cap = preset.pairwise_max_k if info.pairwise else None
                for k in px_ks:
                    if k < info.min_k or (cap is not None and k > cap):
                        continue  # below the estimator's smallest k, or above the cap: skipped, not an error
                    units.append(LogPxUnit(task, latent_dim, est, k, px_replicates, preset.dtype, seed))
    if not units:
        raise ValueError("the grid is empty: no (scenario, estimator, quantity) combination is selected")
    # The reference depends on the field and the preset only, never on which cells run.
    settings = {fid: {"samples": reference_samples(fld.N, preset.reference_samples),
                      "quadrature_nodes": preset.quadrature_nodes, "seed": 0}
                for fid, fld in fields.items()}
    if preset.reference_target_se is not None:  # only then a key: the cache keys of the other presets stay
        for s in settings.values():
            s["target_se"] = float(preset.reference_target_se)
    return Plan(units, fields, settings)


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
        max_n = SCENARIOS[name].max_N
        if n is not None and max_n is not None:
            n = min(n, max_n)
        d = first.D if D is None else D
        for sep in seps:
            out.append(ScenarioSpec(name, N=n, D=d, separation=sep, seed=first.seed))
    return out


def reference_samples(N: int, wanted: int) -> int:
    r"""Monte Carlo draws per component for a field's reference: the preset's number, lowered where
    the cost N^2 S would pass :data:`REFERENCE_BUDGET` kernel terms (at least 2).

    How the presets choose S: a reference's se must be at most a tenth of every bias se it judges
    (docs/maths.md, "Exact references"). The smallest bias_se of a field is that of the ``exact``
    estimator at the largest batch, about sigma / sqrt(B R) with sigma the sd of a per-sample term
    such as log q(z|n) - log q(z); the reference averages the same kind of term over N S
    stratified draws (its control variates only shrink it), so N S >= 100 B_max R meets the rule.
    The report flags every cell where it fails.
    """
    return int(max(2, min(wanted, REFERENCE_BUDGET // (N * N))))
