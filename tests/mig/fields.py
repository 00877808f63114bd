"""Synthetic fields with factors for the MIG tests (no dependence on any data set module).

A factor grid (every combination of values once, as dSprites' is), posteriors mu = f(factors) + noise with
heteroscedastic log-variances, all seeded.
"""
from __future__ import annotations

import itertools

import torch

F64 = torch.float64


def factor_grid(sizes) -> torch.Tensor:
    """Every combination of factor values once, (prod sizes, K) int64, the last factor fastest."""
    return torch.tensor(list(itertools.product(*[range(s) for s in sizes])), dtype=torch.int64)


def grid_field(sizes=(2, 3, 4), D: int = 3, seed: int = 0, noise: float = 0.4, repeats: int = 1):
    """(mu, logvar, factors): latent j < K follows factor j (plus a little of factor j + 1), the rest is noise."""
    f = factor_grid(sizes).repeat(repeats, 1)
    N, K = f.shape
    g = torch.Generator().manual_seed(seed)
    mu = noise * torch.randn(N, D, generator=g, dtype=F64)
    for j in range(min(D, K)):
        mu[:, j] += f[:, j].to(F64) * 0.8 + (0.25 * f[:, j + 1].to(F64) if j + 1 < K else 0.0)
    lv = -1.5 + 1.2 * torch.rand(N, D, generator=g, dtype=F64)
    return mu, lv, f

