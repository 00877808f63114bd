"""The lowest RMSE at equal cost (estimators.bench.report.budget) on small synthetic result tables with known
answers, and against a brute-force search on random ones."""
import math

import numpy as np
import pandas as pd
import pytest

from estimators.bench.report.budget import TIE_Z, _steps_of_3, budget_levels, candidates, equal_cost, lowest_within
from estimators.bench.report.terminal import terminal_table


def row(estimator, B, rmse, *, k=0, family="minibatch", published=False, quantity="tc", scenario="s", N=100,
        rmse_se=0.01, seconds=1e-3, dtype="float64", separation=0.5):
    """One finished aggregate cell with the columns the report reads."""
    return dict(scenario=scenario, separation=separation, quantity=quantity, estimator=estimator, batch_size=B,
                k=k, dtype=dtype, family=family, published_variant=published, N=N, D=3, replicates=10, status="ok",
                rmse=rmse, rmse_se=rmse_se, time_per_call_s=seconds, bias=rmse / 2, bias_se=rmse_se,
                reference=1.0, reference_se=0.0)


# One scenario, one quantity, N = 100: the costs are naive/mss B, iwae B (1 + k), exact B + N.
KNOWN = pd.DataFrame([
    row("naive", 8, 1.0, seconds=1e-4),
    row("naive", 32, 0.5, seconds=2e-4),
    row("mss", 32, 0.45, seconds=2e-4),
    row("iwae", 8, 0.3, k=3, family="importance", seconds=5e-4),     # 32 evaluations
    row("iwae", 8, 0.1, k=16, family="importance", seconds=3e-3),    # 136
    row("exact", 8, 0.2, family="exact", seconds=2e-3),              # 108
    row("mss_shipped", 8, 0.01, published=True, seconds=1e-4),       # never a candidate
    row("moment_tc", 8, 0.001, family="moment", seconds=1e-4),       # not an estimator of log q(z)
])


def _winners(best):
    return {lv: (r.series, r.batch_size) for lv, r in zip(best["level"], best.itertuples())}


def test_known_winners_at_equal_encoder_evaluations():
    best, levels = equal_cost(KNOWN, "evaluations")
    assert levels == [8.0, 32.0, math.inf]  # the grid's batch sizes, then any cost
    assert _winners(best) == {8.0: ("naive", 8), 32.0: ("iwae k=3", 8), math.inf: ("iwae k=16", 8)}
    assert best.set_index("level").loc[32.0, "evaluations"] == 32
    assert not set(best["estimator"]) & {"mss_shipped", "moment_tc"}


def test_known_winners_at_equal_time():
    best, levels = equal_cost(KNOWN, "seconds")
    # 1-3 steps from the fastest estimate (1e-4 s) to the slowest minibatch one at the largest B (2e-4 s)
    assert levels == [1e-4, 3e-4, math.inf]
    assert _winners(best) == {1e-4: ("naive", 8), 3e-4: ("mss", 32), math.inf: ("iwae k=16", 8)}


def test_ties_are_the_series_within_tie_z_combined_se():
    d = candidates(pd.DataFrame([row("mss", 32, 0.45), row("naive", 32, 0.45 + 0.99 * TIE_Z * math.hypot(0.01, 0.01)),
                                 row("loo", 32, 0.45 + 1.01 * TIE_Z * math.hypot(0.01, 0.01)),
                                 row("mss", 8, 0.46)]))
    best = lowest_within(d, "evaluations", [32.0])
    assert best["series"].tolist() == ["mss"] and best["tied"].iloc[0] == ("naive",)  # not loo, not mss itself


def test_scenarios_quantities_and_dtypes_are_never_mixed():
    rows = [row("naive", 8, 1.0), row("mss", 8, 2.0),
            row("naive", 8, 2.0, scenario="t"), row("mss", 8, 1.0, scenario="t"),
            row("naive", 8, 2.0, quantity="mi"), row("mss", 8, 1.0, quantity="mi"),
            row("naive", 8, 2.0, dtype="float32"), row("mss", 8, 1.0, dtype="float32")]
    best, _ = equal_cost(pd.DataFrame(rows), "evaluations")
    got = {(r.group, r.quantity): r.estimator for r in best[best["level"] == 8.0].itertuples()}
    assert got == {("s, float64", "tc"): "naive", ("s, float64", "mi"): "mss", ("t, float64", "tc"): "mss",
                   ("s, float32", "tc"): "mss"}


def test_against_brute_force_on_random_tables():
    rng = np.random.default_rng(11)
    rows = []
    for scenario in ("a", "b"):
        for quantity in ("mi", "tc"):
            for est, family, k in (("naive", "minibatch", 0), ("mss", "minibatch", 0), ("iwae", "importance", 4),
                                   ("iwae", "importance", 32), ("exact", "exact", 0)):
                for B in (4, 16, 64):
                    rows.append(row(est, B, float(rng.uniform(0.01, 2)), k=k, family=family, quantity=quantity,
                                    scenario=scenario, N=200, rmse_se=float(rng.uniform(0, 0.05)),
                                    seconds=float(rng.uniform(1e-5, 1e-2))))
    df = pd.DataFrame(rows)
    d = candidates(df)
    for budget, cost in (("evaluations", lambda r: r["batch_size"] * (1 + r["k"]) + (200 if r["family"] == "exact"
                                                                                      else 0)),
                         ("seconds", lambda r: r["time_per_call_s"])):
        levels = budget_levels(d, budget)
        best = lowest_within(d, budget, levels)
        for (scenario, quantity), g in df.groupby(["scenario", "quantity"]):
            for level in levels:
                fits = [r for _, r in g.iterrows() if cost(r) <= level * (1 + 1e-12)]
                got = best[(best["group"] == scenario) & (best["quantity"] == quantity) & (best["level"] == level)]
                if not fits:
                    assert got.empty
                    continue
                assert got["rmse"].iloc[0] == min(r["rmse"] for r in fits), (budget, scenario, quantity, level)


def test_steps_of_three():
    assert _steps_of_3(2.8e-4, 4e-3) == [3e-4, 1e-3, 3e-3, 1e-2]
    assert _steps_of_3(1e-4, 1e-4) == [1e-4]
    assert _steps_of_3(0.5, 20.0) == [1.0, 3.0, 10.0, 30.0]


def test_nothing_to_compare():
    one = pd.DataFrame([row("naive", 8, 1.0), row("naive", 32, 0.5)])
    assert equal_cost(one, "evaluations")[0].empty  # one estimator: no comparison
    no_minibatch = pd.DataFrame([row("exact", 8, 0.2, family="exact"), row("iwae", 8, 0.1, k=3, family="importance")])
    best, levels = equal_cost(no_minibatch, "evaluations")  # no minibatch configuration spends a budget
    assert best.empty and levels == []
    with pytest.raises(ValueError, match="budget must be one of"):
        budget_levels(candidates(KNOWN), "dollars")


def test_the_terminal_table_is_at_equal_encoder_evaluations():
    text = terminal_table(KNOWN)
    assert text.startswith("lowest RMSE at equal encoder evaluations per estimate")
    lines = text.splitlines()
    assert lines[1].split("  ")[0].strip() == "scenario / quantity" and "<= 32 evals" in lines[1]
    assert "naive B=8 1" in lines[2] and "iwae k=3 B=8 0.3" in lines[2] and "iwae k=16 B=8 0.1" in lines[2]
