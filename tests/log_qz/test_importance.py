"""iwae: the k-sample importance estimate of log q(z_i), against the same draws replayed by hand.

Independent references: the documented draws (``torch.randint`` of shape (B, k) from the seeded
generator) fed to a float64 Python loop, and unbiasedness of exp(log q^) against the exact q(z).
"""
import math

import pytest
import torch

from estimators import log_aggregate_posterior
from tests.helpers import F64, Z, brute_components, brute_exact, call, draw, iwae_components, make_field, z_scores


@pytest.mark.parametrize("proposal", ["uniform", "own"])
def test_iwae_matches_brute_force_with_the_same_draws(proposal):
    N, B, k = 11, 6, 7
    mu, lv = make_field(N, 2, seed=4)
    index = torch.tensor([3, 0, 10, 1, 5, 9])
    z = draw(mu[index], lv[index], seed=5)
    got, got_dims = call(log_aggregate_posterior, "iwae", z, mu, lv, index, k=k, proposal=proposal, seed=7)
    comps, log_ws = iwae_components(N, B, k, proposal, index, seed=7)
    if proposal == "own":
        assert all(int(index[i]) not in comps[i][1:] for i in range(B))
    want, want_dims = brute_components(z, mu, lv, comps, log_ws)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_uniform_proposal_does_not_need_index():
    mu, lv = make_field(11, 2, seed=4)
    index = torch.tensor([3, 0, 10])
    z = draw(mu[index], lv[index], seed=5)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    with_index = log_aggregate_posterior(z, mu[index], lv[index], None, "iwae", field=(mu, lv), index=index, k=5,
                                         generator=g())
    without = log_aggregate_posterior(z, mu[index], lv[index], None, "iwae", field=(mu, lv), k=5, generator=g())
    torch.testing.assert_close(with_index[0], without[0], rtol=0, atol=0)


def test_iwae_own_with_a_single_component_is_exact():
    """N = 1: the own component has weight 1/N = 1 and there are no others."""
    mu, lv = make_field(1, 3, seed=6)
    index = torch.zeros(1, dtype=torch.long)
    for seed in range(4):
        z = draw(mu, lv, seed=7 + seed)
        got = call(log_aggregate_posterior, "iwae", z, mu, lv, index, k=3, proposal="own")
        want = brute_exact(z, mu, lv)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-12)


N_UB, D_UB, OWN = 12, 2, 5


@pytest.mark.parametrize("proposal", ["uniform", "own"])
def test_iwae_inner_sum_is_unbiased(proposal):
    mu, lv = make_field(N_UB, D_UB, seed=20, spread=1.0, logvar=(-1.0, -0.2))
    z = draw(mu[OWN:OWN + 1], lv[OWN:OWN + 1], seed=21)[0]
    truth_joint, truth_dims = brute_exact(z[None], mu, lv)
    truth, truth_dims = truth_joint.exp()[0], truth_dims.exp()[0]
    # 20016 replicates of the same z, N rows per call (a batch holds at most N samples); one generator
    # shared by the calls, so every row draws its own k indices independently
    g = torch.Generator().manual_seed(23)
    zb, index = z.expand(N_UB, D_UB), torch.full((N_UB,), OWN)
    lq, lqd = [], []
    for _ in range(1668):
        a, b = log_aggregate_posterior(zb, mu[index], lv[index], None, "iwae", field=(mu, lv), index=index, k=3,
                                       proposal=proposal, generator=g)
        lq.append(a)
        lqd.append(b)
    lq, lqd = torch.cat(lq), torch.cat(lqd)
    assert float(z_scores(lq.exp(), truth)) < Z
    assert bool((z_scores(lqd.exp(), truth_dims) < Z).all())
    # power: the check resolves a 10 % bias
    assert float(z_scores(0.9 * lq.exp(), truth)) > Z


def test_gradcheck_iwae_own():
    mu, lv = make_field(6, 2, seed=32)
    index = torch.tensor([1, 1, 4])
    z = draw(mu[index], lv[index], seed=33)
    inputs = tuple(t.clone().requires_grad_() for t in (z, mu, lv))
    f = lambda a, b, c: call(log_aggregate_posterior, "iwae", a, b, c, index, k=3, proposal="own")  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs)


def test_own_proposal_uses_the_own_rows_of_the_batch():
    """The own term q(z_i|n_i)/N comes from the batch's mu, logvar (row i), the others from the field."""
    mu, lv = make_field(8, 2, seed=34)
    index = torch.tensor([2, 6])
    z = draw(mu[index], lv[index], seed=35)
    lq, _ = call(log_aggregate_posterior, "iwae", z, mu, lv, index, k=200, proposal="own")
    own = torch.distributions.Normal(mu[index], torch.exp(0.5 * lv[index])).log_prob(z).sum(1)
    assert bool((lq > own - math.log(8) - 1e-12).all())  # the own term alone is a lower bound
    assert lq.dtype == F64


@pytest.mark.parametrize("proposal", ["uniform", "own"])
def test_streamed_chunks_equal_one_pass_values_and_gradients(proposal, make_batch, monkeypatch):
    """Many tiny chunks (each checkpointed) give the values and gradients of a single chunk."""
    from estimators.log_qz import importance
    b = make_batch(300, 7, 3, seed=41)
    g = torch.Generator().manual_seed(5)
    wj, wd = torch.randn(b.B, generator=g, dtype=torch.float64), torch.randn(b.B, b.D, generator=g, dtype=torch.float64)
    results = []
    for chunk_bytes in (2**30, 7 * 3 * 8 * 3):  # one chunk; chunks of 3 draws
        monkeypatch.setattr(importance, "CHUNK_BYTES", chunk_bytes)
        inputs = [t.clone().requires_grad_() for t in (b.z, *b.field)]
        lq, lqd = log_aggregate_posterior(inputs[0], inputs[1][b.index], inputs[2][b.index], estimator="iwae",
                                          field=(inputs[1], inputs[2]), index=b.index, k=50, proposal=proposal,
                                          generator=torch.Generator().manual_seed(9))
        ((lq * wj).sum() + (lqd * wd).sum()).backward()
        results.append([lq.detach(), lqd.detach()] + [t.grad for t in inputs])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
