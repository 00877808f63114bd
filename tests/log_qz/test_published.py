"""The published variants (mss_shipped, mss_per_dim, tc_no_constant, hfvae, calc_mi): replicas of shipped code.

Independent references: float64 Python loops with the shipped weights written from the shipped code
(``tests.helpers.hand_weights``), and the closed-form offsets between the variants.
"""
import math

import pytest
import torch

from estimators import ESTIMATORS, decompose, log_aggregate_posterior
from tests.helpers import F64, Z, brute_minibatch, call, draw, make_field
from tests.log_qz.test_minibatch import minibatch_replicates

PUBLISHED = [name for name, info in ESTIMATORS.items() if info.published_variant]


def test_the_published_variants_are_registered_and_never_unbiased():
    assert set(PUBLISHED) == {"mss_shipped", "mss_per_dim", "tc_no_constant", "hfvae", "calc_mi"}
    for name in PUBLISHED:
        info = ESTIMATORS[name]
        assert info.family == "minibatch" and not info.unbiased_inside and info.citation


@pytest.mark.parametrize("name", PUBLISHED)
@pytest.mark.parametrize("B,D", [(5, 3), (2, 4), (9, 1), (4, 2)])
def test_published_matches_brute_force(name, B, D, make_batch):
    b = make_batch(50, B, D, seed=B * 10 + D)
    got, got_dims = call(log_aggregate_posterior, name, b.z, *b.field, b.index)
    want, want_dims = brute_minibatch(name, b.z, b.mu, b.logvar, 50)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_tc_no_constant_is_mws_tc_minus_its_missing_constant(make_batch):
    """No normalising constant at all: TC = mws TC - (D - 1) log(N B), per sample."""
    b = make_batch(1000, 32, 4, seed=9)
    mws, nc = (call(decompose, name, b.z, *b.field, b.index) for name in ("mws", "tc_no_constant"))
    torch.testing.assert_close(nc["tc_terms"], mws["tc_terms"] - (b.D - 1) * math.log(b.N * b.B), rtol=0, atol=1e-10)


def test_mss_per_dim_joint_takes_the_shipped_weight_d_times(make_batch):
    """mss_per_dim and mss_shipped share the marginals; only the joint differs (D log W_ij against log W_ij)."""
    b = make_batch(200, 6, 3, seed=10)
    shipped = call(log_aggregate_posterior, "mss_shipped", b.z, *b.field, b.index)
    per_dim = call(log_aggregate_posterior, "mss_per_dim", b.z, *b.field, b.index)
    torch.testing.assert_close(per_dim[1], shipped[1], rtol=0, atol=1e-12)
    assert bool((per_dim[0] < shipped[0] - 1.0).all())  # weights below 1 raised to the power D = 3


@pytest.mark.slow
def test_unbiasedness_check_detects_the_shipped_matrix():
    vals, _, truth, _ = minibatch_replicates("mss_shipped", position=2, replicates=200)
    assert float(((vals.mean() - truth) / (vals.std() / math.sqrt(200))).abs()) > Z


@pytest.mark.parametrize("B,N", [(2, 2), (3, 50), (16, 737280)])
def test_hfvae_is_stratified_plus_its_constant(B, N, make_batch):
    """HFVAE's batch marginal = stratified + log(N (B-1) / (B (N-1))) in log q(z) and in every log q(z_d):
    mi up by |c|, tc up by (D-1)|c|, dimwise_kl down by D|c| (0 at B = N)."""
    D = 4
    b = make_batch(60, B, D, seed=B)
    mu, lv = b.field[0][b.index], b.field[1][b.index]
    h, s = (decompose(b.z, mu, lv, N, name) for name in ("hfvae", "stratified"))
    c = math.log(N * (B - 1) / (B * (N - 1)))
    assert c <= 0.0
    torch.testing.assert_close(h["log_qz"], s["log_qz"] + c, rtol=0, atol=1e-10)
    torch.testing.assert_close(h["log_qz_dims"], s["log_qz_dims"] + c, rtol=0, atol=1e-10)
    assert float(h["mi"] - s["mi"]) == pytest.approx(-c, abs=1e-10)
    assert float(h["tc"] - s["tc"]) == pytest.approx(-(D - 1) * c, abs=1e-10)
    assert float(h["dimwise_kl"] - s["dimwise_kl"]) == pytest.approx(D * c, abs=1e-10)


def test_calc_mi_is_the_analytic_entropy_minus_the_naive_log_mean_exp(make_batch):
    """He et al. (2019): mi = mean_i -H(q(z|x_i)) - mean_i log (1/B) sum_j q(z_i|x_j), written out here."""
    b = make_batch(300, 12, 3, seed=3)
    mu, lv = b.field[0][b.index], b.field[1][b.index]
    neg_entropy = (-0.5 * (math.log(2 * math.pi) + 1.0 + lv)).sum(1).mean()
    log_density = torch.distributions.Normal(mu[None], torch.exp(0.5 * lv[None])).log_prob(b.z[:, None]).sum(2)
    want = neg_entropy - (torch.logsumexp(log_density, 1) - math.log(b.B)).mean()
    got = call(decompose, "calc_mi", b.z, *b.field, b.index)
    assert float(got["mi"]) == pytest.approx(float(want), abs=1e-12)
    assert ESTIMATORS["calc_mi"].quantities == ("mi",)


@pytest.mark.slow
def test_calc_mi_has_naive_mi_in_expectation():
    """Over replicate batches the difference calc_mi - naive (the sampled minus the analytic own term) has mean 0."""
    mu, lv = make_field(400, 3, seed=5)
    g = torch.Generator().manual_seed(11)
    diffs = []
    for r in range(400):
        index = torch.randperm(400, generator=g)[:16]
        z = draw(mu[index], lv[index], seed=1000 + r)
        out = [decompose(z, mu[index], lv[index], 400, name)["mi"] for name in ("calc_mi", "naive")]
        diffs.append(float(out[0] - out[1]))
    d = torch.tensor(diffs, dtype=F64)
    assert float(d.mean().abs() / (d.std() / math.sqrt(len(d)))) < Z
    assert float(d.std()) > 0.01  # a different variance: the two are not the same estimate
