"""The exact gradient: finite differences of the quadrature references agree with it within its se (D = 2); with
every posterior equal to the prior (a minimum of mi, tc and kl_agg) it is 0 within its se; clear errors."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from estimators.decompose import QUANTITIES
from estimators.gradients.encoders import linear_problem
from estimators.gradients.exact import exact_gradient, finite_difference, full_data_terms

FAILURE_RATE = 1e-4  # of each test as a whole: quantiles below are Bonferroni-corrected over its comparisons


def test_exact_gradient_agrees_with_finite_differences_of_the_quadrature_references(d2_problem):
    """g . v against (F(theta + h v) - F(theta - h v)) / 2h for 2 random directions and every quantity, within
    t * se(g . v) (t for a 1e-4 failure rate of the whole test, G - 1 degrees of freedom) plus the FD error bounds."""
    groups = 64
    eg = exact_gradient(d2_problem, groups=groups, samples=32, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(5)
    directions = [v / v.norm() for v in torch.randn(2, d2_problem.num_params, generator=g, dtype=torch.float64)]
    comparisons = len(directions) * len(QUANTITIES)
    t = stats.t.ppf(1 - FAILURE_RATE / (2 * comparisons), groups - 1)
    for v in directions:
        fds = finite_difference(d2_problem, v, h=1e-3)
        for q in QUANTITIES:
            d, se = eg.directional(q, v)
            fd = fds[q]
            assert fd["truncation"] < 0.1 * se  # the FD is much sharper than the Monte Carlo: a real check
            assert abs(d - fd["fd"]) <= t * se + fd["truncation"] + fd["rounding"], (q, d, se, fd)


def test_finite_difference_leaves_theta_unchanged(d2_problem):
    theta = d2_problem.get_flat()
    finite_difference(d2_problem, torch.ones(d2_problem.num_params, dtype=torch.float64) / 4)
    assert torch.equal(d2_problem.get_flat(), theta)


@pytest.mark.parametrize("quantity", ["mi", "tc", "kl_agg"])
def test_exact_gradient_is_zero_when_every_posterior_is_the_prior(prior_problem, quantity):
    """At q(z|n) = p(z) for all n, mi = tc = kl_agg = 0 is a minimum: each coordinate of the Monte Carlo gradient is
    0 within t * se (Bonferroni over the coordinates); coordinates without noise are exactly 0."""
    groups = 32
    eg = exact_gradient(prior_problem, groups=groups, samples=4, generator=torch.Generator().manual_seed(7),
                        quantities=(quantity,))
    grad, se = eg.grad(quantity), eg.se(quantity)
    noisy = se > 1e-12
    assert torch.all(grad[~noisy].abs() <= 1e-10)
    t = stats.t.ppf(1 - FAILURE_RATE / (2 * prior_problem.num_params), groups - 1)
    if bool(noisy.any()):  # tc: every draw's gradient is exactly 0 (q(z) = prod_d q(z_d) for identical components)
        assert float((grad[noisy] / se[noisy]).abs().max()) <= t
    assert abs(float(eg.values[quantity].mean())) <= 1e-9 + t * float(eg.values[quantity].std()) / math.sqrt(groups)


def test_full_data_terms_satisfy_both_identities(d2_problem):
    mu, logvar = d2_problem.posteriors()
    eps = torch.randn(2, *mu.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = full_data_terms(mu, logvar, eps)
    assert abs(float((t["kl_agg"] - t["tc"] - t["dimwise_kl"]).detach())) < 1e-12
    with pytest.raises(ValueError, match="eps"):
        full_data_terms(mu, logvar, eps[0])


def test_bad_arguments_name_the_argument(d2_problem):
    with pytest.raises(ValueError, match="groups"):
        exact_gradient(d2_problem, groups=1)
    with pytest.raises(ValueError, match="samples"):
        exact_gradient(d2_problem, samples=0)
    with pytest.raises(ValueError, match="quantities"):
        exact_gradient(d2_problem, quantities=("entropy",))
    v = torch.ones(d2_problem.num_params, dtype=torch.float64)
    with pytest.raises(ValueError, match="h must"):
        finite_difference(d2_problem, v, h=0.0)
    with pytest.raises(ValueError, match="v must"):
        finite_difference(d2_problem, v[:3])
    d3 = linear_problem(16, 3, P=2)
    with pytest.raises(ValueError, match="quadrature"):
        finite_difference(d3, torch.ones(d3.num_params, dtype=torch.float64))
