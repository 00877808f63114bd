"""Metrics of the benchmark: formulas against plain numpy, standard errors against simulation."""
import math

import numpy as np
import pytest
from scipy import stats

from estimators.bench.metrics import reference_se_ok, sign_consistent, summarize, theory_columns


def test_summary_matches_numpy_formulas():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.5, size=37) - 1.0
    lo, hi = x - rng.uniform(0, 2, 37), x + rng.uniform(0, 2, 37)
    r = 2.25
    m = summarize(x, r, 0.01, lower=lo, upper=hi, nonnegative=True)
    R = x.size
    assert m["mean"] == pytest.approx(np.mean(x), rel=1e-14)
    assert m["bias"] == pytest.approx(np.mean(x) - r, rel=1e-13)
    assert m["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-13)
    assert m["bias_se"] == pytest.approx(np.std(x, ddof=1) / math.sqrt(R), rel=1e-13)
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((x - r) ** 2)), rel=1e-13)
    assert m["rel_bias"] == pytest.approx((np.mean(x) - r) / r, rel=1e-13)
    assert m["frac_negative"] == pytest.approx(np.mean(x < 0))
    assert m["frac_negative_se"] == pytest.approx(math.sqrt(np.mean(x < 0) * np.mean(x >= 0) / R))
    cover = np.mean((lo <= r) & (r <= hi))
    assert m["coverage"] == pytest.approx(cover)
    # sd_se: the delta method with the 4th central moment, written out independently.
    s2 = np.var(x, ddof=1)
    m4 = np.mean((x - x.mean()) ** 4)
    assert m["sd_se"] == pytest.approx(math.sqrt((m4 - s2**2 * (R - 3) / (R - 1)) / R) / (2 * math.sqrt(s2)), rel=1e-12)
    e2 = (x - r) ** 2
    assert m["rmse_se"] == pytest.approx(np.std(e2, ddof=1) / math.sqrt(R) / (2 * math.sqrt(e2.mean())), rel=1e-12)
    assert m["reference_se_ok"] is (10 * 0.01 <= m["bias_se"])


def test_undefined_entries_are_nan():
    m = summarize([1.0, 2.0, 3.0], 0.0)
    assert math.isnan(m["rel_bias"]) and math.isnan(m["frac_negative"]) and math.isnan(m["coverage"])
    one = summarize([1.0], 0.5)
    assert math.isnan(one["sd"]) and math.isnan(one["bias_se"]) and one["rmse"] == 0.5
    with pytest.raises(ValueError, match="at least one"):
        summarize([], 0.0)
    with pytest.raises(ValueError, match="shape"):
        summarize([1.0, 2.0], 0.0, lower=[0.0], upper=[1.0, 2.0])


def test_standard_errors_match_the_spread_over_experiments():
    # 3000 independent experiments of R = 200 skewed replicates: the mean reported se of each
    # metric must equal the sd of that metric across experiments. The sd over M experiments has
    # relative se ~ 1/sqrt(2(M-1)) (0.013); z = 4 of it, plus the O(1/R) delta-method bias.
    # Replicates are skewed but not heavy-tailed (gamma, shape 4: excess kurtosis 1.5), like the
    # batch means the runner feeds in; with kurtosis 9 (exponential) sd_se is ~9% low at R = 200.
    rng = np.random.default_rng(1)
    M, R, r = 3000, 200, 1.0
    x = rng.gamma(4.0, 0.5, size=(M, R)) - 0.7  # mean 1.3, sd 1
    rows = [summarize(xi, r) for xi in x]
    tol = 4 / math.sqrt(2 * (M - 1)) + 2.0 / R
    for metric, se in (("mean", "bias_se"), ("sd", "sd_se"), ("rmse", "rmse_se")):
        values = np.array([m[metric] for m in rows])
        ses = np.array([m[se] for m in rows])
        assert abs(ses.mean() / values.std(ddof=1) - 1) < tol, metric


def test_coverage_of_normal_terms_is_the_t_probability():
    # Per replicate: B normal terms with mean r; interval mean +- 1.96 s / sqrt(B). Its coverage is
    # exactly P(|t_{B-1}| <= 1.96); the count over R replicates is binomial.
    rng = np.random.default_rng(2)
    R, B, r = 4000, 8, 0.7
    terms = rng.normal(r, 2.0, size=(R, B))
    half = 1.959963984540054 * terms.std(axis=1, ddof=1) / math.sqrt(B)
    m = summarize(terms.mean(1), r, lower=terms.mean(1) - half, upper=terms.mean(1) + half)
    p = 1 - 2 * stats.t.sf(1.959963984540054, B - 1)
    assert abs(m["coverage"] - p) < 4 * math.sqrt(p * (1 - p) / R)
    assert m["coverage_se"] == pytest.approx(math.sqrt(m["coverage"] * (1 - m["coverage"]) / R))


def test_theory_columns():
    N, D, B = 1000, 5, 64
    t = {q: theory_columns(q, N, D, B, unbiased_inside=True, estimator="mss")
         for q in ("mi", "kl_agg", "tc", "dimwise_kl")}
    # mws - naive = mi +log N, kl_agg -log N, tc +(D-1) log N, dimwise_kl -D log N (docs/maths.md).
    assert t["mi"]["mws_offset"] == pytest.approx(math.log(N))
    assert t["kl_agg"]["mws_offset"] == pytest.approx(-math.log(N))
    assert t["tc"]["mws_offset"] == pytest.approx((D - 1) * math.log(N))
    assert t["dimwise_kl"]["mws_offset"] == pytest.approx(-D * math.log(N))
    # the offsets are consistent with the identity kl_agg = tc + dimwise_kl
    assert t["kl_agg"]["mws_offset"] == pytest.approx(t["tc"]["mws_offset"] + t["dimwise_kl"]["mws_offset"])
    assert {q: v["bias_sign_theory"] for q, v in t.items()} == {"mi": "+", "kl_agg": "-", "tc": "", "dimwise_kl": "-"}
    assert t["mi"]["log_N"] == pytest.approx(math.log(N)) and t["mi"]["log_B"] == pytest.approx(math.log(B))
    assert theory_columns("mi", N, D, B, unbiased_inside=False, estimator="naive")["bias_sign_theory"] == ""
    assert theory_columns("mi", N, D, B, unbiased_inside=True, estimator="exact")["bias_sign_theory"] == "0"
    assert theory_columns("log_px", 1, D, 0, unbiased_inside=False, estimator="iwae")["bias_sign_theory"] == "-"
    assert math.isnan(theory_columns("log_px", 1, D, 0, unbiased_inside=False, estimator="iwae")["log_B"])
    assert math.isnan(theory_columns("log_px", 1, D, None, unbiased_inside=False, estimator="iwae")["log_B"])


def test_sign_checks_and_reference_rule():
    assert sign_consistent("+", -0.3, 0.1) is True and sign_consistent("+", -0.5, 0.1) is False
    assert sign_consistent("-", 0.5, 0.1) is False and sign_consistent("-", 0.39, 0.1) is True
    assert sign_consistent("0", 0.41, 0.1) is False and sign_consistent("0", 0.1, 0.0, 0.03) is True
    assert sign_consistent("", 5.0, 0.1) is None
    assert reference_se_ok(0.0, 0.0) and reference_se_ok(0.01, 0.1) and not reference_se_ok(0.011, 0.1)
    assert not reference_se_ok(0.01, math.nan)


def test_sign_and_coverage_counts_are_undefined_at_rounding_level():
    # an exactly computed 0 (tc of a product grid by the exact estimator): estimates are +-1e-16, so the
    # fraction below 0 and the interval hits would count rounding errors, which differ between machines
    x = np.array([1e-16, -2e-16, 3e-17, -1e-16])
    out = summarize(x, 0.0, lower=x - 1e-16, upper=x + 1e-16, nonnegative=True)
    assert all(np.isnan(out[c]) for c in ("frac_negative", "frac_negative_se", "coverage", "coverage_se"))
    real = summarize(x + np.array([0.5, -0.5, 0.25, -0.25]), 0.0, lower=x - 1, upper=x + 1, nonnegative=True)
    assert real["frac_negative"] == 0.5 and real["coverage"] == 1.0


def test_the_log_px_sign_comes_from_the_registry_flag(monkeypatch):
    from types import SimpleNamespace

    from estimators.bench.metrics import is_lower_bound, theory_columns
    from estimators.log_px import LOG_PX_ESTIMATORS

    def sign(name):
        return theory_columns("log_px", 1, 2, None, unbiased_inside=False, estimator=name)["bias_sign_theory"]

    assert sign("iwae") == "-" and sign("iwae_jackknife1") == "" and is_lower_bound("iwae")
    # an estimator registered as a lower bound gets the sign, whatever its name; one flagged not, none
    monkeypatch.setitem(LOG_PX_ESTIMATORS, "my_bound", SimpleNamespace(name="my_bound", lower_bound=True))
    monkeypatch.setitem(LOG_PX_ESTIMATORS, "iwae", SimpleNamespace(name="iwae", lower_bound=False))
    assert sign("my_bound") == "-" and sign("iwae") == ""
