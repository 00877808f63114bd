"""Moment-based estimators and bounds (estimators/direct/moments.py): against numpy and brute force, exact
for a single Gaussian, below the exact references, and clear errors for bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estimators.direct import (DIRECT_ESTIMATORS, gaussian_tc, gaussian_tc_of_means, moment_dimwise_kl, moment_kl,
                               moment_matched, moment_mi_upper, moment_tc)
from estimators.numerics import kl_to_prior
from estimators.references import exact_references
from estimators.scenarios import SCENARIOS, make_scenario

F64 = torch.float64


def _field(N, D, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=F64)
    mu = torch.randn(N, D, generator=g, dtype=F64) @ A
    lv = torch.rand(N, D, generator=g, dtype=F64) * 2 - 1.5
    return mu, lv


def test_moments_match_numpy():
    mu, lv = _field(50, 3, 0)
    m, S = moment_matched(mu, lv)
    x, v = mu.numpy(), np.exp(lv.numpy())
    np.testing.assert_allclose(m.numpy(), x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(S.numpy(), np.cov(x.T, bias=True) + np.diag(v.mean(0)), rtol=1e-12)
    S_np = np.cov(x.T, bias=True) + np.diag(v.mean(0))
    want = 0.5 * (np.trace(S_np) + x.mean(0) @ x.mean(0) - 3 - np.linalg.slogdet(S_np)[1])
    assert float(moment_kl(mu, lv)) == pytest.approx(want, rel=1e-12)
    s = np.diag(S_np)
    want_d = 0.5 * np.sum(s + x.mean(0) ** 2 - 1 - np.log(s))
    assert float(moment_dimwise_kl(mu, lv)) == pytest.approx(want_d, rel=1e-12)
    assert float(moment_tc(mu, lv)) == pytest.approx(0.5 * (np.log(s).sum() - np.linalg.slogdet(S_np)[1]), rel=1e-12)
    C = np.cov(x.T, bias=True)
    assert float(gaussian_tc_of_means(mu)) == pytest.approx(0.5 * (np.log(np.diag(C)).sum() - np.linalg.slogdet(C)[1]),
                                                            rel=1e-12)
    # the identities: kl = dimwise + tc of q_G; mi upper = avg_kl - moment_kl
    assert float(moment_kl(mu, lv)) == pytest.approx(float(moment_dimwise_kl(mu, lv) + moment_tc(mu, lv)), rel=1e-12)
    avg_kl = float(kl_to_prior(mu, lv).mean())
    assert float(moment_mi_upper(mu, lv)) == pytest.approx(avg_kl - float(moment_kl(mu, lv)), rel=1e-10)


def test_exact_for_a_single_gaussian_and_for_identical_components():
    mu = torch.tensor([[0.4, -2.0, 1.0]], dtype=F64)
    lv = torch.tensor([[-1.0, 0.5, 2.0]], dtype=F64)
    kl = float(kl_to_prior(mu, lv)[0])
    for n in (1, 7):
        m, l_ = mu.expand(n, 3), lv.expand(n, 3)
        assert float(moment_kl(m, l_)) == pytest.approx(kl, rel=1e-14)
        assert float(moment_dimwise_kl(m, l_)) == pytest.approx(kl, rel=1e-14)
        assert float(moment_tc(m, l_)) == pytest.approx(0.0, abs=1e-14)
        assert float(moment_mi_upper(m, l_)) == pytest.approx(0.0, abs=1e-14)


def test_bounds_hold_on_every_scenario():
    """moment_kl <= kl_agg, each 1-D moment KL <= that dimension's KL (by its quadrature), mi <= the moment
    upper bound: the exact references against the bounds, every built-in scenario."""
    from estimators.references.quadrature import cross_entropy_to_prior, neg_entropy
    from estimators.references.structure import dedupe

    for name in SCENARIOS:
        real = SCENARIOS[name].real  # trained fields keep their own D
        fld = make_scenario(name, N=150 if real else 100, D=None if real else 3)
        mu, lv = fld.mu.to(F64), fld.logvar.to(F64)
        ref = exact_references(mu, lv, samples=16)
        slack = 4 * ref["kl_agg"]["se"] + 1e-10
        assert float(moment_kl(mu, lv)) <= ref["kl_agg"]["value"] + slack, name
        assert float(moment_mi_upper(mu, lv)) >= ref["mi"]["value"] - slack, name
        per_dim = moment_dimwise_kl(mu, lv, per_dim=True)
        for d in range(mu.shape[1]):
            mu_u, lv_u, log_w, _ = dedupe(mu[:, d:d + 1], lv[:, d:d + 1])
            kl_d = neg_entropy(mu_u, lv_u, log_w)[0] - cross_entropy_to_prior(mu[:, d:d + 1], lv[:, d:d + 1])
            assert float(per_dim[d]) <= kl_d + 1e-9, (name, d)


def test_constant_dimensions_of_the_means_are_left_out():
    mu, _ = _field(40, 3, 1)
    with_constant = torch.cat([mu, torch.zeros(40, 1, dtype=F64)], 1)
    assert float(gaussian_tc_of_means(with_constant)) == pytest.approx(float(gaussian_tc_of_means(mu)), rel=1e-13)
    assert float(gaussian_tc(torch.zeros(2, 2, dtype=F64))) == 0.0


def test_differentiable():
    mu, lv = _field(30, 3, 2)
    mu.requires_grad_(True)
    lv.requires_grad_(True)
    (moment_kl(mu, lv) + gaussian_tc_of_means(mu)).backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()


@pytest.mark.parametrize("call,match", [
    (lambda: moment_kl(torch.zeros(4, 2), torch.zeros(4, 3)), "mu and logvar must have the same shape"),
    (lambda: moment_kl(torch.zeros(4), torch.zeros(4)), "mu must be 2-dimensional"),
    (lambda: moment_kl(torch.full((4, 2), math.nan), torch.zeros(4, 2)), "mu holds"),
    (lambda: gaussian_tc_of_means(torch.randn(3, 3)), r"more points than dimensions .* N = 3, D = 3"),
    (lambda: gaussian_tc(torch.zeros(2, 3)), "cov must be square"),
    (lambda: moment_kl(torch.zeros(0, 2), torch.zeros(0, 2)), "N >= 1"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_registry_records_say_what_each_estimates():
    kinds = {name: info.kinds for name, info in DIRECT_ESTIMATORS.items()}
    assert kinds == {"density_ratio": {"tc": "estimate"}, "gaussian_tc_means": {"tc": "estimate"},
                     "moment_kl": {"kl_agg": "lower"}, "moment_dimwise_kl": {"dimwise_kl": "lower"},
                     "moment_tc": {"tc": "estimate"}}
    assert {info.family for info in DIRECT_ESTIMATORS.values()} == {"moment", "density_ratio"}
    mu, lv = _field(20, 3, 3)
    for name, info in DIRECT_ESTIMATORS.items():
        if info.reads_field:
            continue
        out = info.implementation(mu, lv, seed=0, batch_size=20, steps=None)
        assert set(out) == set(info.quantities) and all(math.isfinite(v) for v in out.values()), name
    assert DIRECT_ESTIMATORS["gaussian_tc_means"].min_batch(5) == 6
