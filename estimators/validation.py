"""Argument validation at the public boundary, and the switch that turns it off.

Every public function checks its inputs here, once, up front, so a user sees one clear message
naming the argument and what was expected, never a traceback from deep inside torch. Inner layers
(kernels, weight matrices, estimator implementations) trust their callers and check nothing.

Checking values (finiteness, index ranges) reads tensors back to the host: on a GPU each check is
a synchronisation. A training loop that has validated its shapes once can switch value checks off,
as with ``torch.distributions.Distribution.set_default_validate_args``::

    estimators.set_validate_args(False)       # globally
    with estimators.validate_args(False):     # or for a block
        loss = estimators.decompose(z, mu, logvar, N, "mss")["tc"]

Shapes, dtypes and names are always checked: they cost nothing (no host sync).
"""
from __future__ import annotations

import contextlib
import operator

import torch
from torch import Tensor

__all__ = ["set_validate_args", "validate_args", "validating", "as_float_tensor", "check_finite",
           "check_same_shape", "as_int", "as_posteriors", "check_points"]

_VALIDATE = True


def set_validate_args(value: bool) -> None:
    """Turn the value checks (NaN/inf, index ranges) of every public function on or off."""
    global _VALIDATE
    _VALIDATE = bool(value)


def validating() -> bool:
    """Whether value checks are on (the default)."""
    return _VALIDATE


@contextlib.contextmanager
def validate_args(value: bool):
    """Context manager: value checks on or off inside the block, restored after it."""
    global _VALIDATE
    old, _VALIDATE = _VALIDATE, bool(value)
    try:
        yield
    finally:
        _VALIDATE = old


def as_float_tensor(name: str, value, *, ndim: int | None = None) -> Tensor:
    """Return ``value`` as a floating-point tensor, or raise naming ``name`` and what was expected."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor or array of floats, got {type(value).__name__}") from exc
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(value.shape)}")
    return value


def check_finite(name: str, value: Tensor) -> None:
    """Raise a ``ValueError`` if ``value`` holds NaN or infinite entries (skipped when validation is off)."""
    if not _VALIDATE:
        return
    bad = ~torch.isfinite(value.detach())
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        kind = "NaN" if bool(torch.isnan(value.detach()).any()) else "infinite"
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite ({kind}) value(s), first at index {where}")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def as_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as a Python int (ints, numpy integers, integer 0-d tensors), at least ``minimum``.

    Raises ``TypeError`` for bools, floats and other types, ``ValueError`` below ``minimum``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_posteriors(mu, logvar) -> tuple[Tensor, Tensor]:
    """``mu``, ``logvar`` as two float tensors of one (N, D) shape with finite values (N = 0 passes: callers say
    whether a field may be empty)."""
    mu = as_float_tensor("mu", mu, ndim=2)
    logvar = as_float_tensor("logvar", logvar, ndim=2)
    check_same_shape("mu", mu, "logvar", logvar)
    check_finite("mu", mu)
    check_finite("logvar", logvar)
    return mu, logvar


def check_points(z, mu, logvar) -> tuple[Tensor, Tensor, Tensor]:
    """Validate query points ``z`` (Q, D) against components ``mu``, ``logvar`` (N, D).

    Returns the three tensors promoted to one common floating dtype.
    """
    z = as_float_tensor("z", z, ndim=2)
    mu = as_float_tensor("mu", mu, ndim=2)
    logvar = as_float_tensor("logvar", logvar, ndim=2)
    check_same_shape("mu", mu, "logvar", logvar)
    if z.shape[1] != mu.shape[1]:
        raise ValueError(
            f"z has {z.shape[1]} latent dimensions but mu and logvar have {mu.shape[1]}: "
            f"z must be (Q, D) and mu, logvar (N, D) with the same D"
        )
    if mu.shape[0] == 0:
        raise ValueError("mu and logvar must hold at least one posterior (N >= 1), got N = 0")
    for name, t in (("z", z), ("mu", mu), ("logvar", logvar)):
        check_finite(name, t)
    dtype = torch.promote_types(torch.promote_types(z.dtype, mu.dtype), logvar.dtype)
    return z.to(dtype), mu.to(dtype), logvar.to(dtype)
