"""The MIG study: its tidy table against the estimators and references it summarises, the metrics' formulas, the
report files and bad input."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from estimators.bench.metrics import summarize as bench_summarize
from estimators.mig import STUDY_COLUMNS, mig_beta_tcvae, mig_references, mig_sampled, run_mig_study, write_mig_report
from estimators.mig.study import replicate_seed, summarize


@pytest.fixture(scope="module")
def study():
    from tests.mig.fields import grid_field

    mu, lv, f = grid_field((2, 3, 4), D=3, seed=1)
    names = ["a", "b", "c"]
    df = run_mig_study(mu, lv, f, factor_names=names, factors_in_mig=["b", "c"], sample_sizes=(4, 12), replicates=3,
                       seed=5)
    return mu, lv, f, names, df


def test_table_shape_and_values(study):
    mu, lv, f, names, df = study
    assert list(df.columns) == list(STUDY_COLUMNS)
    D, Kp = 3, 2
    per = 1 + Kp + D + 2 * D * Kp
    assert len(df) == 2 * 2 * per
    assert set(df["quantity"]) == {"mig", "normalized_gap", "mi", "entropy", "conditional_entropy"}
    ref = mig_references(mu, lv, f, factor_names=names, factors_in_mig=["b", "c"])
    row = df[(df["quantity"] == "mig") & (df["estimator"] == "paired") & (df["n_samples"] == 12)].iloc[0]
    runs = [mig_sampled(mu, lv, f, n_samples=12, factors_in_mig=[1, 2],
                        generator=torch.Generator().manual_seed(replicate_seed(5, r)))["mig"] for r in range(3)]
    assert math.isclose(row["reference"], ref["mig"], rel_tol=1e-14)
    assert math.isclose(row["mean"], float(np.mean(runs)), rel_tol=1e-13)
    assert math.isclose(row["bias"], row["mean"] - row["reference"], abs_tol=1e-15)
    cell = df[(df["quantity"] == "mi") & (df["estimator"] == "beta_tcvae") & (df["n_samples"] == 4)
              & (df["latent"] == 2) & (df["factor"] == "c")].iloc[0]
    runs = [float(mig_beta_tcvae(mu, lv, f, n_samples=4, factors_in_mig=[1, 2],
                                 generator=torch.Generator().manual_seed(replicate_seed(5, r)))["mi"][2, 1])
            for r in range(3)]
    assert math.isclose(cell["mean"], float(np.mean(runs)), rel_tol=1e-12)
    assert math.isclose(cell["reference"], float(ref["mi"][2, 2]), rel_tol=1e-14)
    gap = df[(df["quantity"] == "normalized_gap") & (df["factor"] == "b")].iloc[0]
    assert int(gap["latent"]) == ref["top_latent"][1]


def test_study_is_reproducible(study):
    mu, lv, f, names, df = study
    again = run_mig_study(mu, lv, f, factor_names=names, factors_in_mig=["b", "c"], sample_sizes=(4, 12), replicates=3,
                          seed=5, estimators=("paired",))
    pd.testing.assert_frame_equal(again.drop(columns=["seconds_per_estimate"]).reset_index(drop=True),
                                  df[df["estimator"] == "paired"].drop(columns=["seconds_per_estimate"])
                                  .reset_index(drop=True))


@pytest.mark.parametrize("R", [2, 7, 50])
def test_summary_formulas_match_the_benchmark_metrics(R):
    x = np.random.default_rng(R).gamma(2.0, size=R)
    mine, theirs = summarize(x, 1.5), bench_summarize(x, 1.5)
    for key in mine:
        assert math.isclose(mine[key], theirs[key], rel_tol=1e-12, abs_tol=1e-15), key


def test_report_files(study, tmp_path):
    df = study[-1]
    paths = write_mig_report(df, tmp_path / "out")
    assert all(p.is_file() for p in paths.values())
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == list(STUDY_COLUMNS) and len(back) == len(df)
    text = paths["md"].read_text()
    assert "## MIG" in text and "beta_tcvae" in text and "paired" in text
    png = paths["png"].read_bytes()
    write_mig_report(df, tmp_path / "out")  # byte-stable: unchanged
    assert paths["png"].read_bytes() == png


@pytest.mark.parametrize("kwargs,needle", [({"replicates": 1}, "replicates"), ({"sample_sizes": (0,)}, "sample_sizes"),
                                           ({"sample_sizes": ()}, "sample_sizes"), ({"estimators": ("x",)}, "estimators"),
                                           ({"reference": {"N": 3}}, "reference")])
def test_bad_input(small_grid, kwargs, needle):
    mu, lv, f = small_grid
    with pytest.raises(ValueError, match=needle):
        run_mig_study(mu, lv, f, **{"replicates": 2, "sample_sizes": (3,), **kwargs})
