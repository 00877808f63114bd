"""Certified brackets (estimators/references/brackets.py): the pairwise-distance bounds of Kolchinsky & Tracey
against a direct double loop, against the entropy itself, pinching for separated components, and every
reference inside its bracket on every built-in scenario; the loud error when one is not."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

import estimators.references.api as api
from estimators.direct.moments import moment_kl
from estimators.numerics import kl_to_prior
from estimators.references import exact_references
from estimators.references.brackets import (BracketError, check_brackets, pairwise_entropy_bounds,
                                            pairwise_information)
from estimators.references.monte_carlo import neg_entropy_mc
from estimators.scenarios import SCENARIOS, make_scenario

F64 = torch.float64
QUANTITIES = ("avg_kl", "kl_agg", "mi", "tc", "dimwise_kl")


def _field(N, D, seed, spread=1.5, logvar=(-1.5, 0.5)):
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, D, generator=g, dtype=F64)
    lv = logvar[0] + (logvar[1] - logvar[0]) * torch.rand(N, D, generator=g, dtype=F64)
    return mu, lv


def _loop_information(mu, logvar, w, distance):
    """-sum_i w_i log sum_j w_j exp(-D(q_i || q_j)) by a double loop over pairs, scalar float arithmetic."""
    N, D = mu.shape
    total = 0.0
    for i in range(N):
        inner = 0.0
        for j in range(N):
            dist = 0.0
            for d in range(D):
                m1, m2 = float(mu[i, d]), float(mu[j, d])
                v1, v2 = math.exp(float(logvar[i, d])), math.exp(float(logvar[j, d]))
                if distance == "kl":
                    dist += 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)
                else:  # Bhattacharyya
                    s = v1 + v2
                    dist += (m1 - m2) ** 2 / (4 * s) + 0.5 * math.log(s / 2) - 0.25 * math.log(v1 * v2)
            inner += w[j] * math.exp(-dist)
        total -= w[i] * math.log(inner)
    return total


@pytest.mark.parametrize("N,D,seed,weighted", [(7, 2, 0, False), (9, 3, 1, True), (5, 1, 2, False)])
def test_pairwise_bounds_match_a_double_loop(N, D, seed, weighted):
    mu, lv = _field(N, D, seed)
    g = torch.Generator().manual_seed(seed + 10)
    log_w = torch.log(torch.rand(N, generator=g, dtype=F64) + 0.1) if weighted else None
    w = [1.0 / N] * N if log_w is None else torch.softmax(log_w, 0).tolist()
    got = pairwise_information(mu, lv, log_w)
    assert got["lower_method"] == "bhattacharyya"
    assert got["lower"] == pytest.approx(_loop_information(mu, lv, w, "bc"), rel=1e-12, abs=1e-14)
    assert got["upper"] == pytest.approx(_loop_information(mu, lv, w, "kl"), rel=1e-12, abs=1e-14)
    assert 0.0 <= got["lower"] <= got["upper"] <= -math.log(min(w)) + 1e-12


def test_the_relaxed_lower_bound_is_below_the_exact_one_and_equal_for_shared_variances():
    mu, lv = _field(40, 3, 3)
    exact = pairwise_information(mu, lv)
    relaxed = pairwise_information(mu, lv, exact_budget=0)
    assert relaxed["lower_method"] == "bhattacharyya_relaxed"
    assert 0.0 <= relaxed["lower"] <= exact["lower"] and relaxed["upper"] == exact["upper"]
    shared = torch.tensor([-1.0, 0.3, -2.0], dtype=F64).expand(40, 3)
    loop = _loop_information(mu, shared, [1 / 40] * 40, "bc")
    assert pairwise_information(mu, shared, exact_budget=0)["lower"] == pytest.approx(loop, rel=1e-12)


def test_duplicates_are_merged_exactly():
    mu, lv = _field(6, 2, 4)
    twice = pairwise_information(torch.cat([mu, mu, mu[:2]]), torch.cat([lv, lv, lv[:2]]))
    w = [2 / 14] * 6
    w[0] = w[1] = 3 / 14
    assert twice["lower"] == pytest.approx(_loop_information(mu, lv, w, "bc"), rel=1e-12)
    assert twice["upper"] == pytest.approx(_loop_information(mu, lv, w, "kl"), rel=1e-12)


def test_one_dimensional_entropy_lies_between_the_bounds():
    """H(q) of a 1-D mixture by scipy quad (independent of the package) against both bounds."""
    for seed in range(4):
        mu, lv = _field(6, 1, seed, spread=1.0 + seed)
        sd = torch.exp(0.5 * lv[:, 0]).tolist()
        m = mu[:, 0].tolist()

        def q(x):
            return sum(math.exp(-0.5 * ((x - a) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for a, s in zip(m, sd)) / 6

        lo_x, hi_x = min(m) - 12 * max(sd), max(m) + 12 * max(sd)
        H = -integrate.quad(lambda x: q(x) * math.log(max(q(x), 1e-300)), lo_x, hi_x, limit=400, points=m)[0]
        lower, upper = pairwise_entropy_bounds(mu, lv)
        assert lower - 1e-9 <= H <= upper + 1e-9, (seed, lower, H, upper)


def test_joint_entropy_lies_between_the_bounds_within_monte_carlo_error():
    mu, lv = _field(300, 4, 5)
    h, se = neg_entropy_mc(mu, lv, 64, torch.Generator().manual_seed(0))
    lower, upper = pairwise_entropy_bounds(mu, lv)
    z = 3.9  # two-sided false-alarm rate 1e-4
    assert lower - z * se <= -h <= upper + z * se


def test_bounds_pinch_for_well_separated_components():
    g = torch.Generator().manual_seed(0)
    mu = 1e4 * torch.randn(50, 3, generator=g, dtype=F64)  # pairwise distances ~1e4 sd
    lv = torch.rand(50, 3, generator=g, dtype=F64) - 0.5
    got = pairwise_information(mu, lv)
    assert got["lower"] == pytest.approx(got["upper"], rel=1e-6)
    assert got["upper"] == pytest.approx(math.log(50), rel=1e-6)
    ref = exact_references(mu, lv, samples=4)
    for q in ("mi", "kl_agg"):
        assert ref[q]["upper"] - ref[q]["lower"] <= 1e-6 * (1 + abs(ref[q]["value"])), q


def test_single_component_and_identical_fields_have_zero_width_brackets():
    mu = torch.tensor([[0.3, -1.2]], dtype=F64)
    lv = torch.tensor([[-0.4, 0.8]], dtype=F64)
    assert pairwise_information(mu, lv) == {"lower": 0.0, "upper": 0.0, "lower_method": "bhattacharyya",
                                           "upper_method": "kl"}
    ref = exact_references(mu.expand(20, 2), lv.expand(20, 2))
    for q in ("mi", "kl_agg", "tc", "avg_kl"):  # up to the 1e-12 rounding slack of the bounds that use tc >= 0
        assert ref[q]["lower"] == pytest.approx(ref[q]["value"], abs=1e-11)
        assert ref[q]["upper"] == pytest.approx(ref[q]["value"], abs=1e-11)


def test_moment_bound_is_exact_for_a_single_gaussian_and_below_kl_agg_everywhere():
    mu = torch.tensor([[0.3, -1.2, 2.0]], dtype=F64)
    lv = torch.tensor([[-0.4, 0.8, -3.0]], dtype=F64)
    assert float(moment_kl(mu, lv)) == pytest.approx(float(kl_to_prior(mu, lv)[0]), rel=1e-14)
    for name in SCENARIOS:
        fld = _scenario(name)
        ref = exact_references(fld.mu, fld.logvar, samples=16)
        bound = float(moment_kl(fld.mu, fld.logvar))
        assert bound <= ref["kl_agg"]["value"] + 4 * ref["kl_agg"]["se"] + 1e-12, name
        assert ref["kl_agg"]["lower"] >= bound - 1e-9 * (1 + abs(bound)), name  # the bracket uses it


def _scenario(name, separation=0.5):
    real = SCENARIOS[name].real  # trained fields keep their own D
    return make_scenario(name, N=150 if real else 120, D=None if real else 3,
                         separation=separation)


@pytest.mark.parametrize("separation", [0.1, 0.5, 0.9])
def test_every_reference_lies_in_its_bracket_on_every_scenario(separation):
    for name in SCENARIOS:
        if SCENARIOS[name].real and separation != 0.5:
            continue  # vae-digits ships its field at 0.5 only; others train first (seconds each)
        fld = _scenario(name, separation)
        ref = exact_references(fld.mu, fld.logvar, samples=16)  # raises BracketError otherwise
        for q in QUANTITIES:
            e = ref[q]
            assert e["lower"] <= e["upper"], (name, q)
            assert e["lower"] - 4 * e["se"] - 1e-8 <= e["value"] <= e["upper"] + 4 * e["se"] + 1e-8, (name, q, e)
        assert ref["mi"]["lower"] >= 0 and ref["mi"]["upper"] <= math.log(fld.N) + 1e-12
        assert ref["tc"]["lower"] >= 0 and ref["kl_agg"]["upper"] <= ref["avg_kl"]["value"] + 1e-12
        # the bounds are consistent with the identities: mi + kl_agg = avg_kl at each end
        assert ref["mi"]["lower"] + ref["kl_agg"]["upper"] == pytest.approx(ref["avg_kl"]["value"], abs=1e-9)


def _result(value, se, lower, upper, q="kl_agg"):
    entry = {"value": value, "se": se, "method": "mc", "lower": lower, "upper": upper, "lower_by": "moment",
             "upper_by": "pairwise_bhattacharyya"}
    return {"avg_kl": {"value": 2.0, "se": 0.0, "lower": 2.0, "upper": 2.0}, q: entry, "quadrature_error": 0.0}


def test_a_reference_outside_its_bracket_is_a_loud_error():
    check_brackets(_result(0.5, 0.01, 0.52, 0.9), quantities=("kl_agg",))  # 2 se below: allowed
    with pytest.raises(BracketError, match=r"kl_agg = 0\.5 \(se 0\.01, mc\) lies outside its certified bracket "
                                           r"\[0\.6, 0\.9\].*by 0\.1 \(10\.0 se"):
        check_brackets(_result(0.5, 0.01, 0.6, 0.9), quantities=("kl_agg",))
    with pytest.raises(BracketError, match=r"mi = 1\.5 \(se 0, mc\).*\[0, 1\].*se 0"):
        check_brackets(_result(1.5, 0.0, 0.0, 1.0, q="mi"), quantities=("mi",))


def test_exact_references_raises_when_a_bound_contradicts_the_reference(monkeypatch):
    real = api.certified_brackets

    def wrong(*args, **kwargs):
        out = real(*args, **kwargs)
        out["mi"] = dict(out["mi"], lower=out["mi"]["upper"] + 1.0, upper=out["mi"]["upper"] + 2.0)
        return out

    monkeypatch.setattr(api, "certified_brackets", wrong)
    mu, lv = _field(40, 3, 6)
    with pytest.raises(BracketError, match=r"REFERENCE OUTSIDE ITS CERTIFIED BRACKET.*\bmi = "):
        exact_references(mu, lv)
    ref = exact_references(mu, lv, brackets=False)  # skipped on request: no bounds, no check
    assert "lower" not in ref["mi"]


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(4, 2), torch.zeros(4, 3)), "mu and logvar must both be"),
    ((torch.zeros(4), torch.zeros(4)), "mu and logvar must both be"),
    ((torch.full((4, 2), math.nan), torch.zeros(4, 2)), "mu holds non-finite"),
    ((torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3)), "log_weights must be"),
])
def test_bad_input_is_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        pairwise_information(*args)


def test_kl_form_is_cancellation_free_far_from_the_origin():
    """Shifting every mean by 1e6 sd changes nothing (the kernel's direct form, centred inputs)."""
    mu, lv = _field(30, 2, 7)
    a = pairwise_information(mu, lv)
    b = pairwise_information(mu + 1e6, lv)
    assert b["upper"] == pytest.approx(a["upper"], abs=1e-9) and b["lower"] == pytest.approx(a["lower"], abs=1e-9)
