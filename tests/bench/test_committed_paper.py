"""The committed paper report (results/paper.csv, results/dsprites-models.jsonl) shows what it claims.

``python -m estimators bench --preset paper --out results`` writes the CSV (about an hour on 2 cores once the
two dSprites VAEs are trained); ``python -m estimators dsprites report --json`` the model reports. These tests
pin their headline facts with the conventions of test_committed_results.py: a claim is tested on every cell
at the Student-t quantile of level ALPHA / M per side (M: every cell checked in this file, Bonferroni), with
se = hypot(bias_se, reference_se).
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from estimators.bench.metrics import ROUNDING
from estimators.scenarios.vae_dsprites import RECIPES

RESULTS = Path(__file__).resolve().parents[2] / "results"
CSV = RESULTS / "paper.csv"
MODELS = RESULTS / "dsprites-models.jsonl"
ALPHA = 1e-4
CELL = ["scenario", "batch_size"]
DIRECT_FAMILIES = ["moment", "density_ratio"]


@pytest.fixture(scope="module")
def df():
    if not CSV.exists():
        pytest.skip("results/paper.csv not generated")
    return pd.read_csv(CSV)


@pytest.fixture(scope="module")
def models():
    if not MODELS.exists():
        pytest.skip("results/dsprites-models.jsonl not generated")
    return {r["name"]: r for r in map(json.loads, MODELS.read_text().splitlines())}


def _t(cells: int, replicates, sides: int):
    return stats.t.isf(ALPHA / cells / sides, np.asarray(replicates, float) - 1)


def test_the_grid_is_the_published_setting(df):
    assert (df.status == "ok").all()
    assert set(df.scenario) == {"dsprites", "dsprites-tcvae"} and set(df.N) == {737_280} and set(df.D) == {10}
    assert set(df[~df.family.isin(DIRECT_FAMILIES)].batch_size) == {64, 256, 1024, 2048}
    kl_agg = df[df.quantity == "kl_agg"]
    assert (kl_agg.reference_se <= 0.01).all()  # the preset's target se


def test_the_committed_models_are_the_current_recipes(models):
    assert set(models) == {"dsprites", "dsprites-tcvae"}
    for objective, recipe in RECIPES.items():
        report = models[recipe.name]
        assert report["fingerprint"] == recipe.fingerprint() and report["steps"] == recipe.steps
        assert len(report["kl_per_dim"]) == recipe.latent_dim
        assert math.isclose(sum(report["kl_per_dim"]), report["kl"], rel_tol=1e-9)
        assert report["active_dims"] == sum(k > 0.01 for k in report["kl_per_dim"])
        assert 0 < report["recon_nll"] < 4096 * math.log(2)  # better than coin flips on every pixel
    assert models["dsprites"]["active_dims"] < 10  # beta = 1 leaves a few dimensions at the prior


def test_references_satisfy_the_identity_and_the_tcvae_recipe_has_the_lower_tc(df):
    ref = df[~df.family.isin(DIRECT_FAMILIES)].pivot_table(index="scenario", columns="quantity", values="reference")
    se = df.pivot_table(index="scenario", columns="quantity", values="reference_se")
    np.testing.assert_allclose(ref.kl_agg, ref.tc + ref.dimwise_kl, atol=1e-9)
    gap = ref.tc["dsprites"] - ref.tc["dsprites-tcvae"]
    assert gap > stats.norm.isf(ALPHA) * math.hypot(se.tc["dsprites"], se.tc["dsprites-tcvae"]), (ref.tc, se.tc)


def test_mws_minus_naive_is_the_published_constant(df):
    for quantity, offset in (("mi", lambda N, D: math.log(N)), ("tc", lambda N, D: (D - 1) * math.log(N)),
                             ("kl_agg", lambda N, D: -math.log(N)), ("dimwise_kl", lambda N, D: -D * math.log(N))):
        d = df[(df.quantity == quantity) & ~df.family.isin(DIRECT_FAMILIES)]
        mean = d.pivot_table(index=CELL, columns="estimator", values="mean")
        size = d.groupby(CELL)[["N", "D"]].first()
        want = np.array([offset(N, D) for N, D in zip(size.N, size.D)])
        np.testing.assert_allclose((mean["mws"] - mean["naive"]).to_numpy(), want, atol=1e-8)


def test_exact_is_unbiased_and_an_unbiased_inner_sum_overestimates_mi(df):
    d = df[~df.family.isin(DIRECT_FAMILIES) & (df.quantity != "log_px")]
    exact = d[d.estimator == "exact"]
    inner = d[d.estimator.isin(["mss", "stratified"]) & (d.quantity == "mi")]
    cells = len(exact) + len(inner)
    assert len(exact) == 2 * 4 * 4 and len(inner) == 2 * 4 * 2
    se = np.hypot(exact.bias_se, exact.reference_se)
    floor = ROUNDING * (1 + exact.reference.abs())
    ok = exact.bias.abs() < _t(cells, exact.replicates, 2) * se + floor
    assert ok.all(), exact[~ok]
    se = np.hypot(inner.bias_se, inner.reference_se)
    ok = inner.bias > -_t(cells, inner.replicates, 1) * se
    assert ok.all(), inner[~ok]


def test_every_reference_lies_inside_its_certified_bracket(df):
    d = df[df.quantity != "log_px"]
    slack = 4 * d.reference_se + 1e-8 * (1 + d.reference.abs())
    inside = (d.reference_lower - slack <= d.reference) & (d.reference <= d.reference_upper + slack)
    assert inside.all(), d[~inside][["scenario", "quantity", "reference", "reference_lower", "reference_upper"]]
    assert (d[d.quantity == "mi"].reference_upper <= np.log(737_280) + 1e-12).all()
