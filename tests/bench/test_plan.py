"""Planning: every bad grid is refused up front with a message naming the problem; the units are
the grid's cells in a fixed order; log p(x) k and caps come from the estimator registry."""
import numpy as np
import pytest

from estimators.bench import plan as planning
from estimators.bench.plan import plan, reference_samples
from estimators.bench.presets import PRESETS
from estimators.bench.tasks import AggregateUnit, LogPxUnit
from estimators.log_px import LOG_PX_ESTIMATORS, LOG_PX_TASKS
from estimators.log_qz import ESTIMATORS
from tests.bench.helpers import TINY


def test_plan_rejects_bad_grids():
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'; known scenarios: .*gaussian"):
        plan(TINY, scenarios=["nope"])
    with pytest.raises(ValueError, match=r"unknown estimator 'mss2'; known estimators: .*stratified"):
        plan(TINY, estimators=["mss2"])
    with pytest.raises(ValueError, match=r"unknown quantity 'kl'; known quantities: .*kl_agg"):
        plan(TINY, quantities=["kl"])
    with pytest.raises(ValueError, match="batch size 41 is larger than N = 40"):
        plan(TINY.with_(batch_sizes=(41,)), estimators=["exact"])
    with pytest.raises(ValueError, match="batch size 1 is too small for estimator 'mss'"):
        plan(TINY.with_(batch_sizes=(1,)), estimators=["mss"])
    with pytest.raises(ValueError, match="replicates must be >= 2, got 1"):
        plan(TINY.with_(replicates=1))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        plan(TINY.with_(k=(0,)), estimators=["iwae"])
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        plan(TINY.with_(batch_sizes=(0,)), estimators=["naive"])
    with pytest.raises(TypeError, match="k must be an int, got float"):
        plan(TINY.with_(k=(2.5,)), estimators=["iwae"])
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        plan(TINY.with_(dtype="float16"))
    with pytest.raises(ValueError, match="the grid is empty"):
        plan(TINY, estimators=["iwae_jackknife1"])  # a log p(x) estimator, but TINY has no log_px quantity
    assert len(plan(TINY.with_(batch_sizes=(1,)), estimators=["exact", "naive"]).units) == 4


def test_units_in_grid_order_with_k_only_where_it_applies():
    p = plan(TINY, estimators=["naive", "iwae"])
    assert all(isinstance(u, AggregateUnit) for u in p.units)
    assert [(u.scenario, u.estimator, u.batch_size, u.k) for u in p.units] == [
        (s, e, b, k) for s in ("gaussian", "clustered") for e, k in (("naive", None), ("iwae", 3)) for b in (4, 12)]
    assert all(ESTIMATORS[u.estimator].needs_k == (u.k is not None) for u in p.units)
    assert sorted(p.fields) == [("clustered", 0.7), ("gaussian", 0.6)]
    assert p.reference_settings[("gaussian", 0.6)] == {"samples": 64, "quadrature_nodes": 32, "seed": 0}


def test_default_estimator_order_is_by_family_then_registry():
    # the rows of a report must not depend on the order in which modules register estimators
    from estimators.bench.plan import known_names
    from estimators.log_qz import FAMILIES

    names = known_names()["estimators"]
    assert sorted(names) == sorted(ESTIMATORS)
    ranks = [FAMILIES.index(ESTIMATORS[n].family) for n in names]
    assert ranks == sorted(ranks)
    for family in FAMILIES:
        assert [n for n in names if ESTIMATORS[n].family == family] == [
            n for n in ESTIMATORS if ESTIMATORS[n].family == family]
    # the committed report's order
    assert names[:5] == ("naive", "mws", "mss", "stratified", "loo") and names[-2:] == ("iwae", "exact")
    from estimators.direct import DIRECT_ESTIMATORS

    # then the direct estimators (estimators.direct), in registry order
    assert [u.estimator for u in plan(TINY.with_(batch_sizes=(4,), scenarios=TINY.scenarios[:1]),
                                      estimators=None).units] == list(names) + list(DIRECT_ESTIMATORS)


def test_log_px_k_comes_from_the_registry():
    preset = TINY.with_(quantities=("log_px",), log_px_k=(1, 2, 3, 8, 16), pairwise_max_k=8)
    task = next(iter(LOG_PX_TASKS))
    p = plan(preset, scenarios=[task], estimators=None)
    assert all(isinstance(u, LogPxUnit) for u in p.units) and p.fields == {}
    got = {}
    for u in p.units:
        got.setdefault(u.estimator, []).append(u.k)
    for name, est in LOG_PX_ESTIMATORS.items():
        want = [k for k in preset.log_px_k if k >= est.min_k and (not est.pairwise or k <= 8)]
        assert got[name] == want, name
    assert {u.latent_dim for u in p.units} == {LOG_PX_TASKS[task].latent_dim}


def test_plan_overrides_size_and_separations():
    p = plan(TINY, scenarios=["grid", "gaussian"], N=30, D=2, separations=[0.1, 0.9], estimators=["naive"])
    assert sorted(p.fields) == [("gaussian", 0.1), ("gaussian", 0.9), ("grid", 0.1), ("grid", 0.9)]
    assert {(f.N, f.D) for f in p.fields.values()} == {(30, 2)}
    assert not np.allclose(p.fields[("grid", 0.1)].logvar, p.fields[("grid", 0.9)].logvar)
    # vae-digits has at most 1797 points: a larger N is capped, not an error
    specs = planning._named_specs(TINY, ["vae-digits"], 5000, None, None)
    assert {s.N for s in specs} == {1797} and [s.separation for s in specs] == [0.6, 0.7]  # the preset's


def test_reference_samples_follow_the_budget():
    assert reference_samples(2048, 1536) == 1536  # the standard preset: within the budget
    assert reference_samples(10**6, 1536) == 2  # capped, never below 2
    assert reference_samples(4096, 4096) == planning.REFERENCE_BUDGET // 4096**2


def test_standard_preset_is_the_committed_grid():
    # scripts/main.sh recomputes results/standard.csv from this preset: its axes are part of the report
    s = PRESETS["standard"]
    assert [(x.name, x.N, x.D, x.separation) for x in s.scenarios] == [
        ("collapsed", 2048, 5, 0.5), ("grid", 2048, 5, 0.5), ("gaussian", 2048, 5, 0.5), ("clustered", 2048, 5, 0.5),
        ("heteroscedastic", 2048, 5, 0.5), ("gaussian", 2048, 5, 0.9), ("vae-digits", None, None, 0.5)]
    assert (s.batch_sizes, s.k, s.replicates, s.log_px_replicates, s.reference_samples) == (
        (8, 32, 128, 512), (16, 256), 48, 256, 1536)
    assert s.log_px_k == tuple(2**i for i in range(11)) and s.pairwise_max_k == 256
