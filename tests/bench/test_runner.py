"""The run loop: reproducible cells, resume after interruption, failures recorded, and results that
agree with what theory pins (exact estimator unbiased, mws - naive constant, Jensen signs)."""
import math

import numpy as np
import pandas as pd
import pytest

from estimators.bench import runner, tasks
from estimators.bench.schema import COLUMN_NAMES
from estimators.bench.store import read_results
from tests.bench.helpers import ESTIMATORS, TIMING, TINY, assert_same_cells, cells_of, run_grid

@pytest.mark.slow
def test_csv_has_the_schema_columns_and_one_row_per_cell(full):
    df = full
    headline = ("scenario, quantity, estimator, N, D, batch_size, k, replicates, reference, reference_se, "
                "reference_method, reference_lower, reference_upper, mean, bias, bias_se, sd, rmse, time_per_call_s").split(", ")
    assert list(df.columns) == COLUMN_NAMES and COLUMN_NAMES[:len(headline)] == headline
    n_units = 2 * 2 * len(ESTIMATORS)  # scenarios x batch sizes x estimators (iwae has one k)
    assert len(df) == 4 * n_units and (df["status"] == "ok").all()
    assert not df.duplicated(["scenario", "quantity", "estimator", "batch_size", "k"]).any()
    assert (df.loc[df.estimator == "iwae", "k"] == 3).all() and (df.loc[df.estimator != "iwae", "k"] == 0).all()
    assert df[["mean", "bias", "bias_se", "sd", "rmse", "time_per_call_s"]].notna().all().all()


@pytest.mark.slow
def test_a_cell_is_the_same_alone_in_a_grid_and_in_any_order(tmp_path, full):
    alone = run_grid(tmp_path / "alone", preset=TINY.with_(batch_sizes=(12,), scenarios=TINY.scenarios[1:]),
                     estimators=["iwae"], quantities=["tc", "mi"])
    assert len(alone) == 2
    assert_same_cells(cells_of(full, alone), alone)
    reordered = run_grid(tmp_path / "reordered",
                         preset=TINY.with_(scenarios=TINY.scenarios[::-1], batch_sizes=(12, 4)),
                         estimators=["exact", "mws", "naive"])
    assert len(reordered) == 2 * 2 * 3 * 4
    assert_same_cells(cells_of(full, reordered), reordered)


@pytest.mark.slow
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
        run_grid(tmp_path / "resumed")
    partial = read_results(tmp_path / "resumed" / "t.csv")
    assert len(partial) == 3 * 4 and (partial["status"] == "ok").all()  # three finished units, nothing else
    assert [p.name for p in (tmp_path / "resumed").iterdir() if p.name != ".cache"] == ["t.csv"]  # no temporaries
    seen = []
    monkeypatch.setattr(runner, "run_unit", lambda u, p, r: seen.append(u) or real(u, p, r))
    resumed = run_grid(tmp_path / "resumed")
    assert len(seen) == 2 * 2 * len(ESTIMATORS) - 3  # only the unfinished units ran
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), full.drop(columns=TIMING), check_exact=True)
    seen.clear()
    run_grid(tmp_path / "resumed")
    assert seen == []  # a finished run has nothing left to do


@pytest.mark.slow
def test_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real = tasks._decompose_call

    def broken(fld, index, z, unit, g):
        if unit.estimator == "mss" and unit.batch_size == 12:
            raise RuntimeError("boom\nsecond line")
        return real(fld, index, z, unit, g)

    monkeypatch.setattr(tasks, "_decompose_call", broken)
    df = run_grid(tmp_path)
    bad = df[df["status"] == "error"]
    assert len(bad) == 2 * 4 and set(bad["estimator"]) == {"mss"} and set(bad["batch_size"]) == {12}
    assert (bad["error"] == "RuntimeError: boom second line").all() and bad["bias"].isna().all()
    assert (df.loc[df["status"] == "ok", "bias"].notna()).all() and (df["status"] == "ok").sum() == len(df) - 8
    # the error rows are retried on the next run, and then succeed
    monkeypatch.setattr(tasks, "_decompose_call", real)
    again = run_grid(tmp_path)
    assert (again["status"] == "ok").all() and len(again) == len(df)


def test_a_failed_reference_fails_its_cells_only(tmp_path, monkeypatch):
    real = tasks.AggregateUnit.reference

    def reference(self, plan, cache, **kw):
        if self.scenario == "clustered":
            raise ValueError("no reference")
        return real(self, plan, cache, **kw)

    monkeypatch.setattr(tasks.AggregateUnit, "reference", reference)
    df = run_grid(tmp_path, estimators=["naive"])
    bad = df[df["status"] == "error"]
    assert set(bad["scenario"]) == {"clustered"} and len(bad) == 2 * 4
    assert (bad["error"] == "RuntimeError: reference failed: ValueError: no reference").all()
    assert (df.loc[df.scenario == "gaussian", "status"] == "ok").all()


@pytest.mark.slow
def test_results_agree_with_theory(tmp_path):
    # Larger R so the checks have power; still tiny. mws - naive is the published per-sample constant,
    # and with common random numbers both see the same batches: exact up to rounding, replicate by replicate.
    preset = TINY.with_(replicates=40, batch_sizes=(8,), reference_samples=512)
    df = run_grid(tmp_path, preset=preset)
    for (scen, q), g in df.groupby(["scenario", "quantity"]):
        g = g.set_index("estimator")
        assert g.loc["mws", "mean"] - g.loc["naive", "mean"] == pytest.approx(g.loc["mws", "mws_offset"], abs=1e-9)
        assert g.loc["mws", "sd"] == pytest.approx(g.loc["naive", "sd"], rel=1e-6)
        ex = g.loc["exact"]  # the full-N estimator is unbiased: |bias| < 4 se (se includes the reference's)
        assert abs(ex["bias"]) < 4 * math.hypot(ex["bias_se"], ex["reference_se"]), (scen, q)
    assert (df["bias_sign_ok"].dropna().astype(bool)).all()
    # Jensen: an unbiased inner sum over-estimates mi and under-estimates kl_agg and dimwise_kl on
    # average. The label says so, and the observed biases do not contradict it at 4 se.
    mss = df[df.estimator == "mss"].set_index(["scenario", "quantity"])
    assert (mss.xs("mi", level="quantity")["bias_sign_theory"] == "+").all()
    se = np.hypot(mss["bias_se"], mss["reference_se"])
    for quantity, sign in (("mi", 1), ("kl_agg", -1), ("dimwise_kl", -1)):
        rows = mss.xs(quantity, level="quantity")
        assert (sign * rows["bias"] >= -4 * se.xs(quantity, level="quantity")).all(), quantity


def test_float32_run(tmp_path):
    df = run_grid(tmp_path, preset=TINY.with_(dtype="float32", scenarios=TINY.scenarios[:1], batch_sizes=(12,)),
                  estimators=["mss", "exact"])
    assert (df["status"] == "ok").all() and (df["dtype"] == "float32").all()
    ex = df[df.estimator == "exact"]
    assert (ex["bias"].abs() < 4 * np.hypot(ex["bias_se"], ex["reference_se"])).all()


def test_log_px_cells(tmp_path):
    from estimators.log_px import LOG_PX_TASKS, log_px_reference

    exact_task = next(t for t in LOG_PX_TASKS if t.endswith("-exact"))
    other = next(t for t in LOG_PX_TASKS if t.endswith("-mismatched"))
    preset = TINY.with_(log_px_k=(1, 2, 8), log_px_replicates=200, quantities=("log_px",), pairwise_max_k=2)
    df = run_grid(tmp_path, preset=preset, scenarios=[exact_task, other], estimators=None)
    assert (df["status"] == "ok").all() and (df["quantity"] == "log_px").all() and (df["batch_size"] == 0).all()
    # jackknife order j needs k >= j + 1; the order-2 jackknife (pairwise) is capped at k = 2 here
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
    # not applicable: no batch, no separation, no Monte Carlo reference, no coverage
    assert df[["separation", "log_B", "reference_samples", "coverage"]].isna().all().all()
    assert (df["N"] == 1).all() and (df["family"] == "iwae").all() and (df["reference_method"] == "closed").all()


def test_the_references_have_a_progress_bar_and_pass_progress_on(tmp_path, monkeypatch, capsys):
    from estimators import references
    from estimators.bench.plan import plan

    real = references.exact_references
    seen = []

    def with_progress(mu, logvar, *, progress=None, **settings):
        seen.append(progress)
        return real(mu, logvar, **settings)

    monkeypatch.setattr(references, "exact_references", with_progress)
    logged = []
    runner.execute(plan(TINY, estimators=["naive"]), tmp_path, "t", progress=True, log=logged.append)
    err = capsys.readouterr().err
    assert "references: 100%" in err and "2/2" in err and "field" in err  # a bar over the two fields ...
    assert [m.split(":")[0] for m in logged] == ["reference gaussian (separation 0.6)",
                                                 "reference clustered (separation 0.7)"]  # ... and each one's time
    assert seen == [True, True]  # exact_references shows its own bars too
    # a cached reference computes nothing; without a progress bar no callback is passed
    seen.clear()
    runner.execute(plan(TINY, estimators=["mws"]), tmp_path, "t", progress=False, log=logged.append)
    assert seen == []
    runner.execute(plan(TINY, estimators=["mws"]), tmp_path / "fresh", "t", progress=False, log=logged.append)
    assert seen == [None, None]
