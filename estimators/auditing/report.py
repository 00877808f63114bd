r"""The audit's report: a dataclass, its text form (``str(report)``) and its JSON form (``to_dict``)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["AuditReport"]

VERDICT_WORDS = {"correct": "CORRECT", "known_bug": "KNOWN BUG", "unknown": "UNKNOWN"}


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


@dataclass
class AuditReport:
    r"""What :func:`estimators.audit` found (every field is also a key of :meth:`to_dict`).

    Attributes:
        function: the audited function's name.
        understood: how its return value was read, in words; ``returned`` the values used,
            ``ignored`` the returned names the audit does not know.
        differentiable: None if autograd goes through it with finite gradients, else why not.
        verdict: ``"correct"``, ``"known_bug"`` or ``"unknown"``; ``exit_code`` 0, 1 or 3.
        computes, words, formula: the matched estimator (registry name or ``base:mutation``).
        bug, fix: what is wrong (None if nothing) and the registered estimator to use instead.
        also_matches: other candidates equal to it on everything the function returned.
        residuals: the closest candidates: the largest |user - candidate| and its ratio to the tolerance.
        offsets: for an offset signature, the offset of each returned value.
        closest: for an unknown function, the candidate it is nearest to.
        accuracy: rows (field, quantity, reference, bias, sd, rmse with se, the same for ``compare_with``).
    """

    function: str
    understood: str
    returned: list[str]
    ignored: list[str]
    differentiable: str | None
    verdict: str
    exit_code: int
    fixtures: int
    computes: str | None
    words: str
    formula: str | None
    bug: str | None
    fix: str | None
    also_matches: list[str] = field(default_factory=list)
    residuals: list[dict] = field(default_factory=list)
    offsets: dict = field(default_factory=dict)
    closest: str | None = None
    notes: list[str] = field(default_factory=list)
    accuracy: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        r"""The report as JSON-ready data (NaN written as None)."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v
        return clean(asdict(self))

    def __str__(self) -> str:
        lines = [f"audit of {self.function}",
                 f"  returns      {self.understood}" + (f" (ignored: {', '.join(self.ignored)})" if self.ignored else ""),
                 f"  autograd     {'differentiable' if self.differentiable is None else self.differentiable}",
                 f"  fixtures     {self.fixtures} batches (prior, sharp, broad, heteroscedastic posteriors; "
                 "B 2-256, N B-737,280, D 1-10, float32 and float64)",
                 "",
                 f"verdict: {VERDICT_WORDS[self.verdict]} (exit status {self.exit_code})"]
        if self.verdict == "unknown":
            lines.append(f"  computes     no known estimator; closest: {self.closest}")
        else:
            lines.append(f"  computes     {self.computes}: {self.words}")
            if self.formula and self.formula != self.words:
                lines.append(f"  formula      {self.formula}")
        if self.also_matches:
            lines.append(f"  same values  {', '.join(self.also_matches)} (indistinguishable on what it returns)")
        if self.bug:
            lines.append(f"  bug          {self.bug}")
        if self.fix:
            lines.append(f"  use instead  {self.fix}: estimators.decompose(z, mu, logvar, dataset_size, "
                         f"estimator={self.fix!r})")
        if self.verdict != "correct":
            lines += ["", "residuals (your value - candidate; tolerance: float32 rounding of the terms summed):"]
            for r in self.residuals:
                lines.append(f"  {r['candidate']:<28} max |residual| {_num(r['max_abs_residual'])} nats "
                             f"({_num(r['max_over_tolerance'], 3)} x tolerance) in {r['value']} at {r['fixture']}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.accuracy:
            first = self.accuracy[0]
            other = first["compare_with"]
            lines += ["", f"accuracy at B = {first['batch_size']}, N = {first['N']} ({first['replicates']} batches per "
                          f"field; bias +- se, against exact references; '{other}' on the same batches):",
                      f"  {'field':<16} {'quantity':<11} {'reference':>20} {'your bias':>20} {'sd':>8} {'rmse':>8}"
                      f" {other + ' bias':>20} {'rmse':>8}"]
            for r in self.accuracy:
                ref = f"{_num(r['reference'])} +- {_num(r['reference_se'], 2)}"
                bias = f"{_num(r['bias'])} +- {_num(r['bias_se'], 2)}"
                obias = f"{_num(r['compare_bias'])} +- {_num(r['compare_bias_se'], 2)}"
                lines.append(f"  {r['field']:<16} {r['quantity']:<11} {ref:>20} {bias:>20} {_num(r['sd']):>8} "
                             f"{_num(r['rmse']):>8} {obias:>20} {_num(r['compare_rmse']):>8}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)
