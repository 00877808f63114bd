"""The committed density-ratio study (results/density_ratio.csv, `python -m estimators bench --preset
density_ratio`): the FactorVAE discriminator's TC converges on the low-tc field, stays biased low when the
true tc is large, and its bias shrinks with the training budget.

Each claim is checked on every cell it covers with the Student-t quantile (R - 1 degrees of freedom) at
level ALPHA / M per side, M the number of cells checked in this file (Bonferroni): a false alarm with
probability at most ALPHA. se = hypot(bias_se, reference_se) (two for a difference of biases).
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

CSV = Path(__file__).resolve().parents[2] / "results" / "density_ratio.csv"
ALPHA = 1e-4


@pytest.fixture(scope="module")
def df():
    if not CSV.exists():
        pytest.skip("results/density_ratio.csv not generated")
    d = pd.read_csv(CSV)
    assert (d.status == "ok").all() and set(d.estimator) == {"density_ratio"} and set(d.quantity) == {"tc"}
    return d


def _t(replicates, cells, sides=1):
    return stats.t.isf(ALPHA / cells / sides, np.asarray(replicates) - 1)


def test_the_study_covers_budgets_and_true_tc(df):
    assert sorted(set(df.k)) == [30, 100, 300, 1000, 3000]
    assert df.groupby("k").reference.nunique().eq(5).all() and df.reference.max() > 1.0


def test_converges_on_the_low_tc_field_biased_low_on_the_high_tc_field_and_improves_with_budget(df):
    cells = 2 + 2 * 5  # two cells of the first claim, 5 of each of the others
    low = df[df.reference == df.reference.min()]
    big = low[low.k >= 1000]  # the two largest budgets: within noise of the truth
    se = np.hypot(big.bias_se, big.reference_se)
    assert (big.bias.abs() < _t(big.replicates, cells, 2) * se).all(), big
    high = df[df.reference == df.reference.max()]
    se = np.hypot(high.bias_se, high.reference_se)
    assert (-high.bias > _t(high.replicates, cells) * se).all(), high  # biased low at every budget
    first, last = (df[df.k == k].set_index("separation").sort_index() for k in (30, 3000))
    gain = first.bias.abs() - last.bias.abs()
    se = np.sqrt(first.bias_se ** 2 + last.bias_se ** 2 + (2 * first.reference_se) ** 2)
    assert (gain[first.reference > 0.1] > _t(first.replicates, cells)[first.reference > 0.1]
            * se[first.reference > 0.1]).all()
    assert (last.bias < 0.01).all()  # never biased high
