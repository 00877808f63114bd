"""The sub-sampled Monte Carlo reference, target_se and the executor hook (estimators/references/monte_carlo.py).

Independent references: the full-N stratified run (its own draws) and, in two dimensions, the adaptive 2-D
quadrature of E[log q(z)] (exact to ~1e-10); the coverage of the se over 40 seeds (binomial and chi-square
thresholds at ~1e-4); the regression estimator against an exactly linear population; the m = N path
against the numbers the previous code gave.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import estimators.references.monte_carlo as MC
from estimators import exact_references, make_scenario
from estimators.references.quadrature import neg_entropy
from tests.helpers import make_field

Z = 3.9  # two-sided ~1e-4
F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def vae_like(N, D=6, active=4, seed=0):
    """Sharp posteriors in the active dimensions (logvar in [-6, -2]), near-prior inactive ones."""
    g = _gen(seed)
    mu = torch.randn(N, D, generator=g, dtype=F64)
    lv = -6.0 + 4.0 * torch.rand(N, D, generator=g, dtype=F64)
    mu[:, active:] = 0.05 * torch.randn(N, D - active, generator=g, dtype=F64)
    lv[:, active:] = -0.05 * torch.rand(N, D - active, generator=g, dtype=F64)
    return mu, lv


def _scenario(name, N, D):
    f = make_scenario(name, N=N, D=D, separation=0.5)
    return f.mu, f.logvar


FIELDS = {
    "gaussian": lambda: _scenario("gaussian", 1500, 4),
    "clustered": lambda: _scenario("clustered", 1500, 4),
    "heteroscedastic": lambda: _scenario("heteroscedastic", 1500, 5),
    "vae-like": lambda: vae_like(3000),
}


# ------------------------------------------------------------------------------- m = N: the previous numbers


def test_all_strata_reproduce_the_previous_code_bit_for_bit():
    # (value, se) printed by the previous neg_entropy_mc (before sub-sampling existed) on these fields and seeds
    previous = {(40, 3, 8): (-5.783800864357295, 0.028736202357017175),
                (300, 5, 16): (-9.525584718708389, 0.00783049946074999),
                (9000, 4, 2): (-7.848534504364684, 0.0008943953006417949)}  # the pruned kernel's path
    for (N, D, S), expected in previous.items():
        mu, lv = make_field(N, D, 1)
        default = MC.neg_entropy_mc(mu, lv, S, _gen(3))
        every = MC.neg_entropy_mc(mu, lv, S, _gen(3), strata=N)
        assert tuple(default) == tuple(every)
        assert default.value == pytest.approx(expected[0], rel=1e-12, abs=0)
        assert default.se == pytest.approx(expected[1], rel=1e-9, abs=0)
        assert (default.strata, default.samples, default.population, default.pilot) == (N, S, N, None)


# ------------------------------------------------------------------------------- sub-sample against full


@pytest.mark.parametrize("name", list(FIELDS))
def test_subsample_agrees_with_the_full_stratified_run_within_their_se(name):
    mu, lv = FIELDS[name]()
    full = MC.neg_entropy_mc(mu, lv, 8, _gen(1))
    sub = MC.neg_entropy_mc(mu, lv, 4, _gen(2), strata=300)
    assert sub.strata == 300 and sub.samples == 4
    assert abs(sub.value - full.value) < Z * math.hypot(sub.se, full.se), (sub, full)
    assert sub.se > full.se  # a sub-sample knows less than every component


def _coverage(z_scores):
    z = np.asarray(z_scores)
    n = len(z)
    covered = int((np.abs(z) < 1.96).sum())
    # binomial: P(covered <= k) < 1e-4 fails; chi-square of sum z^2 with n degrees of freedom at 1e-4 two-sided
    k = int(stats.binom.ppf(1e-4, n, 0.95))
    assert covered > k, z
    lo, hi = stats.chi2.ppf([5e-5, 1 - 5e-5], n)
    assert lo < float((z * z).sum()) < hi, z


def test_subsample_se_is_honest_against_the_two_dimensional_quadrature():
    mu, lv = make_field(1200, 2, seed=40, spread=1.0, logvar=(-4.0, -1.0))
    truth, err = neg_entropy(mu, lv, nodes=16)
    assert err < 1e-6
    z = []
    for seed in range(40):
        est = MC.neg_entropy_mc(mu, lv, 2, _gen(seed), strata=MC.MIN_STRATA)
        z.append((est.value - truth) / est.se)
    _coverage(z)


@pytest.mark.parametrize("name", ["heteroscedastic", "vae-like"])
def test_subsample_se_is_honest_in_higher_dimensions(name):
    mu, lv = FIELDS[name]()
    truth = MC.neg_entropy_mc(mu, lv, 64, _gen(999))
    z = []
    for seed in range(40):
        est = MC.neg_entropy_mc(mu, lv, 2, _gen(seed), strata=MC.MIN_STRATA)
        z.append((est.value - truth.value) / math.hypot(est.se, truth.se))
    assert truth.se < 0.1 * est.se
    _coverage(z)


def test_regression_estimator_is_exact_on_a_linear_population():
    # y = a + b . x exactly, no draw noise: the regression estimator returns the population mean, with se 0
    g = np.random.default_rng(0)
    x_all = g.normal(size=(500, 2))
    y_all = 1.5 + x_all @ np.array([0.3, -2.0])
    idx = g.choice(500, size=40, replace=False)
    value, se, var = MC._regression(y_all[idx], x_all[idx], x_all.mean(0), 0.0, 500)
    assert value == pytest.approx(y_all.mean(), abs=1e-12)
    assert se < 1e-12 and var["between"] < 1e-20


def test_regression_estimator_matches_the_textbook_variance_without_covariates():
    # constant covariates: the estimator is the sample mean, its variance (1 - f) s^2 / m (SRSWOR) + f noise / m
    g = np.random.default_rng(1)
    y = g.normal(size=30)
    value, se, _ = MC._regression(y, np.ones((30, 2)), np.ones(2), 0.25, 120)
    assert value == pytest.approx(y.mean(), rel=1e-14)
    assert se ** 2 == pytest.approx((1 - 30 / 120) * y.var(ddof=1) / 30 + (30 / 120) * 0.25 / 30, rel=1e-12)


# ------------------------------------------------------------------------------- target_se and its budget


def test_target_se_is_met_with_a_subsample_and_reported():
    mu, lv = vae_like(20000, seed=3)
    est = MC.neg_entropy_mc(mu, lv, 8, _gen(0), target_se=0.03)
    assert est.se <= 0.03
    assert MC.MIN_STRATA <= est.strata < 20000 and est.samples == 2
    assert est.pilot["strata"] == MC.PILOT_STRATA and est.pilot["samples"] == MC.PILOT_SAMPLES
    assert est.target_se == 0.03 and est.max_terms == MC.DEFAULT_MAX_TERMS and est.runs >= 1


def test_target_se_through_exact_references_reports_what_was_used():
    mu, lv = FIELDS["gaussian"]()
    ref = exact_references(mu, lv, target_se=0.004)
    mc = ref["monte_carlo"]
    assert ref["kl_agg"]["se"] <= 0.004 and ref["kl_agg"]["method"] == "mc"
    assert set(mc) == {"strata", "samples", "draws", "population", "target_se", "max_terms", "pilot", "runs"}
    assert mc["draws"] == mc["strata"] * mc["samples"] and ref["samples"] == mc["samples"]
    assert mc["population"] == 1500 and mc["target_se"] == 0.004
    # the default path reports its plain run
    plain = exact_references(mu, lv, samples=4)["monte_carlo"]
    assert (plain["strata"], plain["samples"], plain["pilot"], plain["target_se"]) == (1500, 4, None, None)


def test_a_target_beyond_the_budget_is_a_clear_error_before_the_final_run(monkeypatch):
    mu, lv = FIELDS["gaussian"]()
    runs = []
    real = MC._run
    monkeypatch.setattr(MC, "_run", lambda *a, **k: runs.append(a[2:4]) or real(*a, **k))
    with pytest.raises(ValueError) as info:
        exact_references(mu, lv, target_se=1e-5, max_terms=1e9)
    message = str(info.value)
    assert "target_se = 1e-05" in message and "max_terms = 1e+09" in message and "reaches se ~" in message
    assert runs == [(MC.PILOT_STRATA, MC.PILOT_SAMPLES)]  # only the pilot ran
    reach = float(message.split("reaches se ~ ")[1].split()[0])
    assert 1e-5 < reach < 1e-2


def test_no_monte_carlo_no_target_to_meet():
    mu, lv = make_field(30, 2, seed=5)
    ref = exact_references(mu, lv, target_se=1e-9)  # D = 2: the quadrature, exact
    assert ref["kl_agg"]["method"] == "quadrature" and ref["monte_carlo"] is None


@pytest.mark.parametrize("kwargs,match", [
    ({"strata": 3}, "strata"), ({"strata": 41}, "strata"), ({"strata": 2.0}, "strata"),
    ({"target_se": 0.0}, "target_se"), ({"target_se": -1.0}, "target_se"), ({"target_se": math.nan}, "target_se"),
    ({"target_se": True}, "target_se"), ({"target_se": "0.1"}, "target_se"),
    ({"target_se": 0.1, "max_terms": 0}, "max_terms"), ({"max_terms": math.inf}, "max_terms"),
    ({"executor": object()}, "executor"),
])
def test_bad_monte_carlo_settings_raise_naming_the_argument(kwargs, match):
    mu, lv = make_field(40, 3, seed=6)
    with pytest.raises((ValueError, TypeError), match=match):
        exact_references(mu, lv, **kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        MC.neg_entropy_mc(mu, lv, 4, _gen(0), **kwargs)


# ------------------------------------------------------------------------------- the executor hook


class RecordingExecutor:
    """Runs the calls here, in reverse order (results put back in order), and records them."""

    workers = 3

    def __init__(self):
        self.calls = []

    def map(self, func, items, shared=()):
        assert func is MC.evaluate_chunk and len(shared) == 1
        self.calls.append(len(items))
        out = [func(item, *shared) for item in reversed(items)]
        return out[::-1]


@pytest.mark.parametrize("N", [600, 9000])  # dense kernel, pruned kernel
def test_results_do_not_depend_on_the_executor(N, monkeypatch):
    monkeypatch.setattr(MC, "CHUNK_TERMS", N * 100)  # chunks of 100 draws
    monkeypatch.setattr(MC, "MIN_CHUNK", 100)
    mu, lv = make_field(N, 4, 7, logvar=(-5.0, -2.0))
    serial = MC.neg_entropy_mc(mu, lv, 2, _gen(4), strata=500)
    ex = RecordingExecutor()
    other = MC.neg_entropy_mc(mu, lv, 2, _gen(4), strata=500, executor=ex)
    assert tuple(serial) == tuple(other)
    assert MC._chunk_size(N) == 100
    assert sum(ex.calls) == 10 - 1 and max(ex.calls) <= 3  # the first chunk here, the rest three at a time
    ref = exact_references(mu, lv, samples=2, strata=500, seed=4, executor=RecordingExecutor(), brackets=False)
    assert ref["kl_agg"]["value"] == exact_references(mu, lv, samples=2, strata=500, seed=4,
                                                      brackets=False)["kl_agg"]["value"]
