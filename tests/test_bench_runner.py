"""The benchmark runner: reproducible cells, resume after interruption, failures recorded, and
results that agree with what theory pins (exact estimator unbiased, mws - naive constant)."""
import math

import numpy as np
import pandas as pd
import pytest

import estimators  # noqa: F401  registers the estimators
from estimators.bench import runner
from estimators.bench.grid import AGGREGATE_QUANTITIES, Preset, ScenarioSpec
from estimators.bench.store import COLUMNS, ReferenceCache, read_results
from estimators.scenarios import SCENARIOS, make_scenario

TIMING = ["time_per_call_s"]  # the only columns allowed to differ between runs

TINY = Preset(
    name="tiny",
    scenarios=(ScenarioSpec("gaussian", N=40, D=3, separation=0.6),
               ScenarioSpec("clustered", N=40, D=3, separation=0.7)),
    batch_sizes=(4, 12),
    k=(3,),
    replicates=5,
    quantities=AGGREGATE_QUANTITIES,
    reference_samples=64,
)
ESTIMATORS = ["naive", "mws", "mss", "iwae", "exact"]


def _run(tmp_path, name="t", preset=TINY, **kw):
    kw.setdefault("estimators", ESTIMATORS)
    plan = runner.plan(preset, **kw)
    path = runner.execute(plan, tmp_path, name, progress=False, log=lambda m: None)
    return read_results(path)


def _key(df):
    return df.set_index(["scenario", "quantity", "estimator", "batch_size", "k"]).sort_index()


def _same(a, b):
    a, b = _key(a).drop(columns=TIMING), _key(b).drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The whole TINY grid, run once for the tests that compare against it."""
    return _run(tmp_path_factory.mktemp("full"))


def test_csv_has_the_spec_columns_and_one_row_per_cell(full):
    df = full
    spec = ("scenario, quantity, estimator, N, D, batch_size, k, replicates, reference, reference_se, "
            "reference_method, mean, bias, bias_se, sd, rmse, time_per_call_s").split(", ")
    assert list(df.columns) == COLUMNS and set(spec) <= set(df.columns)
    n_units = 2 * 2 * len(ESTIMATORS)  # scenarios x batch sizes x estimators (iwae has one k)
    assert len(df) == 4 * n_units and (df["status"] == "ok").all()
    assert not df.duplicated(["scenario", "quantity", "estimator", "batch_size", "k"]).any()
    assert (df.loc[df.estimator == "iwae", "k"] == 3).all() and (df.loc[df.estimator != "iwae", "k"] == 0).all()
    assert df[["mean", "bias", "bias_se", "sd", "rmse", "time_per_call_s"]].notna().all().all()


def _cells_of(full, df):
    return full.merge(df[["scenario", "quantity", "estimator", "batch_size", "k"]])


def test_a_cell_is_the_same_alone_in_a_grid_and_in_any_order(tmp_path, full):
    alone = _run(tmp_path / "alone", preset=TINY.with_(batch_sizes=(12,), scenarios=TINY.scenarios[1:]),
                 estimators=["iwae"], quantities=["tc", "mi"])
    assert len(alone) == 2
    _same(_cells_of(full, alone), alone)
    reordered = _run(tmp_path / "reordered", preset=TINY.with_(scenarios=TINY.scenarios[::-1], batch_sizes=(12, 4)),
                     estimators=["exact", "mws", "naive"])
    assert len(reordered) == 2 * 2 * 3 * 4
    _same(_cells_of(full, reordered), reordered)


def test_interrupted_run_resumes_with_the_same_numbers(tmp_path, monkeypatch, full):
    real = runner.run_unit
    calls = []

    def flaky(unit, plan, refs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the fourth unit
        calls.append(unit)
        return real(unit, plan, refs)

    monkeypatch.setattr(runner, "run_unit", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "resumed")
    partial = read_results(tmp_path / "resumed" / "t.csv")
    assert len(partial) == 3 * 4 and (partial["status"] == "ok").all()  # three finished units, nothing else
    assert not list((tmp_path / "resumed").glob("*.tmp"))
    monkeypatch.setattr(runner, "run_unit", real)
    seen = []
    monkeypatch.setattr(runner, "run_unit", lambda u, p, r: seen.append(u) or real(u, p, r))
    resumed = _run(tmp_path / "resumed")
    assert len(seen) == 2 * 2 * len(ESTIMATORS) - 3  # only the unfinished units ran
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), full.drop(columns=TIMING), check_exact=True)
    seen.clear()
    _run(tmp_path / "resumed")
    assert seen == []  # a finished run has nothing left to do


def test_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real = runner._decompose_call

    def broken(fld, index, z, unit, info, g):
        if unit.estimator == "mss" and unit.batch_size == 12:
            raise RuntimeError("boom\nsecond line")
        return real(fld, index, z, unit, info, g)

    monkeypatch.setattr(runner, "_decompose_call", broken)
    df = _run(tmp_path)
    bad = df[df["status"] == "error"]
    assert len(bad) == 2 * 4 and set(bad["estimator"]) == {"mss"} and set(bad["batch_size"]) == {12}
    assert (bad["error"] == "RuntimeError: boom second line").all() and bad["bias"].isna().all()
    assert (df.loc[df["status"] == "ok", "bias"].notna()).all() and (df["status"] == "ok").sum() == len(df) - 8
    # the error rows are retried on the next run, and then succeed
    monkeypatch.setattr(runner, "_decompose_call", real)
    again = _run(tmp_path)
    assert (again["status"] == "ok").all() and len(again) == len(df)


def test_results_agree_with_theory(tmp_path):
    # Larger R so the checks have power; still tiny. mws - naive is SPEC's per-sample constant, and
    # with common random numbers both see the same batches: exact up to rounding, replicate by replicate.
    preset = TINY.with_(replicates=40, batch_sizes=(8,), reference_samples=512)
    df = _run(tmp_path, preset=preset)
    for (scen, q), g in df.groupby(["scenario", "quantity"]):
        g = g.set_index("estimator")
        assert g.loc["mws", "mean"] - g.loc["naive", "mean"] == pytest.approx(g.loc["mws", "mws_offset"], abs=1e-9)
        assert g.loc["mws", "sd"] == pytest.approx(g.loc["naive", "sd"], rel=1e-6)
        ex = g.loc["exact"]  # the full-N estimator is unbiased: |bias| < 4 se (se includes the reference's)
        assert abs(ex["bias"]) < 4 * math.hypot(ex["bias_se"], ex["reference_se"]), (scen, q)
    assert (df["bias_sign_ok"].dropna().astype(bool)).all()
    # Jensen: an unbiased inner sum over-estimates mi and under-estimates kl_agg on average (observed at 4 se)
    mss = df[df.estimator == "mss"].set_index(["scenario", "quantity"])
    assert (mss.xs("mi", level="quantity")["bias_sign_theory"] == "+").all()


def test_every_scenario_reference_satisfies_the_identities(tmp_path):
    cache = ReferenceCache(tmp_path)
    settings = {"samples": 16, "quadrature_nodes": 16, "seed": 0}
    for name in SCENARIOS:
        N = 60 if name != "vae-digits" else 200
        fld = make_scenario(name, N=N, D=3 if name != "vae-digits" else None, separation=0.5)
        ref = runner.compute_reference(fld, settings, cache)
        q = {k: ref[k]["value"] for k in ("avg_kl", "mi", "kl_agg", "tc", "dimwise_kl")}
        assert q["avg_kl"] == pytest.approx(q["mi"] + q["kl_agg"], abs=1e-9), name
        assert q["kl_agg"] == pytest.approx(q["tc"] + q["dimwise_kl"], abs=1e-9), name
        assert 0 <= q["mi"] <= math.log(N) + 4 * ref["mi"]["se"], name
        assert runner.compute_reference(fld, settings, cache) == ref  # cached on disk, read back as written


def test_reference_cache_is_keyed_by_field_and_settings(tmp_path, monkeypatch):
    cache = ReferenceCache(tmp_path)
    fld = make_scenario("gaussian", N=30, D=3)
    settings = {"samples": 8, "quadrature_nodes": 8, "seed": 0}
    ref = runner.compute_reference(fld, settings, cache)
    import estimators.references as refs

    monkeypatch.setattr(refs, "exact_references", lambda *a, **k: pytest.fail("recomputed a cached reference"))
    assert runner.compute_reference(fld, settings, cache) == ref
    monkeypatch.undo()
    calls = []
    real = refs.exact_references
    monkeypatch.setattr(refs, "exact_references", lambda *a, **k: calls.append(k) or real(*a, **k))
    runner.compute_reference(fld, dict(settings, samples=9), cache)
    other = make_scenario("gaussian", N=30, D=3, seed=1)
    runner.compute_reference(other, settings, cache)
    assert len(calls) == 2


def test_float32_run(tmp_path):
    df = _run(tmp_path, preset=TINY.with_(dtype="float32", scenarios=TINY.scenarios[:1], batch_sizes=(12,)),
              estimators=["mss", "exact"])
    assert (df["status"] == "ok").all() and (df["dtype"] == "float32").all()
    ex = df[df.estimator == "exact"]
    assert (ex["bias"].abs() < 4 * np.hypot(ex["bias_se"], ex["reference_se"])).all()


def test_plan_rejects_bad_grids():
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'; known scenarios: .*gaussian"):
        runner.plan(TINY, scenarios=["nope"])
    with pytest.raises(ValueError, match=r"unknown estimator 'mss2'; known estimators: .*stratified"):
        runner.plan(TINY, estimators=["mss2"])
    with pytest.raises(ValueError, match=r"unknown quantity 'kl'; known quantities: .*kl_agg"):
        runner.plan(TINY, quantities=["kl"])
    with pytest.raises(ValueError, match="batch size 41 is larger than N = 40"):
        runner.plan(TINY.with_(batch_sizes=(41,)), estimators=["exact"])
    with pytest.raises(ValueError, match="batch size 1 is too small for estimator 'mss'"):
        runner.plan(TINY.with_(batch_sizes=(1,)), estimators=["mss"])
    with pytest.raises(ValueError, match="replicates must be at least 2"):
        runner.plan(TINY.with_(replicates=1))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        runner.plan(TINY.with_(k=(0,)), estimators=["iwae"])
    assert len(runner.plan(TINY.with_(batch_sizes=(1,)), estimators=["exact", "naive"]).units) == 4


def test_log_px_cells(tmp_path):
    from estimators.linear_gaussian import LOG_PX_TASKS, log_px_reference

    exact_task = next(t for t in LOG_PX_TASKS if t.endswith("-exact"))
    other = next(t for t in LOG_PX_TASKS if t.endswith("-mismatched"))
    preset = TINY.with_(log_px_k=(1, 2, 8), log_px_replicates=200, quantities=("log_px",), jackknife2_max_k=2)
    df = _run(tmp_path, preset=preset, scenarios=[exact_task, other], estimators=None)
    assert (df["status"] == "ok").all() and (df["quantity"] == "log_px").all() and (df["batch_size"] == 0).all()
    # jackknife order j needs k >= j + 1; the order-2 jackknife is capped at k = 2 here
    ks = df[df.scenario == other].groupby("estimator")["k"].apply(tuple).to_dict()
    assert ks == {"iwae": (1, 2, 8), "iwae_jackknife1": (2, 8)}
    # the exact posterior makes every weight equal to p(x): no bias, no variance (closed form)
    ex = df[df.scenario == exact_task]
    assert np.allclose(ex["bias"], 0.0, atol=1e-9) and np.allclose(ex["sd"], 0.0, atol=1e-9)
    # a mismatched encoder: E L_1 = log p(x) - KL(q || p(z|x)) in closed form; L_k is below log p(x)
    ref = log_px_reference(other)
    one = df[(df.scenario == other) & (df.estimator == "iwae") & (df.k == 1)].iloc[0]
    assert abs(one["mean"] - (ref["value"] - ref["kl_gap"])) < 4 * one["bias_se"]
    iw = df[(df.scenario == other) & (df.estimator == "iwae")]
    assert (iw["bias_sign_theory"] == "-").all() and iw["bias_sign_ok"].astype(bool).all()
    assert iw["predicted_bias"].notna().all() and df[df.estimator != "iwae"]["predicted_bias"].isna().all()


def test_plan_overrides_size_and_separations():
    p = runner.plan(TINY, scenarios=["grid", "gaussian"], N=30, D=2, separations=[0.1, 0.9], estimators=["naive"])
    assert sorted(p.fields) == [("gaussian", 0.1), ("gaussian", 0.9), ("grid", 0.1), ("grid", 0.9)]
    assert {(f.N, f.D) for f in p.fields.values()} == {(30, 2)}
    assert not np.allclose(p.fields[("grid", 0.1)].logvar, p.fields[("grid", 0.9)].logvar)
    # vae-digits has at most 1797 points: a larger N is capped, not an error
    specs = runner._named_specs(TINY, ["vae-digits"], 5000, None, None)
    assert {s.N for s in specs} == {1797} and [s.separation for s in specs] == [0.6, 0.7]  # the preset's
