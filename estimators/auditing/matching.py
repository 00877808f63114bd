r"""Matching a user's outputs with the candidates: exact matches, offset signatures, residuals.

**Tolerance.** Published code builds its constants and often its whole computation in float32, so a
match is exact up to float32 rounding: per sample, ``RTOL * scale_i`` with RTOL = 64 eps_float32
(about 7.6e-6) and scale_i = 1 + sum_d |L_iid| + |log q^(z_i)| + sum_d |log q^(z_id)| +
D (log N + log B + 1), the size of the numbers a float32 computation adds up for sample i (its own
log-density terms, its outputs and the constants), each candidate with its own outputs. A scalar (a mean
over the batch of differences of two per-sample values) gets twice the mean per-sample tolerance.

**Offset signatures.** Where no candidate matches, the residual user - candidate of every returned
value is tested for being one constant per fixture (every sample of the fixture shifted alike) that
follows ``(a0 + a1 D) log N + (b0 + b1 D) log B + (c0 + c1 D)`` over all fixtures: a dropped or
extra normaliser gives exactly such an offset (``tc_no_constant`` is mws - (D - 1) log(N B) in tc;
MWS weights applied per dimension put -(D - 1) log(N B) on the joint; a missing dataset size is
a term in log N with a constant). The fit is weighted least squares on the smallest subset of the
six terms that leaves every fixture within tolerance.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..numerics import LOG_2PI, log_normal
from .candidates import Candidate
from .fixtures import Fixture
from .harness import Output

__all__ = ["RTOL", "tolerances", "Residuals", "Signature", "compare", "fit_signature", "ignores_dataset_size",
           "describe_offset", "known_normaliser", "fixed_dataset_size", "TERMS"]

RTOL = 64 * float(torch.finfo(torch.float32).eps)
TERMS = ("1", "D", "log N", "D log N", "log B", "D log B")


def tolerances(fx: Fixture, values: dict) -> np.ndarray:
    r"""Per-sample float32 tolerance (B,) of a fixture; ``values`` are a candidate's float64 values on it."""
    z, mu, lv = (t.to(torch.float64) for t in (fx.z, fx.mu, fx.logvar))
    own = log_normal(z, mu, lv).abs().sum(1).numpy()
    scale = (1.0 + own + np.abs(values["log_qz"].numpy()) + np.abs(values["log_dims"].numpy()).sum(1)
             + fx.D * (math.log(fx.N) + math.log(fx.B) + 1.0))
    return RTOL * scale


def _regressors(fx: Fixture) -> np.ndarray:
    ln, lb = math.log(fx.N), math.log(fx.B)
    return np.array([1.0, fx.D, ln, fx.D * ln, lb, fx.D * lb])


@dataclass
class Residuals:
    r"""user - candidate on every fixture, per returned value: ``raw[key][f]`` (B,) or (), with tolerances."""

    candidate: Candidate
    raw: dict[str, list[np.ndarray]]
    tol: dict[str, list[np.ndarray]]
    worst: float = 0.0  # max |residual| / tolerance
    worst_key: str = ""
    worst_fixture: int = -1
    worst_abs: float = 0.0  # the |residual| there, nats

    @property
    def exact(self) -> bool:
        return self.worst <= 1.0


def compare(output_by_fixture: dict[int, Output], fixtures: list[Fixture], candidate: Candidate,
            values: list[dict], tols: list[np.ndarray]) -> Residuals | None:
    r"""Residuals of the user's outputs against one candidate; None if the candidate does not define them."""
    keys = list(next(iter(output_by_fixture.values())).values)
    if any(k in ("mi", "kl_agg", "tc", "dimwise_kl") and k not in candidate.quantities for k in keys):
        return None
    if any(k in ("log_qz", "log_prod_qz") for k in keys) and candidate.quantities != ("mi", "kl_agg", "tc",
                                                                                         "dimwise_kl"):
        return None
    res = Residuals(candidate, {k: [] for k in keys}, {k: [] for k in keys})
    res.fixtures = []
    for f, out in output_by_fixture.items():
        res.fixtures.append(f)
        for k in keys:
            r = out.values[k] - values[f][k].numpy()
            t = tols[f] if r.ndim else np.asarray(2.0 * tols[f].mean())
            res.raw[k].append(r)
            res.tol[k].append(t)
            norm = float(np.max(np.abs(r) / t)) if np.all(np.isfinite(r)) else math.inf
            if norm > res.worst or res.worst_fixture < 0:
                res.worst, res.worst_key, res.worst_fixture = norm, k, f
                res.worst_abs = float(np.max(np.abs(r)))
    return res


@dataclass
class Signature:
    r"""An offset of a candidate that explains every fixture: per returned value, coefficients on :data:`TERMS`."""

    candidate: Candidate
    coefficients: dict[str, np.ndarray]
    worst: float  # max |residual after the fit| / tolerance
    terms_used: int = 0
    notes: list[str] = field(default_factory=list)


def _offsets(res: Residuals, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """One offset per fixture (and its tolerance), or None if some fixture's samples are not shifted alike."""
    offs, tols = [], []
    for r, t in zip(res.raw[key], res.tol[key]):
        if not np.all(np.isfinite(r)):
            return None
        if r.ndim:
            centre = float(np.median(r))
            if np.any(np.abs(r - centre) > t):
                return None
            offs.append(float(np.mean(r)))
            tols.append(float(np.min(t)))
        else:
            offs.append(float(r))
            tols.append(float(t))
    return np.array(offs), np.array(tols)


def fit_signature(res: Residuals, fixtures: list[Fixture]) -> Signature | None:
    r"""The simplest offset signature of ``res``'s candidate that fits every fixture, or None."""
    X_all = np.stack([_regressors(fixtures[f]) for f in res.fixtures])
    coefficients, worst, used = {}, 0.0, 0
    for key in res.raw:
        got = _offsets(res, key)
        if got is None:
            return None
        r, t = got
        if np.all(np.abs(r) <= t):
            coefficients[key] = np.zeros(len(TERMS))
            continue
        best = None
        for size in range(1, len(TERMS) + 1):
            for subset in itertools.combinations(range(len(TERMS)), size):
                X = X_all[:, subset] / t[:, None]
                theta, *_ = np.linalg.lstsq(X, r / t, rcond=None)
                fit = X_all[:, subset] @ theta
                w = float(np.max(np.abs(r - fit) / t))
                if w <= 1.0 and (best is None or w < best[0]):
                    full = np.zeros(len(TERMS))
                    full[list(subset)] = theta
                    best = (w, full)
            if best is not None:
                break
        if best is None:
            return None
        coefficients[key] = best[1]
        worst = max(worst, best[0])
        used += int(np.count_nonzero(best[1]))
    if used == 0:
        return None  # no offset at all: an exact match, not a signature
    return Signature(res.candidate, coefficients, worst, used)


HALF_LOG_2PI = 0.5 * LOG_2PI


def _number(x: float) -> str:
    r = round(x)
    return str(int(r)) if abs(x - r) < 1e-6 * max(1.0, abs(x)) else f"{x:.6g}"


def _near_multiple(x: float, unit: float) -> bool:
    k = round(x / unit)
    return k != 0 and abs(x - k * unit) < 1e-4 * max(1.0, abs(x))


def known_normaliser(sig: "Signature") -> str | None:
    r"""What a signature's offset is, if it is one a dropped or extra normaliser gives, else None.

    Terms in log N and log B must have integer or half-integer coefficients (a factor N, B, sqrt(N B)
    dropped or doubled); constant terms must be multiples of log(2 pi)/2 (a dropped Gaussian
    normaliser, per dimension or once) or of log 2. A constant that is neither is not a known bug.
    """
    kinds = set()
    for theta in sig.coefficients.values():
        for i in (2, 3, 4, 5):
            if abs(theta[i]) > 1e-9:
                if abs(2 * theta[i] - round(2 * theta[i])) > 1e-4:
                    return None
                kinds.add("a factor N or B")
        for i in (0, 1):
            if abs(theta[i]) > 1e-9:
                if _near_multiple(theta[i], HALF_LOG_2PI):
                    kinds.add("log(2 pi)/2")
                elif _near_multiple(theta[i], math.log(2.0)):
                    kinds.add("log 2")
                else:
                    return None
    return " and ".join(sorted(kinds)) or None


def fixed_dataset_size(sig: "Signature") -> float:
    r"""For a function that ignores N: the N it behaves as if fixed at, exp(largest |constant coefficient|)."""
    c = max(max(abs(theta[0]), abs(theta[1])) for theta in sig.coefficients.values())
    return math.exp(c)


def _linear(a: float, b: float) -> str:
    """a + b D, written simply ('', '2', '-(D - 1)', '(2 + 3 D)')."""
    a = 0.0 if abs(a) < 1e-9 else a
    b = 0.0 if abs(b) < 1e-9 else b
    if b == 0.0:
        return _number(a)
    if a == 0.0:
        return "D" if _number(b) == "1" else "-D" if _number(b) == "-1" else f"{_number(b)} D"
    if _number(b) == "-1" and _number(-a) == "-1":
        return "-(D - 1)"
    if _number(b) == "1" and _number(a) == "-1":
        return "(D - 1)"
    return f"({_number(a)} {'+' if b > 0 else '-'} {_number(abs(b))} D)"


def describe_offset(theta: np.ndarray) -> str:
    r"""The offset (a0 + a1 D) log N + (b0 + b1 D) log B + (c0 + c1 D) in words, e.g. '-(D - 1) log N'."""
    parts = []
    for (i, j), unit in (((2, 3), " log N"), ((4, 5), " log B"), ((0, 1), "")):
        if abs(theta[i]) < 1e-9 and abs(theta[j]) < 1e-9:
            continue
        coef = _linear(theta[i], theta[j])
        if unit and coef == "1":
            coef = ""
        elif unit and coef == "-1":
            coef = "-"
        parts.append(f"{coef}{unit}".strip() if unit else coef)
    text = " + ".join(parts) if parts else "0"
    return text.replace("+ -", "- ").replace("+ -(", "- (")


def ignores_dataset_size(output_by_fixture: dict[int, Output], fixtures: list[Fixture], tols) -> bool:
    r"""Whether the user's values are the same at every N for every batch (within tolerance)."""
    groups: dict[tuple, list[int]] = {}
    for f in output_by_fixture:
        fx = fixtures[f]
        groups.setdefault((fx.group, fx.dtype), []).append(f)
    seen = False
    for members in groups.values():
        if len(members) < 2:
            continue
        seen = True
        first = output_by_fixture[members[0]].values
        for f in members[1:]:
            for k, v in output_by_fixture[f].values.items():
                t = tols[f] if np.ndim(v) else 2.0 * tols[f].mean()
                if not np.all(np.abs(v - first[k]) <= t):
                    return False
    return seen
