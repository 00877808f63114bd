"""Exact references (estimators/references.py) and their quadrature (estimators/quadrature.py).

Every check is against something independent: a brute-force float64 loop, a closed form,
scipy.integrate.quad, a plain numpy Monte Carlo, an identity. Statistical checks use fixed seeds and
thresholds from the binomial / chi-square distributions at a failure rate of about 1e-4.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

from estimators import exact_references
from estimators.quadrature import RESOLUTION, ZONE, _range_min, kl_to_standard_normal, resolved_partition
from estimators.references import QUANTITIES, _kl_agg_mc

F64 = torch.float64


def _field(N, D, seed, spread=1.0, lv_mean=-1.0, lv_sd=0.5):
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, D, generator=g, dtype=F64)
    logvar = lv_mean + lv_sd * torch.randn(N, D, generator=g, dtype=F64)
    return mu, logvar


def _kl_1d_scipy(mu: np.ndarray, logvar: np.ndarray) -> float:
    """KL(q || N(0, 1)) of the equal-weight 1-D mixture by scipy.integrate.quad with breakpoints."""
    var, sd = np.exp(logvar), np.exp(0.5 * logvar)

    def log_q(z):
        return logsumexp(-0.5 * (np.log(2 * np.pi) + logvar + (z - mu) ** 2 / var)) - np.log(len(mu))

    def f(z):
        lq = log_q(z)
        return math.exp(lq) * (lq + 0.5 * np.log(2 * np.pi) + 0.5 * z * z)

    points = np.sort(np.concatenate([mu + k * sd for k in (-3, -1, 0, 1, 3)]))
    value, _ = integrate.quad(f, (mu - 40 * sd).min(), (mu + 40 * sd).max(), points=points, limit=5000,
                              epsabs=1e-15, epsrel=1e-13)
    return value


# ------------------------------------------------------------------------------- closed forms


def test_avg_kl_matches_brute_force_loop():
    mu, logvar = _field(7, 3, seed=1)
    total = 0.0
    for n in range(7):
        for d in range(3):
            m, lv = float(mu[n, d]), float(logvar[n, d])
            total += 0.5 * (m * m + math.exp(lv) - 1.0 - lv)
    ref = exact_references(mu, logvar)
    assert ref["avg_kl"] == {"value": pytest.approx(total / 7, rel=1e-13), "se": 0.0, "method": "closed"}


def test_all_posteriors_equal_to_the_prior_give_zero_everywhere():
    ref = exact_references(torch.zeros(9, 4), torch.zeros(9, 4))
    assert ref["structure"] == "identical"
    for q in QUANTITIES:
        assert ref[q] == {"value": 0.0, "se": 0.0, "method": "closed"}


def test_single_posterior_has_zero_mi_and_kl_agg_equal_to_its_kl():
    mu, logvar = torch.tensor([[0.3, -1.2, 2.0]], dtype=F64), torch.tensor([[-0.5, 0.4, -2.0]], dtype=F64)
    ref = exact_references(mu, logvar)
    q = torch.distributions.Normal(mu[0], torch.exp(0.5 * logvar[0]))
    kl = float(torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum())
    assert ref["mi"] == {"value": 0.0, "se": 0.0, "method": "closed"}
    assert ref["tc"] == {"value": 0.0, "se": 0.0, "method": "closed"}
    for name in ("avg_kl", "kl_agg", "dimwise_kl"):
        assert ref[name]["value"] == pytest.approx(kl, rel=1e-13)
        assert ref[name]["method"] == "closed"


def test_identical_posteriors_are_recognised_as_one_gaussian():
    row_mu, row_lv = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([-1.0, 0.5], dtype=F64)
    ref = exact_references(row_mu.repeat(6, 1), row_lv.repeat(6, 1))
    kl = 0.5 * float((row_mu ** 2 + row_lv.exp() - 1 - row_lv).sum())
    assert ref["structure"] == "identical"
    assert ref["kl_agg"] == {"value": pytest.approx(kl, rel=1e-13), "se": 0.0, "method": "closed"}
    assert ref["mi"]["value"] == 0.0 and ref["tc"]["value"] == 0.0


def _grid_field():
    levels = [torch.tensor([-1.2, 0.1, 0.9], dtype=F64), torch.tensor([-0.5, 0.7], dtype=F64),
              torch.tensor([-1.0, 0.0, 0.4, 1.5], dtype=F64)]
    mu = torch.cartesian_prod(*levels)
    logvar = torch.tensor([-1.5, -0.7, -2.2], dtype=F64).expand_as(mu).clone()
    return mu[torch.randperm(len(mu), generator=torch.Generator().manual_seed(0))], logvar


def test_product_grid_has_zero_tc_and_kl_agg_equal_to_dimwise_kl():
    mu, logvar = _grid_field()
    ref = exact_references(mu, logvar)
    assert ref["structure"] == "product_grid"
    assert ref["tc"] == {"value": 0.0, "se": 0.0, "method": "closed"}
    assert ref["kl_agg"] == ref["dimwise_kl"]
    assert ref["kl_agg"]["method"] == "quadrature"
    # the factorisation is a claim: check it against Monte Carlo of the joint, which does not use it
    value, se = _kl_agg_mc(mu, logvar, 400, torch.Generator().manual_seed(3))
    assert abs(value - ref["kl_agg"]["value"]) < 4 * se


def test_well_separated_posteriors_have_mi_log_n():
    N, D, sd = 20, 3, 0.1
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(N, D, generator=g, dtype=F64)
    mu[:, 0] = 50 * sd * torch.randperm(N, generator=g).to(F64)  # neighbours 50 sd apart
    ref = exact_references(mu, torch.full((N, D), 2 * math.log(sd), dtype=F64))
    assert ref["mi"]["method"] == "mc"
    assert abs(ref["mi"]["value"] - math.log(N)) <= 4 * ref["mi"]["se"] + 1e-9


# ------------------------------------------------------------------------------- identities, output


@pytest.mark.parametrize("N,D,kwargs", [(40, 1, {}), (30, 2, {}), (30, 2, {"max_quadrature_components": 5}),
                                        (50, 4, {}), (1, 3, {})])
def test_identities_hold_to_float_precision(N, D, kwargs):
    mu, logvar = _field(N, D, seed=N + D)
    ref = exact_references(mu, logvar, **kwargs)
    v = {q: ref[q]["value"] for q in QUANTITIES}
    assert v["avg_kl"] == pytest.approx(v["mi"] + v["kl_agg"], abs=1e-12)
    assert v["kl_agg"] == pytest.approx(v["tc"] + v["dimwise_kl"], abs=1e-12)
    assert ref["mi"]["se"] == ref["kl_agg"]["se"]


def test_methods_are_picked_by_structure():
    mu, logvar = _field(30, 2, seed=5)
    assert exact_references(mu[:, :1], logvar[:, :1])["kl_agg"]["method"] == "quadrature"
    assert exact_references(mu, logvar)["kl_agg"]["method"] == "quadrature"
    forced = exact_references(mu, logvar, max_quadrature_components=5)
    assert forced["kl_agg"]["method"] == "mc" and forced["kl_agg"]["se"] > 0
    assert forced["tc"]["method"] == "mc" and forced["mi"]["method"] == "mc"
    three = exact_references(*_field(30, 3, seed=5))
    assert three["structure"] == "general" and three["kl_agg"]["method"] == "mc"
    assert three["dimwise_kl"]["method"] == "quadrature" and three["dimwise_kl"]["se"] == 0.0


def test_result_is_json_serialisable_with_the_required_keys():
    ref = exact_references(*_field(20, 3, seed=0), samples=4, seed=7)
    back = json.loads(json.dumps(ref))
    assert back["N"] == 20 and back["D"] == 3 and back["samples"] == 4 and back["seed"] == 7
    assert isinstance(back["seconds"], float)
    for q in QUANTITIES:
        assert set(back[q]) == {"value", "se", "method"}
        assert back[q]["method"] in ("closed", "quadrature", "mc")


def test_seed_makes_the_monte_carlo_reproducible():
    mu, logvar = _field(25, 3, seed=4)
    a, b = exact_references(mu, logvar, seed=1), exact_references(mu, logvar, seed=1)
    c = exact_references(mu, logvar, seed=2)
    assert a["kl_agg"] == b["kl_agg"]
    assert a["kl_agg"]["value"] != c["kl_agg"]["value"]
    assert a["dimwise_kl"] == c["dimwise_kl"]


def test_dtype_rounds_the_field_then_computes_in_float64():
    mu, logvar = _field(15, 1, seed=6)
    rounded = exact_references(mu.float().double(), logvar.float().double())
    for ref in (exact_references(mu, logvar, dtype=torch.float32), exact_references(mu.float(), logvar.float())):
        assert ref["dimwise_kl"]["value"] == pytest.approx(rounded["dimwise_kl"]["value"], rel=1e-14)
    assert exact_references(mu, logvar, dtype=torch.float32)["dtype"] == "float32"


# ------------------------------------------------------------------------------- quadrature


def test_dimwise_kl_matches_scipy_quad():
    # a small field with a shared value in one dimension and widths over two orders of magnitude
    mu = torch.tensor([[0.1, 0.5], [-0.8, 0.5], [1.3, -0.2], [0.4, 1.1]], dtype=F64)
    logvar = torch.tensor([[-1.0, -2.0], [-0.3, -2.0], [-4.0, 0.2], [-1.5, -7.0]], dtype=F64)
    expected = sum(_kl_1d_scipy(mu[:, d].numpy(), logvar[:, d].numpy()) for d in range(2))
    ref = exact_references(mu, logvar)
    assert ref["dimwise_kl"]["value"] == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("mu,logvar", [
    ([0.0, 0.3, 2.0], [1.0, -10.0, -12.0]),  # narrow components inside a wide one: per-component GH fails
    ([-0.3, 0.2, 1.1, -1.4, 0.5, 0.9], [-8.0, -6.0, -3.0, 0.0, 1.0, -1.0]),
    ([0.5], [-0.7]),
])
def test_one_dimensional_kl_matches_scipy_quad_and_its_error_estimate(mu, logvar):
    mu, logvar = torch.tensor(mu, dtype=F64), torch.tensor(logvar, dtype=F64)
    value, error = kl_to_standard_normal(mu[:, None], logvar[:, None])
    expected = _kl_1d_scipy(mu.numpy(), logvar.numpy())
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


# ------------------------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize("D", [1, 2])
def test_quadrature_agrees_with_monte_carlo_in_one_and_two_dimensions(D):
    mu, logvar = _field(30, D, seed=10 + D)
    ref = exact_references(mu, logvar)
    assert ref["kl_agg"]["method"] == "quadrature"
    value, se = _kl_agg_mc(mu, logvar, 256, torch.Generator().manual_seed(D))
    assert abs(value - ref["kl_agg"]["value"]) < 4 * se


def test_monte_carlo_matches_an_independent_numpy_monte_carlo():
    mu, logvar = _field(3, 3, seed=21, lv_sd=0.8)
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
        value, se = _kl_agg_mc(mu, logvar, 8, torch.Generator().manual_seed(seed))
        z.append((value - truth["value"]) / se)
    _coverage_checks(z)


def test_monte_carlo_standard_error_is_honest_in_four_dimensions():
    mu, logvar = _field(40, 4, seed=31, spread=0.8)
    truth, truth_se = _kl_agg_mc(mu, logvar, 10000, torch.Generator().manual_seed(999))
    z = []
    for seed in range(20):
        value, se = _kl_agg_mc(mu, logvar, 8, torch.Generator().manual_seed(seed))
        z.append((value - truth) / math.hypot(se, truth_se))
    assert truth_se < 0.05 * se
    _coverage_checks(z)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,error,match", [
    ({"samples": 1}, ValueError, "samples"),
    ({"samples": 2.5}, TypeError, "samples"),
    ({"quadrature_nodes": 1}, ValueError, "quadrature_nodes"),
    ({"seed": -1}, ValueError, "seed"),
    ({"max_quadrature_components": 0}, ValueError, "max_quadrature_components"),
    ({"dtype": torch.int32}, ValueError, "dtype"),
])
def test_bad_settings_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        exact_references(torch.zeros(3, 2), torch.zeros(3, 2), **kwargs)


def test_bad_fields_raise_naming_the_argument():
    with pytest.raises(ValueError, match="mu"):
        exact_references(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="same shape"):
        exact_references(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="logvar"):
        exact_references(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="mu"):
        exact_references(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="logvar"):
        exact_references(torch.zeros(2, 2), torch.full((2, 2), 800.0))
    with pytest.raises(ValueError, match="logvar"):
        exact_references(torch.zeros(2, 2), torch.full((2, 2), -61.0))
