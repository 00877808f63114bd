"""The Monte Carlo reference of kl_agg (estimators/references/monte_carlo.py).

Independent references: the quadrature (D <= 2), a plain numpy Monte Carlo written from scratch,
and the coverage of its standard error over seeds (binomial and chi-square thresholds at ~1e-4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import pytest
from scipy import stats
from scipy.special import logsumexp

from estimators import exact_references
from estimators.references.monte_carlo import kl_agg_mc
from tests.helpers import make_field


def _field(N, D, seed, spread=1.0, logvar=(-2.0, 0.0)):
    return make_field(N, D, seed, spread=spread, logvar=logvar)


@pytest.mark.parametrize("D", [1, 2])
def test_quadrature_agrees_with_monte_carlo_in_one_and_two_dimensions(D):
    mu, logvar = _field(30, D, seed=10 + D)
    ref = exact_references(mu, logvar)
    assert ref["kl_agg"]["method"] == "quadrature"
    value, se = kl_agg_mc(mu, logvar, 256, torch.Generator().manual_seed(D))
    assert abs(value - ref["kl_agg"]["value"]) < 4 * se


def test_monte_carlo_matches_an_independent_numpy_monte_carlo():
    mu, logvar = _field(3, 3, seed=21, logvar=(-2.4, 0.4))
    mu_np, var_np = mu.numpy(), np.exp(logvar.numpy())
    rng = np.random.default_rng(0)
    K, means, variances = 20000, [], []
    for n in range(3):  # plain stratified Monte Carlo, written from scratch
        z = mu_np[n] + np.sqrt(var_np[n]) * rng.standard_normal((K, 3))
        log_comp = -0.5 * (np.log(2 * np.pi * var_np)[None] + (z[:, None, :] - mu_np[None]) ** 2 / var_np[None]).sum(2)
        t = logsumexp(log_comp, axis=1) - np.log(3) - stats.norm.logpdf(z).sum(1)
        means.append(t.mean())
        variances.append(t.var(ddof=1) / K)
    brute, brute_se = np.mean(means), math.sqrt(sum(variances)) / 3
    ref = exact_references(mu, logvar, samples=4000, seed=1)
    assert ref["kl_agg"]["method"] == "mc"
    assert abs(ref["kl_agg"]["value"] - brute) < 4 * math.hypot(ref["kl_agg"]["se"], brute_se)


def _coverage_checks(z_scores):
    z = np.asarray(z_scores)
    covered = int((np.abs(z) < 1.96).sum())
    # 20 draws of a 95% interval: P(covered <= 14) = 3.4e-5; sum of squares ~ chi2(20): [4.04, 54.4] at 1e-4
    assert covered >= 15, z
    assert 4.04 < float((z * z).sum()) < 54.4, z


def test_monte_carlo_standard_error_is_honest_against_quadrature():
    mu, logvar = _field(40, 2, seed=30)
    truth = exact_references(mu, logvar)["kl_agg"]
    assert truth["method"] == "quadrature"
    z = []
    for seed in range(20):
        value, se = kl_agg_mc(mu, logvar, 8, torch.Generator().manual_seed(seed))
        z.append((value - truth["value"]) / se)
    _coverage_checks(z)


def test_monte_carlo_standard_error_is_honest_in_four_dimensions():
    mu, logvar = _field(40, 4, seed=31, spread=0.8)
    truth, truth_se = kl_agg_mc(mu, logvar, 10000, torch.Generator().manual_seed(999))
    z = []
    for seed in range(20):
        value, se = kl_agg_mc(mu, logvar, 8, torch.Generator().manual_seed(seed))
        z.append((value - truth) / math.hypot(se, truth_se))
    assert truth_se < 0.05 * se
    _coverage_checks(z)
