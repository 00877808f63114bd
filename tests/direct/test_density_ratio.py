"""The density-ratio TC (FactorVAE discriminator, estimators/direct/density_ratio.py): converges to the exact
tc on an easy field with a large budget, is biased low on a hard one (large tc), leaves the global RNG
alone, is reproducible, and rejects bad input by name.

Statistical claims use R independent trainings (seeds 0..R-1): the tolerance is t se with se = sd / sqrt(R)
(the measured sd over trainings, which includes the evaluation noise) and t the Student-t quantile with R - 1
degrees of freedom at two-sided level 1e-4 (one-sided 1e-4 for "biased low").
"""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from estimators.direct.density_ratio import density_ratio_tc, permute_dims
from estimators.references import exact_references
from estimators.scenarios import make_scenario

F64 = torch.float64
R = 6
BUDGET = {"steps": 1000, "batch_size": 256}  # "large": about 1 s a training here; the default is 300


def _easy_field():
    """Means of a correlated 2-D Gaussian (rho 0.8) with broad posteriors (var 0.3): q(z) is close to a
    Gaussian, whose log ratio q / prod q_d is a quadratic an MLP learns readily; tc 0.246 (2-D quadrature)."""
    g = torch.Generator().manual_seed(0)
    C = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    mu = torch.randn(1024, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(C).T
    return mu, torch.full_like(mu, math.log(0.3))


def _trainings(mu, lv, **budget):
    return torch.tensor([density_ratio_tc(mu, lv, seed=s, **budget).tc for s in range(R)], dtype=F64)


def test_converges_to_the_exact_tc_on_an_easy_field():
    mu, lv = _easy_field()
    ref = exact_references(mu, lv)
    assert ref["tc"]["method"] == "quadrature" and ref["tc"]["value"] == pytest.approx(0.2463, abs=1e-3)
    est = _trainings(mu, lv, **BUDGET)
    se = float(est.std()) / math.sqrt(R)
    t = stats.t.isf(0.5e-4, R - 1)
    assert abs(float(est.mean()) - ref["tc"]["value"]) < t * se, (est, ref["tc"])
    assert se < 0.01  # the tolerance is tight: t se is below 0.1 nats


def test_biased_low_when_the_true_tc_is_large():
    """gaussian at separation 0.9 (tc 1.3): the classes become separable and the logits stop tracking the log
    ratio; the estimate stays near 0.8 at this budget, a bias of -0.5 nats, many se from 0."""
    fld = make_scenario("gaussian", N=2048, D=5, separation=0.9)
    ref = exact_references(fld.mu, fld.logvar, samples=16)
    est = _trainings(fld.mu, fld.logvar, **BUDGET)
    bias = float(est.mean()) - ref["tc"]["value"]
    se = math.hypot(float(est.std()) / math.sqrt(R), ref["tc"]["se"])
    assert bias < -stats.t.isf(1e-4, R - 1) * se, (bias, se)
    assert bias < -0.2  # and by a lot


def test_reproducible_and_the_global_rng_is_left_alone():
    mu, lv = _easy_field()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = density_ratio_tc(mu, lv, steps=20, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = density_ratio_tc(mu, lv, steps=20, seed=5)
    c = density_ratio_tc(mu, lv, steps=20, seed=6)
    assert a.tc == b.tc and a.tc != c.tc
    assert a.steps == 20 and a.width == 64 and a.batch_size == 256 and a.seconds > 0 and a.se > 0
    assert 0 < a.final_loss < 1.0  # logistic loss near log 2 = 0.69 for weakly separable classes


def test_permuting_each_dimension_keeps_the_marginals_and_breaks_the_dependence():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 1, generator=g, dtype=F64).expand(2000, 2).clone()  # z_1 = z_2
    p = permute_dims(z, g)
    for d in range(2):
        assert torch.equal(p[:, d].sort().values, z[:, d].sort().values)
    assert abs(float(torch.corrcoef(p.T)[0, 1])) < 4 / math.sqrt(2000)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps must be >= 1"), ({"width": 0}, "width must be >= 1"),
    ({"batch_size": 1}, "batch_size must be >= 2"), ({"lr": -1.0}, "lr must be a positive"),
    ({"eval_samples": 1}, "eval_samples must be >= 2"), ({"depth": 0}, "depth must be >= 1"),
])
def test_bad_settings_are_named(kwargs, match):
    mu, lv = _easy_field()
    with pytest.raises(ValueError, match=match):
        density_ratio_tc(mu[:10], lv[:10], **kwargs)


def test_bad_fields_are_named():
    with pytest.raises(ValueError, match="at least 2 latent dimensions"):
        density_ratio_tc(torch.zeros(5, 1), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="same shape"):
        density_ratio_tc(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="logvar holds"):
        density_ratio_tc(torch.zeros(5, 2), torch.full((5, 2), math.inf))
