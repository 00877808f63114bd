r"""The audit's fixture batches: fixed, seeded, chosen so that every known bug shows.

A user's function is run on each fixture ``(z, mu, logvar, dataset_size)``; every registered
estimator and every known mutation is evaluated on the same inputs. The set crosses

* four kinds of posteriors: equal to the prior (mu = 0, logvar = 0), sharp (logvar in [-12, -8],
  means spread over a few units: each z_i sees almost only its own component), broad (logvar in
  [0, 1.5], means close together: every component counts) and heteroscedastic (logvar in [-6, 2]
  per point and dimension);
* the batch sizes B in {2, 3, 16, 64, 256} (B = 2 and 3 separate weights that agree for large B,
  e.g. ``hfvae`` from ``stratified``) and D in {1, 5, 10} (D = 1 has no total correlation; D log W
  shows against log W only for D > 1);
* for every batch, three data-set sizes: N = B (where stratified sampling is exact), N = 4 B + 1 and
  N = 737,280 (dSprites); a function whose output does not move with N ignores ``dataset_size``;
* float32 and float64 (the same values: the fixtures are rounded to float32 first, so a float64
  computation of the float32 inputs is the exact answer for both).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Fixture", "make_fixtures", "KINDS", "BATCH_SIZES", "DIMENSIONS", "DSPRITES_N", "dataset_sizes"]

KINDS = ("prior", "sharp", "broad", "heteroscedastic")
BATCH_SIZES = (2, 3, 16, 64, 256)
DIMENSIONS = (1, 5, 10)
DSPRITES_N = 737_280
SEED = 20181203  # fixed: the fixtures are part of the audit's definition


@dataclass(frozen=True)
class Fixture:
    r"""One audit input. ``group`` names the batch (the same z, mu, logvar) across its data-set sizes."""

    kind: str
    B: int
    D: int
    N: int
    dtype: torch.dtype
    group: int
    z: Tensor
    mu: Tensor
    logvar: Tensor

    @property
    def name(self) -> str:
        return f"{self.kind} B={self.B} D={self.D} N={self.N} {str(self.dtype).replace('torch.', '')}"


def dataset_sizes(B: int) -> tuple[int, ...]:
    r"""The data-set sizes every batch of size B is audited at: B, 4 B + 1 and 737,280."""
    return (B, 4 * B + 1, DSPRITES_N)


def _posteriors(kind: str, B: int, D: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    f64 = torch.float64
    if kind == "prior":
        return torch.zeros(B, D, dtype=f64), torch.zeros(B, D, dtype=f64)
    if kind == "sharp":
        return 1.5 * torch.randn(B, D, generator=g, dtype=f64), -12.0 + 4.0 * torch.rand(B, D, generator=g, dtype=f64)
    if kind == "broad":
        return 0.3 * torch.randn(B, D, generator=g, dtype=f64), 1.5 * torch.rand(B, D, generator=g, dtype=f64)
    if kind == "heteroscedastic":
        return torch.randn(B, D, generator=g, dtype=f64), -6.0 + 8.0 * torch.rand(B, D, generator=g, dtype=f64)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def make_fixtures() -> list[Fixture]:
    r"""The fixed fixture set (16 batches x 3 data-set sizes x 2 dtypes = 96 fixtures).

    Each (B, D) pair gets one kind, cycling so that every kind meets several B and D; the prior kind
    is also given its own B = 64, D = 5 batch so that it meets a large batch.
    """
    g = torch.Generator().manual_seed(SEED)
    pairs = [(B, D) for B in BATCH_SIZES for D in DIMENSIONS]
    specs = [(KINDS[i % len(KINDS)], B, D) for i, (B, D) in enumerate(pairs)]
    specs.append(("prior", 64, 5))
    out = []
    for group, (kind, B, D) in enumerate(specs):
        mu, logvar = _posteriors(kind, B, D, g)
        z = mu + torch.randn(B, D, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
        # rounded to float32 once: both dtypes carry the same numbers
        z, mu, logvar = (t.to(torch.float32).to(torch.float64) for t in (z, mu, logvar))
        for N in dataset_sizes(B):
            for dtype in (torch.float64, torch.float32):
                out.append(Fixture(kind, B, D, N, dtype, group, z.to(dtype), mu.to(dtype), logvar.to(dtype)))
    return out
