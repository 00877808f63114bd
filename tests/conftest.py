"""Fixtures shared by the test suite: seeded posterior fields and a batch drawn from one.

Every field is built from a fixed seed by :func:`tests.helpers.make_field`, so each test sees the
same numbers on every run. Tests that need other sizes take the ``make_field`` / ``draw`` factories.
"""
from __future__ import annotations

import os

# The dsprites scenarios run on the tiny grid in the tests (seconds to train; the full recipes take half an hour):
# set before the package is imported, inherited by the CLI subprocesses. See vae_dsprites.scenario_recipes.
os.environ.setdefault("VAE_ESTIMATORS_DSPRITES", "tiny")

from dataclasses import dataclass

import pytest
import torch

from tests.helpers import F64, draw as _draw, make_field as _make_field


@dataclass(frozen=True)
class FieldBatch:
    """A field of N posteriors and a batch of B distinct rows of it, one z_i ~ q(z|n_i) each."""

    field_mu: torch.Tensor  # (N, D)
    field_logvar: torch.Tensor  # (N, D)
    index: torch.Tensor  # (B,) distinct rows, uniform without replacement
    z: torch.Tensor  # (B, D)

    @property
    def mu(self) -> torch.Tensor:  # the batch's own posteriors
        return self.field_mu[self.index]

    @property
    def logvar(self) -> torch.Tensor:
        return self.field_logvar[self.index]

    @property
    def field(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.field_mu, self.field_logvar

    @property
    def N(self) -> int:
        return int(self.field_mu.shape[0])

    @property
    def B(self) -> int:
        return int(self.index.shape[0])

    @property
    def D(self) -> int:
        return int(self.field_mu.shape[1])


def field_batch(N: int, B: int, D: int, seed: int, dtype=F64, **field_kwargs) -> FieldBatch:
    mu, lv = _make_field(N, D, seed, dtype, **field_kwargs)
    index = torch.randperm(N, generator=torch.Generator().manual_seed(seed + 1))[:B]
    return FieldBatch(mu, lv, index, _draw(mu[index], lv[index], seed + 2))


@pytest.fixture
def make_field():
    """The factory ``make_field(N, D, seed, dtype=float64, spread=1.5, logvar=(-1.5, 0.5)) -> (mu, logvar)``."""
    return _make_field


@pytest.fixture
def draw():
    """The factory ``draw(mu, logvar, seed) -> z``, one draw per row."""
    return _draw


@pytest.fixture
def make_batch():
    """The factory ``make_batch(N, B, D, seed, dtype=float64, **field_kwargs) -> FieldBatch``."""
    return field_batch


@pytest.fixture
def small_field():
    """A small random field: N = 40, D = 3, mu ~ 1.5 N(0, I), logvar ~ U(-1.5, 0.5), float64."""
    return _make_field(40, 3, seed=1)


@pytest.fixture
def small_batch():
    """B = 12 distinct rows of a random field of N = 40 in D = 3 (float64), with index and z."""
    return field_batch(40, 12, 3, seed=1)


@pytest.fixture
def prior_field():
    """N = 40 posteriors in D = 5, every one equal to the prior N(0, I)."""
    return torch.zeros(40, 5, dtype=F64), torch.zeros(40, 5, dtype=F64)


@pytest.fixture
def sharp_field():
    """Sharp and broad posteriors mixed, logvar ~ U(-10, 2) (sd 0.007 to 2.7), N = 2000, D = 6, float64."""
    return _make_field(2000, 6, seed=40, spread=1.0, logvar=(-10.0, 2.0))


@pytest.fixture
def broad_field():
    """Broad, overlapping posteriors: mu ~ 0.5 N(0, I), logvar ~ U(0, 1), N = 200, D = 3, float64."""
    return _make_field(200, 3, seed=41, spread=0.5, logvar=(0.0, 1.0))


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of ``python -m estimators`` in process."""
    from estimators.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
