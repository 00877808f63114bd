"""Encoder evaluations per estimate (estimators.bench.report.cost): the rule by family, checked against the
posteriors the implementations actually read (counted by wrapping their sampling and gathering)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import estimators as est
from estimators.bench.report.cost import COST_RULES, DENSITY_RATIO_EVAL, encoder_evaluations
from estimators.direct import DIRECT_ESTIMATORS
from estimators.direct.density_ratio import DEFAULTS


def _rows(*rows):
    return pd.DataFrame(rows, columns=["family", "batch_size", "k", "N"])


def test_the_rule_by_family():
    got = encoder_evaluations(_rows(("minibatch", 8, 0, 100), ("importance", 8, 16, 100), ("exact", 8, 0, 100),
                                    ("moment", 32, 0, 100), ("density_ratio", 256, 300, 100),
                                    ("iwae", 0, 64, 1), ("something else", 8, 0, 100)))
    assert got.tolist()[:5] == [8, 8 * 17, 108, 32, 2 * 256 * 300 + DENSITY_RATIO_EVAL]
    assert np.isnan(got.iloc[5]) and np.isnan(got.iloc[6])  # log p(x), unknown: not counted
    # the density ratio's budget falls back to its defaults, as its implementation does
    default = encoder_evaluations(_rows(("density_ratio", 0, 0, 100))).iloc[0]
    assert default == 2 * DEFAULTS["batch_size"] * DEFAULTS["steps"] + DENSITY_RATIO_EVAL


def test_every_family_of_every_registry_has_a_rule():
    families = {info.family for info in est.ESTIMATORS.values()} | {i.family for i in DIRECT_ESTIMATORS.values()}
    assert families <= set(COST_RULES)
    rows = _rows(*[(f, 8, 4, 50) for f in sorted(families)])
    assert np.isfinite(encoder_evaluations(rows)).all()


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match=r"missing \['N'\]"):
        encoder_evaluations(pd.DataFrame({"family": ["exact"], "batch_size": [8], "k": [0]}))


def test_iwae_reads_k_more_posteriors_per_sample(monkeypatch):
    # count the field rows the importance estimator gathers: B k, on top of the batch's own B
    from estimators.log_qz import importance

    gathered = []
    original = importance._chunk

    def counting(z, field_mu, field_logvar, idx, marginals):
        gathered.append(idx.numel())
        return original(z, field_mu, field_logvar, idx, marginals)

    monkeypatch.setattr(importance, "_chunk", counting)
    g = torch.Generator().manual_seed(0)
    N, B, D, k = 50, 6, 3, 7
    mu, logvar = torch.randn(N, D, generator=g, dtype=torch.float64), torch.zeros(N, D, dtype=torch.float64)
    index = torch.arange(B)
    z = mu[index] + torch.randn(B, D, generator=g, dtype=torch.float64)
    est.log_aggregate_posterior(z, mu[index], logvar[index], N, "iwae", field=(mu, logvar), index=index, k=k,
                                generator=g)
    rule = encoder_evaluations(_rows(("importance", B, k, N))).iloc[0]
    assert B + sum(gathered) == rule == B * (1 + k)


def test_the_density_ratio_reads_both_classes_of_every_step_and_its_evaluation_samples(monkeypatch):
    from estimators.direct import density_ratio

    drawn = []
    original = density_ratio._sample

    def counting(mu, sd, count, g):
        drawn.append(count)
        return original(mu, sd, count, g)

    monkeypatch.setattr(density_ratio, "_sample", counting)
    mu, logvar = torch.randn(40, 2, dtype=torch.float64), torch.zeros(40, 2, dtype=torch.float64)
    density_ratio.density_ratio_tc(mu, logvar, steps=3, batch_size=5, width=4, depth=1)
    rule = encoder_evaluations(_rows(("density_ratio", 5, 3, 40))).iloc[0]
    assert sum(drawn) == rule == 2 * 5 * 3 + DENSITY_RATIO_EVAL
    assert math.isclose(rule, 2 * 5 * 3 + DEFAULTS["eval_samples"])
