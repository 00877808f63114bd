"""The synthetic scenarios (estimators/scenarios/synthetic.py): the separation knob, structure, seeds.

Statistical checks use fixed seeds and compare differences against 4 standard errors (failure rate
about 1e-4 per comparison); mi and tc are computed by a numpy Monte Carlo over the full mixture
(``tests.helpers.numpy_field_terms``, independent of the package's kernels) on tiny N.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estimators.scenarios import SCENARIOS, grid_levels, heteroscedastic_inactive, make_scenario
from estimators.scenarios.synthetic import scenario_generator
from tests.helpers import Z, numpy_field_terms, numpy_log_normal, stratified_mean

SYNTHETIC = [name for name, s in SCENARIOS.items() if not s.real]


def brute_mi(field, S=40, seed=123):
    """mi = E[log q(z|n) - log q(z)], z drawn S times from every component; returns (mean, se)."""
    own, log_q, _, _ = numpy_field_terms(field.mu.numpy(), field.logvar.numpy(), S, seed)
    return stratified_mean(own - log_q)


def brute_tc(field, S=40, seed=321):
    """tc = E[log q(z) - sum_d log q(z_d)]; returns (mean, se)."""
    _, log_q, log_marg, _ = numpy_field_terms(field.mu.numpy(), field.logvar.numpy(), S, seed)
    return stratified_mean(log_q - log_marg)


def test_scenario_generator_is_keyed_by_name_and_seed():
    draw = lambda name, seed: torch.randn(5, generator=scenario_generator(name, seed))  # noqa: E731
    assert torch.equal(draw("grid", 0), draw("grid", 0))
    assert not torch.equal(draw("grid", 0), draw("grid", 1))
    assert not torch.equal(draw("grid", 0), draw("gaussian", 0))


@pytest.mark.parametrize("name", SYNTHETIC)
def test_not_the_stream_of_manual_seed(name):
    # a user sampling with manual_seed(seed) must not redraw the normals behind the centres
    field = make_scenario(name, N=40, D=3, separation=1.0, seed=0)
    plain = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    corr = torch.corrcoef(torch.stack([field.mu.flatten(), plain.flatten()]))[0, 1]
    assert abs(float(corr)) < Z / math.sqrt(120)


@pytest.mark.parametrize("name", [n for n in SYNTHETIC if SCENARIOS[n].prior_at_zero])
def test_separation_zero_is_the_prior(name):
    field = make_scenario(name, N=30, D=4, separation=0.0, seed=2)
    assert torch.equal(field.mu, torch.zeros(30, 4, dtype=torch.float64))
    assert torch.equal(field.logvar, torch.zeros(30, 4, dtype=torch.float64))


def test_collapsed_is_prior_at_zero_for_defaults():
    field = make_scenario("collapsed", separation=0.0)
    assert bool((field.mu == 0).all()) and bool((field.logvar == 0).all())


@pytest.mark.parametrize("name", SYNTHETIC)
def test_separation_monotone_proxy(name):
    # exact, cheap proxy: spread of the means grows and the mean posterior variance shrinks with s
    seps = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0]
    fields = [make_scenario(name, N=200, D=4, separation=s, seed=1) for s in seps]
    spread = [float(f.mu.var(0).sum()) for f in fields]
    var = [float(f.logvar.exp().mean()) for f in fields]
    assert all(b > a for a, b in zip(spread, spread[1:])), spread
    assert all(b < a for a, b in zip(var, var[1:])), var


@pytest.mark.parametrize("name", SYNTHETIC)
def test_separation_monotone_mi(name):
    # brute-force mi on a tiny field: 0 at s = 0, rising significantly at each step, near log N at 1
    # heteroscedastic's variances are fixed (logvar -10..1 at s = 1): it separates with 6 active dims
    N, D = 24, (8 if name == "heteroscedastic" else 3)
    seps = [0.0, 0.25, 0.5, 0.75, 1.0]
    mis = [brute_mi(make_scenario(name, N=N, D=D, separation=s, seed=4)) for s in seps]
    assert abs(mis[0][0]) < 1e-12
    for (m0, se0), (m1, se1) in zip(mis, mis[1:]):
        assert m1 - m0 > Z * math.hypot(se0, se1), mis
    m, se = mis[-1]
    assert m <= math.log(N) + Z * se + 1e-12  # mi <= log N (up to rounding)
    assert m > math.log(N) - 0.05, mis  # well separated at s = 1


def test_mi_spans_range_at_default_size():
    # at the default size, mi at s = 0.5 sits well inside (0, log N): the knob is not saturated
    field = make_scenario("collapsed", N=400, D=6, separation=0.5, seed=0)
    m, se = brute_mi(field, S=4)
    assert 0.25 * math.log(400) < m < 0.75 * math.log(400)


def test_heteroscedastic_structure():
    field = make_scenario("heteroscedastic", separation=1.0)
    inactive = field.D - heteroscedastic_inactive(field.D)  # D = 8 by default: the last 2 dimensions
    assert heteroscedastic_inactive(8) == 2
    assert bool((field.mu[:, inactive:] == 0).all()) and bool((field.logvar[:, inactive:] == 0).all())
    active = field.logvar[:, :inactive]
    assert float(active.min()) < -9.0 and float(active.max()) > 0.5  # about -10..1
    assert bool((field.logvar[:, :inactive].std(0) > 0.5).all())  # per-point variances


def test_clustered_plateau():
    # at intermediate separation the clusters are resolved before the points within them
    N, K = 64, 8
    field = make_scenario("clustered", N=N, D=3, separation=0.5, seed=0)
    m, se = brute_mi(field)
    assert m < math.log(N) - 0.5


@pytest.mark.parametrize("N,D", [(1, 1), (1, 3), (12, 1), (12, 2), (60, 3), (2000, 6), (97, 3), (64, 6)])
def test_grid_levels(N, D):
    levels = grid_levels(N, D)
    assert len(levels) == D and math.prod(levels) == N
    field = make_scenario("grid", N=N, D=D, separation=0.7, seed=1)
    assert [len(torch.unique(field.mu[:, d])) for d in range(D)] == sorted(levels, reverse=True)


def test_grid_factorises_exactly():
    # the claim behind is_product_grid: log q(z) == sum_d log q(z_d) at arbitrary points
    field = make_scenario("grid", N=24, D=3, separation=0.6, seed=0)
    from scipy.special import logsumexp

    z = np.random.default_rng(9).standard_normal((50, 3))
    Ld = numpy_log_normal(z, field.mu.numpy(), field.logvar.numpy())
    joint = logsumexp(Ld.sum(-1), 1) - math.log(24)
    marg = (logsumexp(Ld, 1) - math.log(24)).sum(-1)
    np.testing.assert_allclose(joint, marg, rtol=0, atol=1e-10)
    tc, se = brute_tc(field)
    assert abs(tc) < 1e-10


def test_gaussian_has_positive_tc():
    field = make_scenario("gaussian", N=100, D=3, separation=0.5, seed=0)
    tc, se = brute_tc(field)
    assert tc > Z * se and tc > 0.05
