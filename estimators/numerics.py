r"""The package's numerical constants and the diagonal-Gaussian formulas every stage uses.

One home for each (as ``torch.distributions.utils`` is for torch): the log-density of a diagonal
Gaussian, its KL to the standard-normal prior, the prior's log-density, and the exp clamp that
keeps every logsumexp off the slow denormal path.

Why the clamp: exp of a very negative argument takes a 50-170x slower (denormal) path on CPUs.
Every logsumexp here subtracts the exact maximum first, so the clamped terms are below
exp(-80) ~ 1.8e-35 (float32) or exp(-700) ~ 1e-304 (float64) times the largest one: far below
the precision of the sum. See ``docs/maths.md``, "Numerics".
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LOG_2PI", "ACCUMULATE", "exp_clamp", "logsumexp", "log_normal", "log_standard_normal", "kl_to_prior",
           "neg_entropy_normal"]

LOG_2PI = math.log(2.0 * math.pi)
ACCUMULATE = torch.float64  # dtype of the matrix-product form of the joint kernel (cancellation)


def exp_clamp(dtype: torch.dtype) -> float:
    r"""Lower clamp of (x - max) before exp: -80 in float32 (and narrower), -700 in float64."""
    return -80.0 if torch.finfo(dtype).bits <= 32 else -700.0


def logsumexp(x: Tensor, dim: int) -> Tensor:
    r"""logsumexp over ``dim`` with the exact maximum subtracted and the exp clamped (:func:`exp_clamp`), so
    no term takes the denormal path; a row of -inf stays -inf. Differentiable (the maximum is a constant)."""
    m = x.amax(dim, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return (m + torch.exp((x - m).clamp_min(exp_clamp(x.dtype))).sum(dim, keepdim=True).log()).squeeze(dim)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Elementwise log Normal(z; mu, exp(logvar)) in the direct (z - mu)^2 form (broadcasting).

    Sum over the last axis for the joint log-density of a diagonal Gaussian.
    """
    diff = z - mu
    return -0.5 * (LOG_2PI + logvar + diff * diff * torch.exp(-logvar))


def log_standard_normal(z: Tensor) -> Tensor:
    r"""log Normal(z; 0, I) of the rows of z (..., D): the prior's log-density, shape (...)."""
    return (-0.5 * (LOG_2PI + z * z)).sum(-1)


def kl_to_prior(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""KL(Normal(mu, diag exp(logvar)) || Normal(0, I)) of each row, shape (...): closed form."""
    return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(-1)


def neg_entropy_normal(logvar: Tensor) -> Tensor:
    r"""E[log Normal(z; mu, diag exp(logvar))] = -H of each row, shape (...): closed form, free of mu."""
    return (-0.5 * (LOG_2PI + 1.0 + logvar)).sum(-1)
