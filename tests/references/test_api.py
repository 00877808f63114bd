"""exact_references: each quantity against an independent computation; structure, output, bad input.

In exact_references, mi = avg_kl - kl_agg and tc = kl_agg - dimwise_kl by definition, so testing
those identities on its output cannot fail. Each quantity is checked instead against a computation
that shares no code with the package:

* avg_kl: a Python loop over the closed form;
* dimwise_kl: scipy.integrate.quad of each 1-D marginal KL;
* mi: a separate numpy Monte Carlo of E[log q(z|n) - log q(z)] with its own standard error;
* tc: a numpy Monte Carlo of E[log q(z) - sum_d log q(z_d)], and separately scipy's dimwise_kl
  subtracted from a numpy Monte Carlo of kl_agg;
* closed-form special cases (identical posteriors, product grids) against torch.distributions and Monte Carlo.

Statistical checks: fixed seeds, |difference| < 4.5 combined standard errors (failure rate ~1e-5).
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from estimators import exact_references
from estimators.references import QUANTITIES
from estimators.references.monte_carlo import kl_agg_mc
from tests.helpers import F64, make_field, numpy_field_terms, scipy_kl_1d, stratified_mean

Z_REF = 4.5
FIELDS = [(40, 1, {}), (30, 2, {}), (30, 2, {"max_quadrature_components": 5}), (50, 4, {}), (1, 3, {})]


def _core(entry: dict) -> dict:
    """An entry's value, se and method (the bracket's keys aside: tests/references/test_brackets.py)."""
    return {k: entry[k] for k in ("value", "se", "method")}


def _field(N, D, seed, spread=1.0, logvar=(-2.0, 0.0)):
    return make_field(N, D, seed, spread=spread, logvar=logvar)


# ------------------------------------------------------------------------------- closed forms


def test_avg_kl_matches_brute_force_loop():
    mu, logvar = _field(7, 3, seed=1)
    total = 0.0
    for n in range(7):
        for d in range(3):
            m, lv = float(mu[n, d]), float(logvar[n, d])
            total += 0.5 * (m * m + math.exp(lv) - 1.0 - lv)
    ref = exact_references(mu, logvar)
    assert _core(ref["avg_kl"]) == {"value": pytest.approx(total / 7, rel=1e-13), "se": 0.0, "method": "closed"}


def test_all_posteriors_equal_to_the_prior_give_zero_everywhere(prior_field):
    ref = exact_references(*prior_field)
    assert ref["structure"] == "identical"
    for q in QUANTITIES:
        assert _core(ref[q]) == {"value": 0.0, "se": 0.0, "method": "closed"}


def test_single_posterior_has_zero_mi_and_kl_agg_equal_to_its_kl():
    mu, logvar = torch.tensor([[0.3, -1.2, 2.0]], dtype=F64), torch.tensor([[-0.5, 0.4, -2.0]], dtype=F64)
    ref = exact_references(mu, logvar)
    q = torch.distributions.Normal(mu[0], torch.exp(0.5 * logvar[0]))
    kl = float(torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum())
    assert _core(ref["mi"]) == {"value": 0.0, "se": 0.0, "method": "closed"}
    assert _core(ref["tc"]) == {"value": 0.0, "se": 0.0, "method": "closed"}
    for name in ("avg_kl", "kl_agg", "dimwise_kl"):
        assert ref[name]["value"] == pytest.approx(kl, rel=1e-13)
        assert ref[name]["method"] == "closed"


def test_identical_posteriors_are_recognised_as_one_gaussian():
    row_mu, row_lv = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([-1.0, 0.5], dtype=F64)
    ref = exact_references(row_mu.repeat(6, 1), row_lv.repeat(6, 1))
    kl = 0.5 * float((row_mu ** 2 + row_lv.exp() - 1 - row_lv).sum())
    assert ref["structure"] == "identical"
    assert _core(ref["kl_agg"]) == {"value": pytest.approx(kl, rel=1e-13), "se": 0.0, "method": "closed"}
    assert ref["mi"]["value"] == 0.0 and ref["tc"]["value"] == 0.0


def grid_field():
    levels = [torch.tensor([-1.2, 0.1, 0.9], dtype=F64), torch.tensor([-0.5, 0.7], dtype=F64),
              torch.tensor([-1.0, 0.0, 0.4, 1.5], dtype=F64)]
    mu = torch.cartesian_prod(*levels)
    logvar = torch.tensor([-1.5, -0.7, -2.2], dtype=F64).expand_as(mu).clone()
    return mu[torch.randperm(len(mu), generator=torch.Generator().manual_seed(0))], logvar


def test_product_grid_has_zero_tc_and_kl_agg_equal_to_dimwise_kl():
    mu, logvar = grid_field()
    ref = exact_references(mu, logvar)
    assert ref["structure"] == "product_grid"
    assert _core(ref["tc"]) == {"value": 0.0, "se": 0.0, "method": "closed"}
    assert _core(ref["kl_agg"]) == _core(ref["dimwise_kl"])  # their brackets differ: different bounds
    assert ref["kl_agg"]["method"] == "quadrature"
    # the factorisation is a claim: check it against Monte Carlo of the joint, which does not use it
    value, se = kl_agg_mc(mu, logvar, 400, torch.Generator().manual_seed(3))
    assert abs(value - ref["kl_agg"]["value"]) < 4 * se


def test_well_separated_posteriors_have_mi_log_n():
    N, D, sd = 20, 3, 0.1
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(N, D, generator=g, dtype=F64)
    mu[:, 0] = 50 * sd * torch.randperm(N, generator=g).to(F64)  # neighbours 50 sd apart
    ref = exact_references(mu, torch.full((N, D), 2 * math.log(sd), dtype=F64))
    assert ref["mi"]["method"] == "mc"
    assert abs(ref["mi"]["value"] - math.log(N)) <= 4 * ref["mi"]["se"] + 1e-9


# ------------------------------------------------------------------------------- independent computations


def test_dimwise_kl_matches_scipy_quad():
    # a small field with a shared value in one dimension and widths over two orders of magnitude
    mu = torch.tensor([[0.1, 0.5], [-0.8, 0.5], [1.3, -0.2], [0.4, 1.1]], dtype=F64)
    logvar = torch.tensor([[-1.0, -2.0], [-0.3, -2.0], [-4.0, 0.2], [-1.5, -7.0]], dtype=F64)
    expected = sum(scipy_kl_1d(mu[:, d].numpy(), logvar[:, d].numpy()) for d in range(2))
    ref = exact_references(mu, logvar)
    assert ref["dimwise_kl"]["value"] == pytest.approx(expected, rel=1e-8)


def _close(value, se, brute, brute_se):
    """|value - brute| below Z_REF combined standard errors (plus float rounding for se = 0 on both sides)."""
    return abs(value - brute) < Z_REF * math.hypot(se, brute_se) + 1e-9


@pytest.mark.parametrize("N,D,kwargs", FIELDS)
def test_mi_matches_a_brute_force_monte_carlo(N, D, kwargs):
    """mi against a numpy Monte Carlo of E[log q(z|n) - log q(z)] (stratified, 400 draws per component)."""
    mu, logvar = _field(N, D, seed=N + D)
    ref = exact_references(mu, logvar, samples=64, **kwargs)  # se of the mc reference ~0.01
    own, log_q, _, _ = numpy_field_terms(mu.numpy(), logvar.numpy(), 400, seed=N + D)
    mi, se = stratified_mean(own - log_q)
    assert _close(ref["mi"]["value"], ref["mi"]["se"], mi, se), (ref["mi"], mi, se)
    assert Z_REF * math.hypot(ref["mi"]["se"], se) < 0.08  # power: an error of 0.08 nats fails


@pytest.mark.parametrize("N,D,kwargs", FIELDS)
def test_tc_matches_a_brute_force_monte_carlo(N, D, kwargs):
    """tc against a numpy Monte Carlo of E[log q(z) - sum_d log q(z_d)] (stratified, 400 draws per component)."""
    mu, logvar = _field(N, D, seed=N + D + 100, spread=1.2)
    ref = exact_references(mu, logvar, samples=64, **kwargs)
    _, log_q, log_marg, _ = numpy_field_terms(mu.numpy(), logvar.numpy(), 400, seed=N + D + 1)
    tc, se = stratified_mean(log_q - log_marg)
    assert _close(ref["tc"]["value"], ref["tc"]["se"], tc, se), (ref["tc"], tc, se)
    assert Z_REF * math.hypot(ref["tc"]["se"], se) < 0.08


@pytest.mark.parametrize("N,D,kwargs", [(30, 2, {}), (30, 3, {}), (25, 2, {"max_quadrature_components": 5})])
def test_tc_matches_scipy_dimwise_kl_and_a_separate_kl_agg(N, D, kwargs):
    """tc against scipy.integrate.quad of every marginal KL subtracted from a numpy Monte Carlo of kl_agg."""
    mu, logvar = _field(N, D, seed=7 * N + D, spread=1.2)
    ref = exact_references(mu, logvar, samples=256, **kwargs)
    dimwise = sum(scipy_kl_1d(mu[:, d].numpy(), logvar[:, d].numpy()) for d in range(D))
    _, log_q, _, log_p = numpy_field_terms(mu.numpy(), logvar.numpy(), 400, seed=N + D + 2)
    kl_agg, se = stratified_mean(log_q - log_p)
    assert ref["dimwise_kl"]["value"] == pytest.approx(dimwise, rel=1e-8)
    assert _close(ref["kl_agg"]["value"], ref["kl_agg"]["se"], kl_agg, se), (ref["kl_agg"], kl_agg, se)
    assert _close(ref["tc"]["value"], ref["tc"]["se"], kl_agg - dimwise, se), (ref["tc"], kl_agg - dimwise, se)
    assert ref["tc"]["value"] > Z_REF * math.hypot(ref["tc"]["se"], se)  # a tc clearly above 0: the check bites


# ------------------------------------------------------------------------------- structure, output


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
    assert isinstance(back["seconds"], float) and back["structure"] == "general"
    for q in QUANTITIES:
        assert set(back[q]) == {"value", "se", "method", "lower", "upper", "lower_by", "upper_by"}
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
