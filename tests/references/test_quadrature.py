"""Adaptive Gauss-Legendre quadrature of KL(q || N(0, I)) (estimators/references/quadrature.py).

Independent references: scipy.integrate.quad, the closed-form KL of a single Gaussian, brute-force
range minima, and the resolution property checked interval by interval.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators.references.quadrature import RESOLUTION, ZONE, _range_min, kl_to_standard_normal, resolved_partition
from tests.helpers import F64, scipy_kl_1d


@pytest.mark.parametrize("mu,logvar", [
    ([0.0, 0.3, 2.0], [1.0, -10.0, -12.0]),  # narrow components inside a wide one: per-component GH fails
    ([-0.3, 0.2, 1.1, -1.4, 0.5, 0.9], [-8.0, -6.0, -3.0, 0.0, 1.0, -1.0]),
    ([0.5], [-0.7]),
])
def test_one_dimensional_kl_matches_scipy_quad_and_its_error_estimate(mu, logvar):
    mu, logvar = torch.tensor(mu, dtype=F64), torch.tensor(logvar, dtype=F64)
    value, error = kl_to_standard_normal(mu[:, None], logvar[:, None])
    expected = scipy_kl_1d(mu.numpy(), logvar.numpy())
    assert value == pytest.approx(expected, rel=1e-10)
    assert abs(value - expected) <= error + 1e-13 * abs(expected)


def test_weighted_mixture_equals_the_mixture_with_repeated_components():
    mu, logvar = torch.tensor([[0.2], [1.5]], dtype=F64), torch.tensor([[-2.0], [-0.5]], dtype=F64)
    weighted, _ = kl_to_standard_normal(mu, logvar, torch.log(torch.tensor([0.75, 0.25], dtype=F64)))
    repeated, _ = kl_to_standard_normal(mu[[0, 0, 0, 1]], logvar[[0, 0, 0, 1]])
    assert weighted == pytest.approx(repeated, rel=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_quadrature_of_a_single_gaussian_is_its_closed_form_kl(k):
    mu, logvar = torch.tensor([[0.7, -0.4][:k]], dtype=F64), torch.tensor([[-1.3, 0.6][:k]], dtype=F64)
    value, _ = kl_to_standard_normal(mu, logvar, nodes=16)
    assert value == pytest.approx(0.5 * float((mu ** 2 + logvar.exp() - 1 - logvar).sum()), rel=1e-10)


def test_resolved_partition_resolves_every_component():
    g = np.random.default_rng(0)
    mu, sd = g.normal(size=300), np.exp(g.uniform(-6, 0.5, size=300))
    breaks = resolved_partition(mu, sd)
    assert breaks[0] == pytest.approx((mu - 12 * sd).min()) and breaks[-1] == pytest.approx((mu + 12 * sd).max())
    assert np.all(np.diff(breaks) > 0)
    a, b = breaks[:-1], breaks[1:]
    for m in range(300):  # every interval meeting a component's zone is short on its scale
        meets = (b > mu[m] - ZONE * sd[m]) & (a < mu[m] + ZONE * sd[m])
        assert np.all(b[meets] - a[meets] <= RESOLUTION * sd[m] * (1 + 1e-9))


def test_range_min_matches_brute_force():
    g = np.random.default_rng(1)
    size = 37
    starts = g.integers(0, size, 60)
    stops = np.minimum(starts + g.integers(1, 20, 60), size)
    values = g.normal(size=60)
    expected = np.full(size, np.inf)
    for s, e, v in zip(starts, stops, values):
        expected[s:e] = np.minimum(expected[s:e], v)
    np.testing.assert_array_equal(_range_min(starts, stops, values, size), expected)


def test_max_terms_gives_up_before_any_work():
    mu, logvar = torch.randn(50, 2, dtype=F64), torch.full((50, 2), -4.0, dtype=F64)
    assert kl_to_standard_normal(mu, logvar, max_terms=10.0) is None
