"""Argument validation shared by the public API.

Every public function checks its inputs here, up front, so a user sees one clear
message naming the argument and what was expected, never a traceback from deep
inside torch.
"""
from __future__ import annotations

import torch
from torch import Tensor


def as_float_tensor(name: str, value, *, ndim: int | None = None) -> Tensor:
    """Return ``value`` as a floating-point tensor, or raise a ``ValueError`` naming ``name``."""
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
    """Raise a ``ValueError`` if ``value`` holds NaN or infinite entries."""
    bad = ~torch.isfinite(value.detach())
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        kind = "NaN" if bool(torch.isnan(value.detach()).any()) else "infinite"
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite ({kind}) value(s), first at index {where}")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_points(z: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Validate query points ``z`` (Q, D) against a field ``mu``, ``logvar`` (N, D).

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
