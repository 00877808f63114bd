"""The committed standard report (results/standard.csv) shows what the benchmark claims.

`bash scripts/main.sh` recomputes it from scratch and checks that it reproduces; these tests pin
the report's headline facts.

Statistical checks. Every claim below is a test on Monte Carlo estimates, with the standard error
of each cell including the reference's: se = hypot(bias_se, reference_se) for a bias, and
hypot(bias_se_a, bias_se_b, 2 reference_se) for a difference of two |bias| against one reference.
A claim is either "theory holds" (no cell contradicts it beyond t se) or "an effect is real"
(every cell shows it beyond t se). bias_se is estimated from R replicates, so t is the Student-t
quantile with R - 1 degrees of freedom at level ALPHA / M, per side, where M counts every cell
checked in this file (Bonferroni): the whole file raises a false alarm -- fails although theory
holds, or passes an effect that is only noise -- with probability at most ALPHA (replicate means
being about normal). No fraction of cells is allowed to miss.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from estimators import make_scenario
from estimators.bench.metrics import ROUNDING

CSV = Path(__file__).resolve().parents[2] / "results" / "standard.csv"
ALPHA = 1e-4  # family-wise false-alarm rate of the whole file
SEPARATED = 0.9  # the well-separated field of the standard preset
CELL = ["scenario", "separation", "batch_size"]
DIRECT_FAMILIES = ["moment", "density_ratio"]  # estimators.direct: not estimators of log q(z)


@pytest.fixture(scope="module")
def df():
    if not CSV.exists():
        pytest.skip("results/standard.csv not generated")
    return pd.read_csv(CSV)


def _pivot(df, quantity, value):
    d = df[(df.quantity == quantity) & (df.k == 0)]  # the estimators without k (iwae has its own rows)
    return d.pivot_table(index=CELL, columns="estimator", values=value)


def _claim(stat, se, replicates, sides, what, reference=0.0):
    r"""One statistical claim over cells: ``stat > -(t se + floor)`` (sides 2: |stat| < t se + floor) for
    theory, ``stat > t se`` for an effect. ``floor`` is float rounding, ROUNDING (1 + |reference|) as in
    the metrics: an exactly computed 0 has estimates of 1e-15, and se 1e-17, from rounding alone."""
    out = pd.DataFrame({"stat": np.asarray(stat, float), "se": np.asarray(se, float),
                        "replicates": np.asarray(replicates, float),
                        "floor": ROUNDING * (1.0 + np.abs(np.asarray(reference, float)))},
                       index=getattr(stat, "index", None))
    out.attrs.update(sides=sides, what=what)
    return out


def _claims(df) -> dict[str, pd.DataFrame]:
    r"""Every statistical claim of this file, by name."""
    d = df[df.quantity != "log_px"]
    out = {}
    # theory: the full-N estimator is unbiased (two-sided); an unbiased inner sum overestimates mi (Jensen)
    exact = d[d.estimator == "exact"]
    out["exact is unbiased"] = _claim(exact.bias, np.hypot(exact.bias_se, exact.reference_se), exact.replicates,
                                      2, "theory", exact.reference)
    inside = d[d.estimator.isin(["mss", "stratified"]) & (d.quantity == "mi")]
    out["mi of an unbiased inner sum is biased up"] = _claim(
        inside.bias, np.hypot(inside.bias_se, inside.reference_se), inside.replicates, 1, "theory", inside.reference)
    # effects: the stratified estimators beat naive on mi when well separated, and mss beats mws everywhere
    bias, se, ref_se, reps = (_pivot(df, "mi", v) for v in ("bias", "bias_se", "reference_se", "replicates"))
    sep = {name: frame.xs(SEPARATED, level="separation") for name, frame in
           (("bias", bias), ("se", se), ("ref_se", ref_se), ("reps", reps))}
    for est in ("mss", "stratified"):
        out[f"{est} beats naive on mi when separated"] = _claim(
            sep["bias"]["naive"].abs() - sep["bias"][est].abs(),
            np.sqrt(sep["se"][est] ** 2 + sep["se"]["naive"] ** 2 + (2 * sep["ref_se"][est]) ** 2),
            np.minimum(sep["reps"][est], sep["reps"]["naive"]), 1, "effect")
    out["mss beats mws on mi"] = _claim(
        bias["mws"].abs() - bias["mss"].abs(), np.sqrt(se["mws"] ** 2 + se["mss"] ** 2 + (2 * ref_se["mss"]) ** 2),
        np.minimum(reps["mws"], reps["mss"]), 1, "effect")
    # log p(x): L_1 (the ELBO) is never biased high; a mismatched encoder is clearly low at k = 1 and
    # much less so at the largest k
    px = df[df.quantity == "log_px"]
    iwae = px[(px.estimator == "iwae") & ~px.scenario.str.endswith("-exact")]
    first = iwae.sort_values("k").groupby("scenario").first()
    last = iwae.sort_values("k").groupby("scenario").last()
    first_se = np.hypot(first.bias_se, first.reference_se)
    out["the ELBO is not biased high"] = _claim(-first.bias, first_se, first.replicates, 1, "theory")
    mism = first.index.str.endswith("-mismatched")
    out["a mismatched ELBO is biased low"] = _claim(-first.bias[mism], first_se[mism], first.replicates[mism], 1,
                                                    "effect")
    out["the iwae bias shrinks with k"] = _claim(
        (first.bias.abs() - last.bias.abs())[mism],
        np.sqrt(first.bias_se ** 2 + last.bias_se ** 2 + (2 * first.reference_se) ** 2)[mism],
        np.minimum(first.replicates, last.replicates)[mism], 1, "effect")
    return out


@pytest.fixture(scope="module")
def claims(df):
    return _claims(df)


def _check(claims, name):
    r"""Assert one claim on every one of its cells, at the file's Bonferroni level."""
    c = claims[name]
    cells = sum(len(x) for x in claims.values())
    assert len(c) > 0, name
    t = pd.Series(stats.t.isf(ALPHA / cells / c.attrs["sides"], c["replicates"] - 1), index=c.index)
    if c.attrs["sides"] == 2:
        ok = c["stat"].abs() < t * c["se"] + c["floor"]
    elif c.attrs["what"] == "theory":
        ok = c["stat"] > -(t * c["se"] + c["floor"])
    else:
        ok = c["stat"] > t * c["se"]
    bad = c[~ok].assign(z=c["stat"] / c["se"], t=t[~ok])
    assert ok.all(), f"{name}: {len(bad)} of {len(c)} cells fail at level {ALPHA:g}/{cells}:\n{bad}"


def test_the_family_is_what_this_file_checks(claims):
    # M, the Bonferroni count: every cell of every claim (a change of the grid changes it)
    assert {name: len(c) for name, c in claims.items()} == {
        "exact is unbiased": 112, "mi of an unbiased inner sum is biased up": 56,
        "mss beats naive on mi when separated": 4, "stratified beats naive on mi when separated": 4,
        "mss beats mws on mi": 28, "the ELBO is not biased high": 6, "a mismatched ELBO is biased low": 3,
        "the iwae bias shrinks with k": 3}
    assert all((c["se"] > 0).all() and (c["replicates"] >= 2).all() for c in claims.values())


def test_every_cell_finished_with_a_precise_enough_reference(df):
    assert (df.status == "ok").all()
    direct = df.family.isin(DIRECT_FAMILIES)
    assert df[~direct].reference_se_ok.astype(str).eq("True").all()
    # the direct estimators vary less than the reference samples are planned for (plan.reference_samples);
    # where the 10x rule fails there, the bias is over 100 reference se from 0: its verdict stands
    d = df[direct]
    ok = d.reference_se_ok.astype(str).eq("True") | (d.bias.abs() >= 100 * d.reference_se)
    assert ok.all(), d[~ok]


def test_mws_minus_naive_is_the_published_constant(df):
    for quantity, offset in (("mi", lambda N, D: math.log(N)), ("tc", lambda N, D: (D - 1) * math.log(N)),
                             ("kl_agg", lambda N, D: -math.log(N)), ("dimwise_kl", lambda N, D: -D * math.log(N))):
        d = df[(df.quantity == quantity) & ~df.family.isin(DIRECT_FAMILIES)]  # the direct ones have their own B
        mean = d.pivot_table(index=CELL, columns="estimator", values="mean")
        size = d.groupby(CELL)[["N", "D"]].first()
        want = np.array([offset(N, D) for N, D in zip(size.N, size.D)])
        np.testing.assert_allclose((mean["mws"] - mean["naive"]).to_numpy(), want, atol=1e-9)


def test_tc_no_constant_is_mws_tc_minus_its_dropped_constant(df):
    d = df[(df.quantity == "tc") & ~df.family.isin(DIRECT_FAMILIES)]
    mean = d.pivot_table(index=CELL, columns="estimator", values="mean")
    size = d.groupby(CELL)[["N", "D"]].first()
    B = mean.index.get_level_values("batch_size").to_numpy()
    want = (size.D.to_numpy() - 1) * np.log(size.N.to_numpy() * B)
    np.testing.assert_allclose((mean["mws"] - mean["tc_no_constant"]).to_numpy(), want, atol=1e-9)


def test_references_satisfy_both_identities(df):
    ref = df[df.quantity != "log_px"].pivot_table(index=["scenario", "separation"], columns="quantity",
                                                  values="reference")
    np.testing.assert_allclose(ref.kl_agg, ref.tc + ref.dimwise_kl, atol=1e-9)
    for (scenario, separation), row in ref.iterrows():
        if scenario == "vae-digits":
            continue  # its avg_kl needs the trained model; covered by the scenario tests
        meta = df[(df.scenario == scenario) & (df.separation == separation)].iloc[0]
        field = make_scenario(scenario, N=int(meta.N), D=int(meta.D), separation=float(separation),
                              seed=int(meta.scenario_seed))
        avg_kl = float(0.5 * (field.mu ** 2 + field.logvar.exp() - 1 - field.logvar).sum(1).mean())
        assert row.mi + row.kl_agg == pytest.approx(avg_kl, abs=1e-9)


def test_stratified_estimators_beat_naive_and_mws_on_mi_when_well_separated(claims):
    _check(claims, "mss beats naive on mi when separated")
    _check(claims, "stratified beats naive on mi when separated")
    _check(claims, "mss beats mws on mi")


def test_unbiased_estimators_are_unbiased_and_jensen_signs_hold(claims):
    _check(claims, "exact is unbiased")
    _check(claims, "mi of an unbiased inner sum is biased up")  # E log q^ <= log q: mi is overestimated


def test_log_px_with_the_exact_posterior_is_exact_and_iwae_bias_falls_with_k(df, claims):
    d = df[df.quantity == "log_px"]
    exact = d[d.scenario.str.endswith("-exact")]
    assert (exact.bias.abs() < 1e-9).all() and (exact.sd < 1e-9).all()
    _check(claims, "the ELBO is not biased high")  # L_1 is the ELBO: never biased high
    _check(claims, "a mismatched ELBO is biased low")  # a large KL gap: clearly low at k = 1
    _check(claims, "the iwae bias shrinks with k")  # ... and much less at k = 1024


def test_every_committed_reference_lies_inside_its_certified_bracket(df):
    """Every aggregate row carries its reference's bracket; the reference lies inside it within 4 se (plus float
    rounding), and the bracket is the same on every row of a field and quantity."""
    d = df[df.quantity != "log_px"]
    assert d.reference_lower.notna().all() and d.reference_upper.notna().all()
    slack = 4 * d.reference_se + 1e-8 * (1 + d.reference.abs())
    inside = (d.reference_lower - slack <= d.reference) & (d.reference <= d.reference_upper + slack)
    assert inside.all(), d[~inside][["scenario", "quantity", "reference", "reference_se", "reference_lower",
                                     "reference_upper"]].drop_duplicates()
    assert (d.reference_lower <= d.reference_upper).all()
    per_cell = d.groupby(["scenario", "separation", "quantity"])[["reference_lower", "reference_upper"]].nunique()
    assert (per_cell == 1).all().all()
    assert (d[d.quantity == "mi"].reference_lower >= 0).all() and (d[d.quantity == "tc"].reference_lower >= 0).all()
    assert (d[d.quantity == "mi"].reference_upper <= np.log(d[d.quantity == "mi"].N) + 1e-12).all()


def test_the_direct_estimators_are_in_the_committed_report(df):
    direct = df[df.family.isin(DIRECT_FAMILIES)]
    assert set(direct.estimator) == {"density_ratio", "gaussian_tc_means", "moment_kl", "moment_dimwise_kl",
                                     "moment_tc"}
    assert set(direct[direct.estimator == "moment_kl"].quantity) == {"kl_agg"}
    assert set(direct[direct.estimator == "density_ratio"].quantity) == {"tc"}
