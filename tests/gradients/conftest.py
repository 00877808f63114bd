"""Fixtures of the gradient-study tests: small seeded encoder problems, and the exact-gradient cache in tmp."""
from __future__ import annotations

import pytest

from estimators.gradients.encoders import linear_problem


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Exact gradients and trained encoders are cached under tmp, never in the user's cache."""
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def d2_problem():
    """A linear encoder on a D = 2 field small enough for quadrature references: N = 48, P = 3 inputs."""
    return linear_problem(48, 2, P=3, seed=0)


@pytest.fixture
def prior_problem():
    """Every posterior is the prior N(0, I): N = 64, D = 2, every parameter 0."""
    return linear_problem(64, 2, P=3, seed=0, prior=True)
