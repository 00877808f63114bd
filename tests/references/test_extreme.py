"""References stay accurate on legal extreme fields, and refuse the illegal ones with a clear error.

Each case was wrong on the earlier code, which formed mi = avg_kl - kl_agg and tc = kl_agg - dimwise_kl:
at logvar = 30 both terms are 5e12 and their difference kept no digit. The references now form mi and
tc from E[log q(z)], E[log q(z|n)] and E[log q(z_d)], numbers of the size of a log-density.
"""
import math

import pytest
import torch

from estimators import exact_references

F64 = torch.float64
Z = 4.5  # |difference| < Z se: failure rate ~1e-5 per check


def _field(N, D, seed, logvar):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g, dtype=F64), torch.full((N, D), float(logvar), dtype=F64)


def _identities_hold(ref):
    for total, parts in (("avg_kl", ("mi", "kl_agg")), ("kl_agg", ("tc", "dimwise_kl"))):
        scale = max(1.0, abs(ref[total]["value"]))
        assert abs(ref[total]["value"] - sum(ref[p]["value"] for p in parts)) <= 1e-12 * scale, (total, ref)


def test_huge_variances_everywhere_keep_mi_and_tc_in_range():
    # logvar = +30: every posterior is 3e6 prior sds wide, so q(z) ~ one Gaussian: mi, tc ~ 0 (were -0.0039
    # with se 7e-5, 58 se below zero)
    mu, lv = _field(300, 3, 0, 30.0)
    ref = exact_references(mu, lv)
    assert ref["kl_agg"]["value"] > 1e12
    for q in ("mi", "tc"):
        assert -Z * ref[q]["se"] - 1e-9 <= ref[q]["value"] <= math.log(300) + Z * ref[q]["se"], (q, ref[q])
    _identities_hold(ref)


def test_one_huge_inactive_dimension_changes_nothing():
    # Independent computation: the same field without the inactive dimension. That dimension is the same
    # N(0, e^45) for every posterior, so q(z) factorises off it: mi and tc are unchanged (the earlier code
    # gave mi = 0 +- 141 and tc = 12288 +- 141 with it; about 2 and 0 without).
    mu, lv = _field(400, 3, 1, -2.0)
    mu_in, lv_in = mu.clone(), lv.clone()
    mu_in[:, 2], lv_in[:, 2] = 0.0, 45.0
    with_dim = exact_references(mu_in, lv_in, samples=32, seed=3)
    without = exact_references(mu[:, :2], lv[:, :2], max_quadrature_components=1, samples=32, seed=4)
    assert without["kl_agg"]["method"] == "mc"
    for q in ("mi", "tc"):
        se = math.hypot(with_dim[q]["se"], without[q]["se"])
        assert abs(with_dim[q]["value"] - without[q]["value"]) < Z * se, (q, with_dim[q], without[q])
    _identities_hold(with_dim)


@pytest.mark.slow  # ~10 s: the quadrature refines a thousand cells spread over 1e10
def test_far_apart_means_are_fully_separated():
    # |mu| ~ 1e10 with unit variances: no two posteriors overlap, so mi = log N and tc = (D - 1) log N
    # exactly (the earlier code gave mi = 0.0 +- 3e-8)
    N, D = 200, 3
    mu, lv = _field(N, D, 2, 0.0)
    ref = exact_references(mu * 1e10, lv)
    assert abs(ref["mi"]["value"] - math.log(N)) < Z * ref["mi"]["se"] + 1e-6
    assert abs(ref["tc"]["value"] - (D - 1) * math.log(N)) < Z * ref["tc"]["se"] + 1e-6
    _identities_hold(ref)


@pytest.mark.parametrize("scale, logvar, match", [
    (1e200, 0.0, r"mu must lie in \[-1e\+100, 1e\+100\]"),  # was "SVD did not converge" after a minute
    (1e7, -40.0, r"dimension \d: the means spread over .* times the smallest standard deviation"),
    (1.0, 61.0, r"logvar must lie in \[-60, 60\]"),
])
def test_fields_beyond_float64_get_a_clear_error(scale, logvar, match):
    mu, lv = _field(50, 2, 5, logvar)
    with pytest.raises(ValueError, match=match):
        exact_references(mu * scale, lv)


def test_progress_bars_on_request(capsys, monkeypatch):
    from estimators.references import api

    monkeypatch.setattr(api, "PROGRESS_DELAY", 0.0)  # show at once (by default only steps over 2 s do)
    mu, lv = _field(64, 3, 6, -1.0)
    exact_references(mu, lv, progress=True)
    err = capsys.readouterr().err
    assert "marginal quadratures" in err and "Monte Carlo draws" in err
    exact_references(mu, lv)
    assert capsys.readouterr().err == ""
