"""Direct estimators in the benchmark (DirectUnit): rows only for their quantities, the aggregate units'
batches, the density ratio's budget in the k column, brackets on every aggregate row, and their report."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from estimators.bench.grid import AGGREGATE_QUANTITIES, ScenarioSpec
from estimators.bench.plan import plan
from estimators.bench.presets import PRESETS, Preset
from estimators.bench.report import write_report
from estimators.bench.tasks import DirectUnit
from estimators.direct import DIRECT_ESTIMATORS, moment_kl
from tests.bench.helpers import run_grid

SMALL = Preset(
    name="small-direct",
    scenarios=(ScenarioSpec("gaussian", N=40, D=3, separation=0.6),),
    batch_sizes=(3, 12),
    k=(3,),
    replicates=4,
    quantities=AGGREGATE_QUANTITIES,
    reference_samples=64,
    density_ratio_steps=(5, 20),
    density_ratio_batch_size=16,
    density_ratio_replicates=2,
)
ESTIMATORS = ["mss", "exact", *DIRECT_ESTIMATORS]


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("direct")
    return out, run_grid(out, "d", SMALL, estimators=ESTIMATORS)


def test_rows_only_for_the_quantities_each_estimates(direct_run):
    _, df = direct_run
    assert (df.status == "ok").all(), df[df.status != "ok"].error.tolist()
    for name, info in DIRECT_ESTIMATORS.items():
        rows = df[df.estimator == name]
        assert set(rows.quantity) == set(info.quantities), name
        assert set(rows.family) == {info.family}, name
    dr = df[df.estimator == "density_ratio"]
    assert sorted(dr.k) == [5, 20] and set(dr.batch_size) == {16} and set(dr.replicates) == {2}
    moments = df[df.family == "moment"]
    assert set(moments.k) == {0} and set(moments.replicates) == {4}
    # a Gaussian TC of 3 means in 3 dimensions is singular: that cell is skipped, the others are not
    assert set(df[df.estimator == "gaussian_tc_means"].batch_size) == {12}
    assert set(df[df.estimator == "moment_kl"].batch_size) == {3, 12}
    assert df.mws_offset[df.family.isin(["moment", "density_ratio"])].isna().all()


def test_every_aggregate_row_carries_the_bracket_of_its_reference(direct_run):
    _, df = direct_run
    lo, hi, ref, se = df.reference_lower, df.reference_upper, df.reference, df.reference_se
    assert lo.notna().all() and hi.notna().all()
    assert ((lo - 4 * se - 1e-9 <= ref) & (ref <= hi + 4 * se + 1e-9)).all()
    per_field = df.groupby("quantity")[["reference_lower", "reference_upper"]].nunique()
    assert (per_field == 1).all().all()  # one field: one bracket per quantity, on every estimator's rows


def test_moment_estimators_see_the_aggregate_units_batches(direct_run):
    _, df = direct_run
    p = plan(SMALL, estimators=["moment_kl"])
    unit = next(u for u in p.units if isinstance(u, DirectUnit) and u.batch_size == 12)
    fld = next(iter(p.fields.values()))
    values = []
    for r in range(unit.replicates):
        g = torch.Generator().manual_seed(unit.batch_seed(r))
        index = torch.randperm(fld.N, generator=g)[:12]
        values.append(float(moment_kl(fld.mu[index], fld.logvar[index])))
    row = df[(df.estimator == "moment_kl") & (df.batch_size == 12)].iloc[0]
    assert row["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    agg = next(u for u in plan(SMALL, estimators=["mss"]).units if u.batch_size == 12)
    assert unit.batch_key == agg.batch_key  # the same replicate batches as the log q(z) estimators


def test_the_report_shows_brackets_and_the_direct_estimators(direct_run, tmp_path):
    folder, df = direct_run
    written = {p.name for p in write_report(folder)}
    assert {"d-direct.png", "d-density_ratio.png", "d-bias.png"} <= written
    readme = (folder / "README.md").read_text()
    assert "### Certified brackets" in readme
    assert "| quantity | reference | se | method | lower | upper | width |" in readme
    assert "- references inside their certified brackets (within 4 reference_se): every one" in readme
    assert "### Moment-based and density-ratio estimators" in readme and "gaussian_tc_means" in readme
    assert "### Density-ratio TC against budget and true tc" in readme and "| 5 steps | 20 steps |" in readme
    # the log q(z) estimators' tables and plots are not crowded by the direct ones
    from estimators.bench.report import best_by_rmse

    assert not set(best_by_rmse(df).estimator) & set(DIRECT_ESTIMATORS)


def test_presets_include_the_direct_estimators():
    for name in ("quick", "standard"):
        units = plan(PRESETS[name]).units
        names = {u.estimator for u in units if isinstance(u, DirectUnit)}
        assert names == set(DIRECT_ESTIMATORS), name
    s = PRESETS["standard"]
    assert (s.density_ratio_steps, s.density_ratio_batch_size, s.density_ratio_replicates) == ((300,), 256, 8)
    study = plan(PRESETS["density_ratio"]).units
    assert {u.estimator for u in study} == {"density_ratio"} and len({u.k for u in study}) == 5
