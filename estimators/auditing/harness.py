r"""Calling a user's function on a fixture, and understanding what it returned.

The function receives ``(z, mu, logvar, dataset_size)`` -- three (B, D) torch tensors and an int --
and returns either

* per-sample values ``(log_qz, log_prod_qz)``: a pair of (B,) tensors (a (B, D) second entry is
  read as the marginals log q(z_id) and summed over d), or a dict / named tuple / object with
  ``log_qz`` and ``log_prod_qz``; or
* scalars: any of ``mi``, ``tc``, ``dimwise_kl``, ``kl_agg`` as a dict, a named tuple or an object
  with those attributes (tensors, numpy numbers or floats).

Whatever it does wrong -- raising, returning NaN, the wrong shape, a value autograd cannot
differentiate -- becomes an :class:`AuditError` or a note naming the fixture, never a traceback from
inside the harness.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from .fixtures import Fixture

__all__ = ["AuditError", "Output", "call", "understand", "check_differentiable", "SCALARS", "PER_SAMPLE"]

SCALARS = ("mi", "kl_agg", "tc", "dimwise_kl")
PER_SAMPLE = ("log_qz", "log_prod_qz")


class AuditError(ValueError):
    r"""The user's function cannot be audited (it raised, returned nothing usable, ...): the message says why."""


@dataclass
class Output:
    r"""What one call returned, understood: ``kind`` ``"per_sample"`` or ``"scalars"``, float64 numpy values."""

    kind: str
    values: dict[str, np.ndarray]
    understood: str  # how the return value was read, in words
    ignored: list[str] = field(default_factory=list)  # returned names that mean nothing to the audit


def _user_frame(exc: BaseException) -> str:
    """'file:line in function' of the innermost frame outside this package, where the user's code failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/estimators/audit/" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename}:{f.lineno} in {f.name})"


def call(fn, fixture: Fixture, *, requires_grad: bool = False):
    r"""``fn(z, mu, logvar, N)`` on fresh copies of the fixture's tensors; (inputs, result)."""
    inputs = [t.clone().requires_grad_(requires_grad) for t in (fixture.z, fixture.mu, fixture.logvar)]
    try:
        result = fn(*inputs, fixture.N)
    except Exception as exc:  # the user's code: any failure is reported, with where it happened
        raise AuditError(f"the function raised {type(exc).__name__}: {exc}{_user_frame(exc)} on the fixture "
                         f"{fixture.name}") from None
    return inputs, result


def _as_dict(result) -> tuple[dict, str] | None:
    if isinstance(result, dict):
        return dict(result), "a dict"
    if isinstance(result, tuple) and hasattr(result, "_asdict"):
        return dict(result._asdict()), f"a named tuple ({type(result).__name__})"
    names = [n for n in SCALARS + PER_SAMPLE if hasattr(result, n)]
    if names and not isinstance(result, (tuple, list, torch.Tensor, np.ndarray)):
        return {n: getattr(result, n) for n in names}, f"an object with attributes ({type(result).__name__})"
    return None


def _to_numpy(name: str, value, fixture: Fixture) -> np.ndarray:
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", torch.float64).numpy()
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        raise AuditError(f"the function's {name} is a {type(value).__name__}, not a number or a tensor "
                         f"(fixture {fixture.name})") from None


def _per_sample(first, second, fixture: Fixture, how: str) -> Output:
    a = _to_numpy("log_qz", first, fixture)
    b = _to_numpy("log_prod_qz", second, fixture)
    B, D = fixture.B, fixture.D
    if a.shape != (B,):
        raise AuditError(f"the function returned per-sample values: log_qz must have shape (B,) = ({B},), got "
                         f"{a.shape} (fixture {fixture.name})")
    if b.shape == (B, D):
        b = b.sum(1)
        how += "; the second entry, (B, D), read as the marginals log q(z_id) and summed over d"
    elif b.shape != (B,):
        raise AuditError(f"the function returned per-sample values: log_prod_qz must have shape (B,) = ({B},) "
                         f"(or (B, D) = ({B}, {D}), the marginals), got {b.shape} (fixture {fixture.name})")
    return Output("per_sample", {"log_qz": a, "log_prod_qz": b}, how)


def understand(result, fixture: Fixture) -> Output:
    r"""Read a return value as per-sample ``(log_qz, log_prod_qz)`` or as scalars; :class:`AuditError` if neither."""
    if isinstance(result, (tuple, list)) and not hasattr(result, "_asdict") and len(result) == 2:
        return _per_sample(result[0], result[1], fixture, "a pair (log_qz, log_prod_qz) of per-sample values")
    mapping = _as_dict(result)
    if mapping is None:
        shape = tuple(getattr(result, "shape", ())) if hasattr(result, "shape") else None
        what = type(result).__name__ + (f" of shape {shape}" if shape is not None else "")
        raise AuditError(f"the function returned a {what}; return a pair (log_qz, log_prod_qz) of (B,) tensors, or "
                         f"scalars named by any of {', '.join(SCALARS)} (a dict, a named tuple or an object with "
                         f"those attributes), e.g. {{'tc': tc}}")
    values, how = mapping
    if "log_qz" in values and "log_prod_qz" in values:
        out = _per_sample(values["log_qz"], values["log_prod_qz"], fixture, how + " with log_qz and log_prod_qz")
        out.ignored = sorted(k for k in values if k not in PER_SAMPLE)
        return out
    scalars = {}
    for name in SCALARS:
        if name in values:
            v = _to_numpy(name, values[name], fixture)
            if v.size != 1:
                raise AuditError(f"the function's {name} must be a scalar, got shape {v.shape} "
                                 f"(fixture {fixture.name})")
            scalars[name] = v.reshape(())
    if not scalars:
        raise AuditError(f"the function returned {how} with keys {sorted(values)}; none of them is a quantity the "
                         f"audit knows: name them {', '.join(SCALARS)} (scalars) or log_qz, log_prod_qz (per sample)")
    return Output("scalars", scalars, f"{how} of scalars: {', '.join(scalars)}",
                  sorted(k for k in values if k not in scalars))


def finite_or_note(output: Output, fixture: Fixture) -> str | None:
    r"""None if every returned value is finite, else a note naming the values and the fixture."""
    bad = [k for k, v in output.values.items() if not np.all(np.isfinite(v))]
    if bad:
        return f"{', '.join(bad)} not finite (NaN or inf) on the fixture {fixture.name}"
    return None


def check_differentiable(fn, fixture: Fixture) -> str | None:
    r"""None if every returned tensor is differentiable in (z, mu, logvar) with finite gradients, else why not."""
    inputs, result = call(fn, fixture, requires_grad=True)
    out = understand(result, fixture)
    raw = result if isinstance(result, (tuple, list)) and not hasattr(result, "_asdict") else None
    if raw is None:
        mapping = _as_dict(result)[0]
        raw = [mapping[k] for k in out.values if k in mapping]
    tensors = [t for t in raw if isinstance(t, torch.Tensor)]
    if len(tensors) < len(raw) or any(t.grad_fn is None for t in tensors):
        return ("not differentiable: a returned value carries no autograd history (computed in numpy or another "
                "framework, detached, or a Python float); it cannot be used in a loss as it is")
    total = sum(t.sum() for t in tensors)
    try:
        grads = torch.autograd.grad(total, inputs, allow_unused=True)
    except Exception as exc:  # the user's backward
        return f"not differentiable: backward raised {type(exc).__name__}: {exc}"
    if all(g is None for g in grads):
        return "not differentiable: the returned values do not depend on z, mu or logvar through autograd"
    bad = [n for n, g in zip(("z", "mu", "logvar"), grads) if g is not None and not bool(torch.isfinite(g).all())]
    if bad:
        return f"the gradient with respect to {', '.join(bad)} is not finite on the fixture {fixture.name}"
    return None
