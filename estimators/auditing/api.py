r"""``audit(fn)``: which estimator a user's function computes, and how wrong it is at their B and N.

The verdict, in order of preference:

1. **an exact match** (within float32 rounding, :mod:`.matching`) with a candidate on every fixture:
   ``correct`` (exit status 0) for a registered estimator without a bug, ``known_bug`` (1) for a
   published variant or a mutation;
2. **an offset signature** of a candidate: ``known_bug`` (1), the offset written out, where it is one
   a bug gives -- a dropped or extra normaliser (integer or half-integer multiples of log N and log B,
   multiples of log(2 pi)/2 or log 2) or a missing dataset size (values that do not move with N);
   any other constant offset is ``unknown``, reported with its fit;
3. exact on every float64 fixture but not in float32: ``known_bug`` (1), float32 cancellation;
4. otherwise ``unknown`` (3), with the residuals against the closest candidates.
"""
from __future__ import annotations

import functools
import time

import torch

from ..posteriors import Posteriors, load_posteriors
from ..validation import as_int
from .accuracy import DEFAULT_SCENARIOS, accuracy, fields_for
from .candidates import CORRECT_FIX, candidates, evaluate
from .fixtures import make_fixtures
from .harness import AuditError, Output, call, check_differentiable, finite_or_note, understand
from .matching import (compare, describe_offset, fit_signature, fixed_dataset_size, ignores_dataset_size,
                       known_normaliser, tolerances)
from .report import AuditReport

__all__ = ["audit", "EXIT_CODES"]

EXIT_CODES = {"correct": 0, "known_bug": 1, "unknown": 3}


@functools.lru_cache(maxsize=1)
def _table():
    """The fixtures, the candidates, their values on every fixture and the tolerances (computed once)."""
    fixtures = make_fixtures()
    cands = candidates()
    values = {c.name: evaluate(c, fixtures) for c in cands}
    # each candidate's own tolerance: the size of the numbers it sums (loo on sharp posteriors: 1e5 nats)
    tols = {}
    for c in cands:
        tols[c.name] = []
        for fx, v in zip(fixtures, values[c.name]):
            if fx.dtype == torch.float32:  # the same numbers as its float64 twin, just before it
                tols[c.name].append(tols[c.name][-1])
            else:
                tols[c.name].append(tolerances(fx, v))
    return fixtures, cands, values, tols


def _run(fn, fixtures) -> tuple[dict[int, Output], list[str]]:
    outputs, notes, failures = {}, [], []
    for f, fx in enumerate(fixtures):
        try:
            out = understand(call(fn, fx)[1], fx)
        except AuditError as exc:
            failures.append(str(exc))
            continue
        bad = finite_or_note(out, fx)
        if bad:
            failures.append(f"the function returned {bad}")
            continue
        outputs[f] = out
    if not outputs:
        raise AuditError(failures[0] if failures else "no fixture could be run")
    kinds = {(o.kind, tuple(o.values)) for o in outputs.values()}
    if len(kinds) > 1:
        raise AuditError(f"the function returned different things on different fixtures: {sorted(kinds)}")
    if failures:
        notes.append(f"left out {len(failures)} of {len(fixtures)} fixtures where the function failed; the first: "
                     f"{failures[0]}")
    return outputs, notes


def _prefer(c) -> tuple:
    return (not c.registered, c.bug is not None)


def _classify(outputs, fixtures, cands, values, tols) -> dict:
    residuals = [r for c in cands if (r := compare(outputs, fixtures, c, values[c.name], tols[c.name])) is not None]
    if not residuals:
        raise AuditError("no candidate defines the quantities the function returned")
    exact = sorted((r for r in residuals if r.exact), key=lambda r: _prefer(r.candidate))
    ignores_n = ignores_dataset_size(outputs, fixtures, tols[CORRECT_FIX])
    closest = sorted(residuals, key=lambda r: (r.worst, _prefer(r.candidate)))
    result = {"residuals": closest, "exact": exact, "ignores_n": ignores_n, "signature": None, "float32": False}
    if exact:
        result["match"] = exact[0].candidate
        result["verdict"] = "correct" if exact[0].candidate.bug is None else "known_bug"
        return result
    signatures = [s for r in residuals if (s := fit_signature(r, fixtures)) is not None]
    if signatures:
        best = min(signatures, key=lambda s: (s.terms_used, _prefer(s.candidate), s.worst))
        known = ignores_n or known_normaliser(best) is not None
        result.update(match=best.candidate, verdict="known_bug" if known else "unknown", signature=best)
        return result
    f64 = {f: o for f, o in outputs.items() if fixtures[f].dtype == torch.float64}
    if f64 and len(f64) < len(outputs):
        for r in sorted(residuals, key=lambda r: _prefer(r.candidate)):
            r64 = compare(f64, fixtures, r.candidate, values[r.candidate.name], tols[r.candidate.name])
            if r64 is not None and r64.exact:
                result.update(match=r.candidate, verdict="known_bug", float32=True)
                return result
    result.update(match=closest[0].candidate, verdict="unknown")
    return result


def _describe(result) -> dict:
    c = result["match"]
    out = {"computes": c.name, "words": c.words, "formula": c.formula, "bug": c.bug, "fix": c.fix}
    sig = result["signature"]
    offsets = {} if sig is None else {k: describe_offset(theta) for k, theta in sig.coefficients.items()}
    what = "; ".join(f"{k} {'+' if not o.startswith('-') else ''}{o}" for k, o in offsets.items() if o != "0")
    if result["verdict"] == "unknown":
        out.update(computes=None, words="no known estimator", formula=None, bug=None, fix=CORRECT_FIX,
                   closest=c.name + (f" + a constant offset ({what}) that no known normaliser gives" if sig else ""),
                   offsets=offsets)
    elif sig is not None:
        if result["ignores_n"]:
            cause = ("the function ignores dataset_size (its values do not change with N): a missing dataset size, "
                     f"as if N were fixed at about {fixed_dataset_size(sig):.6g}")
        else:
            cause = f"a dropped or extra normalising constant ({known_normaliser(sig)})"
        out.update(computes=f"{c.name} + offset", words=f"{c.name} shifted by a constant: {what}",
                   formula=f"{c.name}'s formula, then {what}",
                   bug=f"{cause}: {what}" + (f"; and {c.bug}" if c.bug else ""), fix=c.fix or c.name, offsets=offsets)
        if result["ignores_n"] and c.name in ("naive", "loo", "calc_mi"):
            out["fix"] = CORRECT_FIX
    elif result["float32"]:
        out.update(bug=(f"{c.name} on every float64 fixture, but not in float32: precision is lost (catastrophic "
                        "cancellation, e.g. the matrix-product form of |z - mu|^2 on sharp posteriors)"),
                   fix=c.name)
    return out


def audit(fn, *, batch_size: int = 64, dataset_size: int = 2048, D: int = 5, scenarios=DEFAULT_SCENARIOS,
          posteriors=None, replicates: int = 32, seed: int = 0, check_accuracy: bool = True,
          name: str | None = None) -> AuditReport:
    r"""Audit a user's estimator: which formula it computes, its bug if any, and its accuracy.

    Args:
        fn: ``fn(z, mu, logvar, dataset_size)`` with z, mu, logvar (B, D) torch tensors, returning
            per-sample ``(log_qz, log_prod_qz)`` or scalars among mi, tc, dimwise_kl, kl_agg (a dict,
            a named tuple or an object with those attributes); see :mod:`estimators.auditing.harness`.
        batch_size, dataset_size: B and N of the accuracy part (the user's own setting).
        D: latent dimensions of the built-in scenarios of the accuracy part.
        scenarios: built-in scenario names for the accuracy part.
        posteriors: the user's own field instead (a path or a :class:`~estimators.Posteriors`).
        replicates: R batches per field.
        seed: seed of the accuracy part's batches.
        check_accuracy: False skips the accuracy part (the classification alone takes seconds).
        name: how the report names the function (default: its qualified name).

    Returns:
        An :class:`~estimators.auditing.report.AuditReport`: ``verdict`` (``"correct"``, ``"known_bug"``,
        ``"unknown"``), ``exit_code`` (0, 1, 3), what it computes in words and formula, the bug and the
        estimator to use instead, the residuals, and the accuracy rows; ``str(report)`` is the text
        report, ``report.to_dict()`` the JSON one.

    Raises:
        AuditError (a ValueError): the function cannot be run (it raises on every fixture, returns
            nothing usable, ...); the message says what and where.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    batch_size = as_int("batch_size", batch_size, 2)
    dataset_size = as_int("dataset_size", dataset_size, 1)
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size must be at least batch_size, got N = {dataset_size} < B = {batch_size}")
    replicates = as_int("replicates", replicates, 2)
    if isinstance(posteriors, (str, bytes)) or hasattr(posteriors, "__fspath__"):
        posteriors = load_posteriors(posteriors)
    elif posteriors is not None and not isinstance(posteriors, Posteriors):
        raise TypeError(f"posteriors must be a path or a Posteriors, got {type(posteriors).__name__}")
    start = time.perf_counter()
    fixtures, cands, values, tols = _table()
    outputs, notes = _run(fn, fixtures)
    first = next(iter(outputs.values()))
    differentiable = check_differentiable(fn, fixtures[next(f for f, fx in enumerate(fixtures)
                                                            if fx.kind == "heteroscedastic" and fx.B == 16
                                                            and fx.dtype == torch.float64)])
    result = _classify(outputs, fixtures, cands, values, tols)
    mine = [r for r in result["residuals"] if r.candidate is result["match"]]  # the named candidate first
    result["residuals"] = (mine + [r for r in result["residuals"] if r.candidate is not result["match"]])[:3]
    described = _describe(result)
    if result["ignores_n"]:
        notes.append("its values do not change with dataset_size (the same batch at N = B, 4 B + 1 and 737,280)")
    rows = []
    if check_accuracy:
        fields = fields_for(dataset_size, D, scenarios, posteriors)
        rows = accuracy(fn, batch_size=batch_size, fields=fields, replicates=replicates,
                        compare_with=described["fix"] or CORRECT_FIX, seed=seed)
    return AuditReport(
        function=name or getattr(fn, "__qualname__", repr(fn)), understood=first.understood,
        returned=list(first.values), ignored=first.ignored, differentiable=differentiable,
        verdict=result["verdict"], exit_code=EXIT_CODES[result["verdict"]], fixtures=len(outputs),
        also_matches=[r.candidate.name for r in result["exact"][1:]],
        residuals=[{"candidate": r.candidate.name, "max_abs_residual": r.worst_abs, "max_over_tolerance": r.worst,
                    "value": r.worst_key, "fixture": fixtures[r.worst_fixture].name} for r in result["residuals"]],
        notes=notes, accuracy=rows, seconds=time.perf_counter() - start, **described)
