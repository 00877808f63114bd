r"""The run loop: references first, then the planned units one by one into the CSV, under the
CSV's lock (:mod:`.lock`: one writer per CSV).

Each unit (:mod:`.tasks`) has its own generators, seeded from the unit and the replicate (see
:mod:`.grid`), so its numbers do not depend on what else runs. Its estimates are compared with
the field's reference, computed once per field and cached on disk (:mod:`.reference_cache`).

After each unit its rows are appended to the CSV (:mod:`.store`); a rerun skips units whose rows
are all there with status "ok". A unit that raises is recorded with status "error" and its message,
and the run goes on.

Where the units run is the executor's business (:mod:`.executor`): here, one by one (the default),
or as tasks on a dask cluster, whose rows are appended here as each unit finishes, in whatever
order; the CSV is put in the grid's order at the end, so it is the same file either way. The
references are computed here, one field at a time, handing the executor to the references' own
work split where they take one.
"""
from __future__ import annotations

import inspect
import math
import time
from pathlib import Path

from .executor import SERIAL
from .metrics import is_nonnegative, sign_consistent, summarize
from .lock import output_lock
from .plan import Plan
from .reference_cache import ReferenceCache
from .store import ResultStore
from .tasks import Measurement, Unit

__all__ = ["execute", "run_unit"]


def _finish_row(row: dict, ref: dict, measured: Measurement, reference: dict) -> dict:
    q = row["quantity"]
    row["reference"], row["reference_se"] = float(ref["value"]), float(ref["se"])
    row["reference_method"] = ref["method"]
    row["reference_lower"] = float(ref.get("lower", math.nan))
    row["reference_upper"] = float(ref.get("upper", math.nan))
    row.update(summarize(measured.estimates[q], row["reference"], row["reference_se"], lower=measured.lower.get(q),
                         upper=measured.upper.get(q), nonnegative=is_nonnegative(q)))
    row["bias_sign_ok"] = sign_consistent(row["bias_sign_theory"], row["bias"], row["bias_se"], row["reference_se"])
    row["time_per_call_s"] = measured.time_per_call_s
    row["reference_samples"] = reference.get("samples", math.nan)
    row.update(measured.columns)
    return row


def error_rows(unit: Unit, exc: BaseException) -> list[dict]:
    r"""The rows of a unit that failed with ``exc``: status "error", its message (retried by a rerun)."""
    rows = [unit.base_row(q) for q in unit.quantities]
    for row in rows:
        row["status"], row["error"] = "error", f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return rows


def run_unit(unit: Unit, plan_: Plan, references: dict[tuple, dict | Exception]) -> list[dict]:
    r"""Run one unit and return its rows (one per quantity); an exception becomes status-"error" rows."""
    rows = [unit.base_row(q) for q in unit.quantities]
    try:
        reference = references[unit.field_id]
        if isinstance(reference, Exception):
            raise RuntimeError(f"reference failed: {type(reference).__name__}: {reference}")
        measured = unit.measure(plan_)
        for row in rows:
            _finish_row(row, reference[row["quantity"]], measured, reference)
    except Exception as exc:  # recorded, and the run goes on
        return error_rows(unit, exc)
    return rows


def execute(plan_: Plan, out: str | Path, name: str, *, progress: bool = True, log=print, wait: bool = False,
            executor=None) -> Path:
    r"""Run the planned units into ``<out>/<name>.csv``, skipping units already finished there.

    The CSV's lock (:mod:`.lock`) is held throughout: another process writing the same CSV makes
    this one raise :class:`.lock.LockedError` (or, with ``wait``, wait for it). References are
    computed first (cached in ``<out>/.cache/references``), with a progress bar over the fields.
    Returns the CSV path.

    Args:
        executor: where the units run (:mod:`.executor`): None or :data:`.executor.SERIAL`, here one by
            one; a started :class:`.executor.DaskExecutor`, on its cluster. The CSV is the same
            (every column but ``time_per_call_s``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out / f"{name}.csv", wait=wait, log=log):
        return _execute(plan_, out, name, progress, log, SERIAL if executor is None else executor)


def _field_label(unit: Unit) -> str:
    cells = unit.cell_columns()
    return cells["scenario"] + ("" if cells["separation"] is None else f" (separation {cells['separation']:g})")


def accepts_executor(fn) -> bool:
    r"""Whether ``fn`` (a unit's ``reference``) takes an ``executor`` keyword."""
    try:
        return "executor" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _reference(unit: Unit, plan_: Plan, cache: ReferenceCache, progress: bool, executor) -> dict:
    kwargs = {"progress": True if progress else None}
    if executor is not SERIAL and accepts_executor(unit.reference):
        kwargs["executor"] = executor  # the references split their own work (query chunks) over the cluster
    return unit.reference(plan_, cache, **kwargs)


def _whole_reference(unit: Unit, plan_: Plan) -> tuple[dict, float]:
    r"""One field's reference, computed in one piece on a worker (no cache there: it stays with the CLI;
    no bars): (reference, seconds)."""
    t0 = time.perf_counter()
    return unit.reference(plan_, None, progress=None), time.perf_counter() - t0


def _references_side_by_side(fields: list, plan_: Plan, cache: ReferenceCache, executor, log, bar) -> dict:
    r"""The references of ``fields`` [(field id, unit)] from the cache, or each whole on one worker, side by
    side; stored in the cache as they come back. {field id: reference, or the exception it raised}."""
    out, pending = {}, []
    for fid, unit in fields:
        fld = plan_.fields.get(fid)  # None for tasks whose reference is a closed form (log p(x))
        key, hit = (None, None) if fld is None else cache.lookup(fld, plan_.reference_settings[fid])
        if hit is not None:
            out[fid] = hit
            bar.update(1)
        else:
            pending.append((fid, unit, key))
    for i, got, error in executor.as_completed(_whole_reference, [unit for _, unit, _ in pending], (plan_,)):
        fid, unit, key = pending[i]
        out[fid] = got[0] if error is None else error
        if error is None and key is not None:
            cache.put(key, got[0])
        with bar.external_write_mode():
            log(f"reference {_field_label(unit)}: {got[1]:.1f} s on a worker" if error is None
                else f"reference {_field_label(unit)} failed: {type(error).__name__}: {error}")
        bar.update(1)
    return out


def _execute(plan_: Plan, out: Path, name: str, progress: bool, log, executor) -> Path:
    from tqdm.auto import tqdm

    store = ResultStore(out / f"{name}.csv")
    cache = ReferenceCache(out / ".cache" / "references")
    todo = [u for u in plan_.units if not store.is_done(u)]
    order = [u.row_id(q) for u in plan_.units for q in u.quantities]
    if not todo:
        log(f"all {len(plan_.units)} units already in {store.path}; nothing to run")
        return store.path

    references: dict[tuple, dict | Exception] = {}
    first: dict[tuple, Unit] = {}
    for unit in todo:
        first.setdefault(unit.field_id, unit)
    # One reference per field (or task), computed before any unit runs: seconds to minutes each at
    # large N, so they get their own bar, and each field's time is logged above it.
    bar = tqdm(total=len(first), desc="references", unit="field", disable=not progress, dynamic_ncols=True)
    # With two or more workers and at least as many fields, the fields' references run side by side, each
    # whole on one worker (every part of a reference in parallel, not only the Monte Carlo's query chunks);
    # otherwise each reference splits its own work over the cluster. The values are the same either way.
    whole = executor is not SERIAL and 2 <= executor.workers <= len(first)
    try:
        if whole:
            references.update(_references_side_by_side(list(first.items()), plan_, cache, executor, log, bar))
        else:
            for fid, unit in first.items():
                where = _field_label(unit)
                bar.set_postfix_str(where)
                t0 = time.perf_counter()
                try:
                    # exact_references draws its own bars (quadratures, Monte Carlo draws) below this one
                    references[fid] = _reference(unit, plan_, cache, progress, executor)
                    message = f"reference {where}: {time.perf_counter() - t0:.1f} s"
                except Exception as exc:  # its cells are recorded as errors; the rest of the grid runs
                    references[fid] = exc
                    message = f"reference {where} failed: {type(exc).__name__}: {exc}"
                with bar.external_write_mode():
                    log(message)
                bar.update(1)
    finally:
        bar.close()

    bar = tqdm(total=len(plan_.units), initial=len(plan_.units) - len(todo), desc=name, unit="unit",
               disable=not progress, dynamic_ncols=True)
    # Units whose reference failed are error rows at once; the others go to the executor, with only the
    # references they need (a failed one's exception need not travel).
    ready = {fid: ref for fid, ref in references.items() if not isinstance(ref, Exception)}
    failed = [u for u in todo if u.field_id not in ready]
    todo = [u for u in todo if u.field_id in ready]
    try:
        for unit in failed:
            store.append(run_unit(unit, plan_, references))
            bar.update(1)
        if executor is SERIAL and todo:
            bar.set_postfix_str(todo[0].label, refresh=False)
        for i, rows, error in executor.as_completed(run_unit, todo, (plan_, ready)):
            store.append(rows if error is None else error_rows(todo[i], error))  # on disk as each unit ends
            if executor is SERIAL and i + 1 < len(todo):
                bar.set_postfix_str(todo[i + 1].label, refresh=False)  # the one running now
            else:
                bar.set_postfix_str(todo[i].label, refresh=False)  # the last one finished
            bar.update(1)
    finally:
        bar.close()
        store.flush(order)  # once, at the end (also when interrupted): the rows in the grid's order
    return store.path
