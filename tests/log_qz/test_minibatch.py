"""The minibatch estimators (naive, mws, mss, stratified, loo): brute force, exact offsets, unbiasedness, gradients.

Independent references: Python float64 loops with the weights written from their definitions
(``tests.helpers.brute_minibatch``), and a plain-autograd B x B x D broadcast for the gradients.
"""
import math

import pytest
import torch

from estimators import ESTIMATORS, decompose, log_aggregate_posterior
from estimators.log_qz import minibatch as minibatch_module
from tests.helpers import F64, Z, brute_exact, brute_minibatch, call, draw, hand_weights, make_field, z_scores

MINIBATCH = [name for name, info in ESTIMATORS.items() if info.family == "minibatch" and not info.published_variant]


def test_the_module_registers_the_five_estimators():
    assert set(MINIBATCH) == {"naive", "mws", "mss", "stratified", "loo"}
    for name in MINIBATCH:
        info = ESTIMATORS[name]
        assert info.description and info.citation and info.weights is not None
    assert {n for n in MINIBATCH if ESTIMATORS[n].min_batch == 2} == {"mss", "stratified", "loo"}
    assert {n for n in MINIBATCH if ESTIMATORS[n].needs_dataset_size} == {"mws", "mss", "stratified"}


@pytest.mark.parametrize("name", MINIBATCH)
@pytest.mark.parametrize("B,D,block_bytes", [(5, 3, None), (5, 3, 80), (5, 3, 480), (2, 4, None), (9, 1, 56)])
def test_minibatch_matches_brute_force(name, B, D, block_bytes, make_batch, monkeypatch):
    """Every minibatch estimator vs a float64 Python loop; small blocks exercise the row/column chunking."""
    if block_bytes is not None:
        monkeypatch.setattr(minibatch_module, "BLOCK_BYTES", block_bytes)
    b = make_batch(50, B, D, seed=B * 10 + D)
    got, got_dims = call(log_aggregate_posterior, name, b.z, *b.field, b.index)
    want, want_dims = brute_minibatch(name, b.z, b.mu, b.logvar, 50)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_dims, want_dims, rtol=0, atol=1e-10)


def test_mws_minus_naive_offsets_are_exact(make_batch):
    """mws - naive is a per-sample constant: mi + log N, kl_agg - log N, tc + (D - 1) log N, dimwise_kl - D log N."""
    b = make_batch(1000, 32, 4, seed=8)
    N, D = b.N, b.D
    naive, mws = (call(decompose, name, b.z, *b.field, b.index) for name in ("naive", "mws"))
    offsets = {"mi": math.log(N), "tc": (D - 1) * math.log(N), "dimwise_kl": -D * math.log(N), "kl_agg": -math.log(N)}
    for q, off in offsets.items():
        torch.testing.assert_close(mws[f"{q}_terms"] - naive[f"{q}_terms"], torch.full((b.B,), off, dtype=F64),
                                   rtol=0, atol=1e-10)


def test_stratified_with_the_whole_dataset_equals_exact():
    """B = N: the stratified weights are 1/N everywhere, so the estimate is the exact mixture (brute-force loop)."""
    N, D = 16, 3
    mu, lv = make_field(N, D, seed=11)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    z = draw(mu[perm], lv[perm], seed=12)
    strat = call(log_aggregate_posterior, "stratified", z, mu, lv, perm)
    exact = call(log_aggregate_posterior, "exact", z, mu, lv, perm)
    want = brute_exact(z, mu, lv)
    for got in (strat, exact):
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# unbiasedness inside the log: E[exp(log q^(z))] = q(z) for fixed z and own index


N_UB, D_UB, B_UB, OWN, R_UB = 12, 2, 4, 5, 800


def unbiased_setup():
    mu, lv = make_field(N_UB, D_UB, seed=20, spread=1.0, logvar=(-1.0, -0.2))
    z = draw(mu[OWN:OWN + 1], lv[OWN:OWN + 1], seed=21)[0]
    truth_joint, truth_dims = brute_exact(z[None], mu, lv)
    return mu, lv, z, truth_joint.exp()[0], truth_dims.exp()[0]


def minibatch_replicates(name, position, replicates=R_UB):
    """exp(log q^) at z over random batches holding OWN at ``position`` (others uniform without replacement)."""
    mu, lv, z, truth, truth_dims = unbiased_setup()
    g = torch.Generator().manual_seed(22)
    others = torch.tensor([n for n in range(N_UB) if n != OWN])
    vals, dvals = [], []
    for _ in range(replicates):
        batch = others[torch.randperm(N_UB - 1, generator=g)[:B_UB - 1]].tolist()
        batch.insert(position, OWN)
        index = torch.tensor(batch)
        zb = mu[index].clone()  # other rows' samples do not enter row ``position``'s estimate
        zb[position] = z
        lq, lqd = call(log_aggregate_posterior, name, zb, mu, lv, index)
        vals.append(lq[position])
        dvals.append(lqd[position])
    return torch.stack(vals).exp(), torch.stack(dvals).exp(), truth, truth_dims


@pytest.mark.slow  # 800 estimator calls: 0.4 s with one thread, 5-16 s with two on this 2-core machine
@pytest.mark.parametrize("name", ["mss", "stratified"])
@pytest.mark.parametrize("position", [1, B_UB - 1])
def test_minibatch_inner_sum_is_unbiased(name, position):
    vals, dvals, truth, truth_dims = minibatch_replicates(name, position)
    assert float(z_scores(vals, truth)) < Z
    assert bool((z_scores(dvals, truth_dims) < Z).all())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["naive", "mws", "loo"])
def test_unbiasedness_check_detects_biased_estimators(name):
    """The same check has the power to reject the estimators that are not unbiased inside."""
    vals, _, truth, _ = minibatch_replicates(name, position=2, replicates=200)
    assert float(z_scores(vals, truth)) > Z


# ------------------------------------------------------------------------------------------------
# gradients


def broadcast_reference(name, z, mu, lv, N):
    """Plain-autograd B x B x D implementation (the published code's layout), weights from the definitions."""
    B, D = z.shape
    Ld = -0.5 * (math.log(2 * math.pi) + lv[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-lv[None]))
    Wj, Wd = hand_weights(name, B, N, D)
    lwj = torch.tensor(Wj, dtype=z.dtype).log()
    lwd = torch.tensor(Wd, dtype=z.dtype).log()
    return torch.logsumexp(Ld.sum(2) + lwj, 1), torch.logsumexp(Ld + lwd[:, :, None], 1)


@pytest.mark.parametrize("name", [n for n, i in ESTIMATORS.items() if i.family == "minibatch"])
def test_gradient_matches_plain_autograd_with_many_blocks(name, make_batch, monkeypatch):
    """Custom backward passes vs autograd through the broadcast form, on a batch split into many blocks."""
    monkeypatch.setattr(minibatch_module, "BLOCK_BYTES", 320)
    b = make_batch(500, 23, 3, seed=34)
    g = torch.Generator().manual_seed(36)
    wj, wd = torch.randn(b.B, generator=g, dtype=F64), torch.randn(b.B, b.D, generator=g, dtype=F64)
    grads = []
    for f in (lambda z, m, v: call(log_aggregate_posterior, name, z, m, v, b.index),
              lambda z, m, v: broadcast_reference(name, z, m[b.index], v[b.index], b.N)):
        inputs = [t.clone().requires_grad_() for t in (b.z, *b.field)]
        lq, lqd = f(*inputs)
        ((lq * wj).sum() + (lqd * wd).sum()).backward()
        grads.append([t.grad for t in inputs])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
