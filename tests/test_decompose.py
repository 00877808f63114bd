"""decompose: per-sample terms against torch.distributions, identities, field estimators, gradients."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from estimators import ESTIMATORS, QUANTITIES, decompose, log_aggregate_posterior

F64 = torch.float64
SCALARS = QUANTITIES + ("avg_kl",)
PER_SAMPLE = ("mi_terms", "kl_agg_terms", "tc_terms", "dimwise_kl_terms", "log_qz", "log_qz_given_n", "log_pz")


def field(N, D, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g, dtype=F64)
    lv = -2.0 + 2.0 * torch.rand(N, D, generator=g, dtype=F64)
    return mu.to(dtype), lv.to(dtype)


def draw(mu, lv, seed):
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(mu.shape, generator=g, dtype=mu.dtype) * torch.exp(0.5 * lv)


def run(name, z, mu, lv, N, index, **kw):
    """decompose with the arguments each family takes; (own mu, own logvar, result)."""
    info = ESTIMATORS[name]
    if info.needs_k:
        kw = {"k": 6, "generator": torch.Generator().manual_seed(0), **kw}
    if info.needs_field:
        return mu[index], lv[index], decompose(z, mu, lv, None, name, index=index, **kw)
    return mu[index], lv[index], decompose(z, mu[index], lv[index], N, name, **kw)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_terms_against_torch_distributions_and_identities(name):
    N, B, D = 40, 12, 3
    mu, lv = field(N, D, seed=1)
    index = torch.randperm(N, generator=torch.Generator().manual_seed(2))[:B]
    z = draw(mu[index], lv[index], seed=3)
    own_mu, own_lv, out = run(name, z, mu, lv, N, index)
    assert set(out) == set(SCALARS) | set(PER_SAMPLE) | {"log_qz_dims"}
    for key in SCALARS:
        assert out[key].shape == () and out[key].dtype == F64
    for key in PER_SAMPLE:
        assert out[key].shape == (B,) and out[key].dtype == F64
    assert out["log_qz_dims"].shape == (B, D)

    own = Normal(own_mu, torch.exp(0.5 * own_lv))
    prior = Normal(torch.zeros(()), torch.ones(()))
    torch.testing.assert_close(out["log_qz_given_n"], own.log_prob(z).sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["log_pz"], prior.log_prob(z).sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["avg_kl"], kl_divergence(own, Normal(0.0, 1.0)).sum(1).mean(), rtol=0, atol=1e-12)

    lq, lqd = out["log_qz"], out["log_qz_dims"]
    torch.testing.assert_close(out["mi_terms"], out["log_qz_given_n"] - lq, rtol=0, atol=0)
    torch.testing.assert_close(out["kl_agg_terms"], lq - out["log_pz"], rtol=0, atol=0)
    torch.testing.assert_close(out["tc_terms"], lq - lqd.sum(1), rtol=0, atol=0)
    torch.testing.assert_close(out["dimwise_kl_terms"], lqd.sum(1) - out["log_pz"], rtol=0, atol=0)
    for q in QUANTITIES:
        torch.testing.assert_close(out[q], out[f"{q}_terms"].mean(), rtol=0, atol=0)
    # ELBO surgery and the TC split hold for every batch and estimator
    torch.testing.assert_close(out["mi"] + out["kl_agg"], (out["log_qz_given_n"] - out["log_pz"]).mean(), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["tc"] + out["dimwise_kl"], out["kl_agg"], rtol=0, atol=1e-12)
    # the same log q^ as log_aggregate_posterior
    if not ESTIMATORS[name].needs_k:
        args = (mu, lv, None) if ESTIMATORS[name].needs_field else (own_mu, own_lv, N)
        ref = log_aggregate_posterior(z, *args, name, index=index if ESTIMATORS[name].needs_field else None)
        torch.testing.assert_close(lq, ref[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_one_dimension_has_zero_tc(name):
    """D = 1: the joint is its only marginal, so tc = 0 exactly for every estimator (mss_per_dim and
    tc_no_constant included: D log W = log W and (D - 1) log(N B) = 0)."""
    N, B = 30, 7
    mu, lv = field(N, 1, seed=4)
    index = torch.arange(B) * 4
    z = draw(mu[index], lv[index], seed=5)
    _, _, out = run(name, z, mu, lv, N, index)
    torch.testing.assert_close(out["tc_terms"], torch.zeros(B, dtype=F64), rtol=0, atol=1e-12)


def test_single_posterior_has_zero_mi():
    """N = 1: q(z) = q(z|n), so the exact mi terms vanish and kl_agg is log q(z|n) - log p(z)."""
    mu, lv = field(1, 4, seed=6)
    index = torch.zeros(9, dtype=torch.long)
    z = draw(mu[index], lv[index], seed=7)
    out = decompose(z, mu, lv, estimator="exact", index=index)
    torch.testing.assert_close(out["mi_terms"], torch.zeros(9, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["kl_agg_terms"], out["log_qz_given_n"] - out["log_pz"], rtol=0, atol=1e-12)


def test_mi_plus_kl_agg_estimates_avg_kl():
    """E[log q(z|n) - log p(z)] = avg_kl: the per-sample mi + kl_agg terms average to the closed form
    within 4 standard errors (independent check of the sampled log-densities)."""
    N, D = 20000, 4
    mu, lv = field(N, D, seed=8)
    index = torch.arange(N)
    z = draw(mu, lv, seed=9)
    out = decompose(z, mu, lv, estimator="iwae", k=1, index=index, generator=torch.Generator().manual_seed(0))
    own_kl = kl_divergence(Normal(mu, torch.exp(0.5 * lv)), Normal(0.0, 1.0)).sum(1)
    diff = out["mi_terms"] + out["kl_agg_terms"] - own_kl  # mean zero per sample
    se = float(diff.std() / math.sqrt(N))
    assert abs(float(diff.mean())) < 4 * se
    assert 8 * se < 0.1  # power: an error of 0.1 nats would fail the check above


def test_field_estimators_use_the_own_rows_and_need_index():
    mu, lv = field(20, 2, seed=10)
    index = torch.tensor([19, 0, 5])
    z = draw(mu[index], lv[index], seed=11)
    out = decompose(z, mu, lv, estimator="exact", index=index)
    want = Normal(mu[index], torch.exp(0.5 * lv[index])).log_prob(z).sum(1)
    torch.testing.assert_close(out["log_qz_given_n"], want, rtol=0, atol=1e-12)
    for name in ("exact", "iwae"):
        with pytest.raises(ValueError, match="needs index"):
            decompose(z, mu, lv, estimator=name, k=3)
    with pytest.raises(ValueError, match="unknown estimator"):
        decompose(z, mu, lv, estimator="nope", index=index)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_differentiable(name):
    N, B, D = 25, 6, 3
    mu, lv = field(N, D, seed=12, dtype=torch.float32)
    index = torch.arange(B) * 2
    z = draw(mu[index], lv[index], seed=13)
    leaves = [t.clone().requires_grad_() for t in (z, mu, lv)]
    _, _, out = run(name, *leaves, N, index)
    sum(out[q] for q in SCALARS).backward()
    for t in leaves:
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    assert float(leaves[0].grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["mss", "loo", "exact"])
def test_gradcheck(name):
    N, B, D = 6, 4, 2
    mu, lv = field(N, D, seed=14)
    index = torch.tensor([0, 3, 3, 5])
    z = draw(mu[index], lv[index], seed=15)
    inputs = tuple(t.clone().requires_grad_() for t in (z, mu, lv))

    def f(a, b, c):
        out = run(name, a, b, c, N, index)[2]
        return tuple(out[q] for q in SCALARS)

    assert torch.autograd.gradcheck(f, inputs)


def test_float32_in_float32_out():
    mu, lv = field(10, 3, seed=16, dtype=torch.float32)
    z = draw(mu, lv, seed=17)
    out = decompose(z, mu, lv, 100, "stratified")
    assert all(v.dtype == torch.float32 for v in out.values())
