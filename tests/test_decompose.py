"""decompose: per-sample terms against a brute-force float64 loop, special cases, gradients.

The identities mi + kl_agg = mean [log q(z|n) - log p(z)] and tc + dimwise_kl = kl_agg hold by
construction of decompose (each quantity is a difference of the same three log-densities), so
testing them cannot fail. Instead every per-sample term is checked against an independent
computation: log q(z_i|n_i) and log p(z_i) by Python loops over math.log, log q^(z_i) and its
marginals by the brute-force loops of ``tests.helpers`` (weights from their definitions, iwae's
draws replayed), avg_kl against torch.distributions.
"""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from estimators import ESTIMATORS, QUANTITIES, decompose, log_aggregate_posterior
from tests.helpers import (F64, Z, brute_components, brute_exact, brute_log_normal_rows, brute_log_prior,
                           brute_minibatch, call, draw, iwae_components, make_field)

SCALARS = QUANTITIES + ("avg_kl",)
PER_SAMPLE = ("mi_terms", "kl_agg_terms", "tc_terms", "dimwise_kl_terms", "log_qz", "log_qz_given_n", "log_pz")
K = 6


def brute_log_qz(name, b):
    """Independent float64 loops for log q^(z_i) and log q^(z_id) of estimator ``name`` on batch ``b``."""
    info = ESTIMATORS[name]
    if info.family == "minibatch":
        return brute_minibatch(name, b.z, b.mu, b.logvar, b.N)
    if info.family == "exact":
        return brute_exact(b.z, *b.field)
    comps, log_ws = iwae_components(b.N, b.B, K, "uniform", b.index, seed=0)
    return brute_components(b.z, *b.field, comps, log_ws)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_terms_against_a_brute_force_loop(name, small_batch):
    b = small_batch
    out = call(decompose, name, b.z, *b.field, b.index, k=K)
    assert set(out) == set(SCALARS) | set(PER_SAMPLE) | {"log_qz_dims"}
    for key in SCALARS:
        assert out[key].shape == () and out[key].dtype == F64
    for key in PER_SAMPLE:
        assert out[key].shape == (b.B,) and out[key].dtype == F64
    assert out["log_qz_dims"].shape == (b.B, b.D)

    # independent computations, term by term
    log_own, log_prior = brute_log_normal_rows(b.z, b.mu, b.logvar), brute_log_prior(b.z)
    lq, lqd = brute_log_qz(name, b)
    # calc_mi (He et al. 2019) puts the closed-form -H(q(z|n_i)) in place of log q(z_i|n_i) in mi
    own = (-0.5 * (math.log(2 * math.pi) + 1.0 + b.logvar)).sum(1) if name == "calc_mi" else log_own
    want = {
        "log_qz_given_n": log_own, "log_pz": log_prior, "log_qz": lq, "log_qz_dims": lqd,
        "mi_terms": own - lq, "kl_agg_terms": lq - log_prior,
        "tc_terms": lq - lqd.sum(1), "dimwise_kl_terms": lqd.sum(1) - log_prior,
    }
    for key, value in want.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=1e-10, msg=key)
    for q in QUANTITIES:
        assert float(out[q]) == pytest.approx(float(want[f"{q}_terms"].mean()), abs=1e-10), q
    # avg_kl: torch.distributions' closed form
    own = Normal(b.mu, torch.exp(0.5 * b.logvar))
    torch.testing.assert_close(out["avg_kl"], kl_divergence(own, Normal(0.0, 1.0)).sum(1).mean(), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["log_qz_given_n"], own.log_prob(b.z).sum(1), rtol=0, atol=1e-12)
    # decompose uses the same log q^ as log_aggregate_posterior (same seed: same draws for iwae)
    ref = call(log_aggregate_posterior, name, b.z, *b.field, b.index, k=K)
    torch.testing.assert_close(out["log_qz"], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(out["log_qz_dims"], ref[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_one_dimension_has_zero_tc(name, make_batch):
    """D = 1: the joint is its only marginal, so tc = 0 exactly for every estimator (mss_per_dim and
    tc_no_constant included: D log W = log W and (D - 1) log(N B) = 0). The joint and the marginal
    kernels are separate code paths, so this is a real check."""
    b = make_batch(30, 7, 1, seed=4)
    out = call(decompose, name, b.z, *b.field, b.index)
    torch.testing.assert_close(out["tc_terms"], torch.zeros(b.B, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("N", [1, 9])
def test_identical_posteriors_have_zero_mi(N):
    """All posteriors equal (N = 1 included): q(z) = q(z|n), so the exact mi terms vanish and
    kl_agg is log q(z|n) - log p(z) (closed form through torch.distributions)."""
    mu, lv = make_field(1, 4, seed=6)
    mu, lv = mu.expand(N, 4), lv.expand(N, 4)
    index = torch.arange(N)
    z = draw(mu[index], lv[index], seed=7)
    out = call(decompose, "exact", z, mu, lv, index)
    torch.testing.assert_close(out["mi_terms"], torch.zeros(N, dtype=F64), rtol=0, atol=1e-12)
    own = Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(out["kl_agg_terms"], own, rtol=0, atol=1e-12)


def test_mi_plus_kl_agg_estimates_avg_kl():
    """E[log q(z|n) - log p(z)] = avg_kl: the per-sample mi + kl_agg terms average to the closed form
    within 4 standard errors (a statistical check of the sampled log-densities, not an identity)."""
    N, D = 20000, 4
    mu, lv = make_field(N, D, seed=8, spread=1.0, logvar=(-2.0, 0.0))
    index = torch.arange(N)
    z = draw(mu, lv, seed=9)
    out = call(decompose, "iwae", z, mu, lv, index, k=1)
    own_kl = kl_divergence(Normal(mu, torch.exp(0.5 * lv)), Normal(0.0, 1.0)).sum(1)
    diff = out["mi_terms"] + out["kl_agg_terms"] - own_kl  # mean zero per sample
    se = float(diff.std() / math.sqrt(N))
    assert abs(float(diff.mean())) < Z * se
    assert 2 * Z * se < 0.1  # power: an error of 0.1 nats would fail the check above


def test_field_estimators_need_the_field(make_batch):
    b = make_batch(20, 3, 2, seed=10)
    for name in ("exact", "iwae"):
        with pytest.raises(ValueError, match="reads the whole data set: pass field="):
            decompose(b.z, b.mu, b.logvar, None, name, k=3)
    with pytest.raises(ValueError, match="unknown estimator"):
        call(decompose, "nope", b.z, *b.field, b.index)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_differentiable(name, make_batch):
    b = make_batch(25, 6, 3, seed=12, dtype=torch.float32)
    leaves = [t.clone().requires_grad_() for t in (b.z, *b.field)]
    out = call(decompose, name, *leaves, b.index)
    sum(out[q] for q in SCALARS).backward()
    for t in leaves:
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    assert float(leaves[0].grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["mss", "loo", "exact"])
def test_gradcheck(name, make_batch):
    b = make_batch(6, 4, 2, seed=14)
    inputs = tuple(t.clone().requires_grad_() for t in (b.z, *b.field))

    def f(z, m, v):
        out = call(decompose, name, z, m, v, b.index)
        return tuple(out[q] for q in SCALARS)

    assert torch.autograd.gradcheck(f, inputs)


def test_float32_in_float32_out(make_batch):
    b = make_batch(100, 10, 3, seed=16, dtype=torch.float32)
    out = call(decompose, "stratified", b.z, *b.field, b.index)
    assert all(v.dtype == torch.float32 for v in out.values())
