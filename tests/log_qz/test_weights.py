"""Weight matrices of the minibatch estimators, each checked against its definition written out by hand."""
import math

import pytest
import torch

from estimators.log_qz import weights

SIZES = [(2, 2), (2, 10), (3, 3), (4, 9), (5, 7), (8, 1000), (64, 60000)]


def hand_matrix(kind, B, N):
    """The definitions (docs/maths.md), entry by entry, as nested Python lists of floats."""
    M = B - 1
    strat = (N - M) / (N * M)
    W = [[0.0] * B for _ in range(B)]
    for i in range(B):
        for j in range(B):
            if kind == "mss":
                W[i][j] = 1 / N if j == i else strat if j == (i + 1) % B else 1 / M
            elif kind == "stratified":
                W[i][j] = 1 / N if j == i else (N - 1) / (N * M)
            elif kind == "loo":
                W[i][j] = 0.0 if j == i else 1 / M
            elif kind == "hfvae":
                W[i][j] = (M / (N - 1) if j == i else 1.0) / B
            elif kind == "mss_shipped":
                # what the shipped code leaves: 1/N in column 0 of every row, strat in column 1,
                # 1/M elsewhere, then W[M-1, 0] = strat (row B - 2)
                W[i][j] = 1 / N if j == 0 else strat if j == 1 else 1 / M
    if kind == "mss_shipped":
        W[M - 1][0] = strat
    return torch.tensor(W, dtype=torch.float64)


BUILDERS = {
    "mss": lambda B, N: weights.mss_log_weights(B, N),
    "stratified": lambda B, N: weights.stratified_log_weights(B, N),
    "loo": lambda B, N: weights.loo_log_weights(B),
    "mss_shipped": lambda B, N: weights.mss_shipped_log_weights(B, N),
    "hfvae": lambda B, N: weights.cached_log_weights("hfvae", B, N).clone(),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("B,N", SIZES)
def test_matches_definition_entry_by_entry(kind, B, N):
    log_w = BUILDERS[kind](B, N)
    assert log_w.shape == (B, B) and log_w.dtype == torch.float64
    torch.testing.assert_close(log_w.exp(), hand_matrix(kind, B, N), rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["mss", "stratified"])
@pytest.mark.parametrize("B,N", SIZES)
def test_rows_sum_to_one_and_own_weight_is_one_over_n(kind, B, N):
    W = BUILDERS[kind](B, N).exp()
    torch.testing.assert_close(W.sum(1), torch.ones(B, dtype=torch.float64), rtol=1e-13, atol=0)
    torch.testing.assert_close(W.diagonal(), torch.full((B,), 1 / N, dtype=torch.float64), rtol=1e-14, atol=0)
    assert bool((W > 0).all())


@pytest.mark.parametrize("B", [2, 3, 10])
def test_loo_zero_diagonal_is_minus_inf(B):
    log_w = weights.loo_log_weights(B)
    assert bool(torch.isneginf(log_w.diagonal()).all())
    torch.testing.assert_close(log_w.exp().sum(1), torch.ones(B, dtype=torch.float64), rtol=1e-14, atol=0)


def test_stratified_with_whole_dataset_is_uniform():
    torch.testing.assert_close(weights.stratified_log_weights(7, 7), torch.full((7, 7), -math.log(7), dtype=torch.float64))


@pytest.mark.parametrize("B,N", SIZES)
def test_shipped_flat_stride_lands_in_columns_zero_and_one(B, N):
    """Replays the shipped flat assignments on a fresh matrix: the stride M + 1 = B steps one whole row,
    so slice [::M+1] is column 0 and [1::M+1] is column 1 (not the diagonal and superdiagonal)."""
    M = B - 1
    strat = (N - M) / (N * M)
    W = torch.full((B, B), 1 / M, dtype=torch.float64)
    flat = W.view(-1)
    assert [divmod(p, B) for p in range(0, B * B, M + 1)] == [(r, 0) for r in range(B)]
    assert [divmod(p, B) for p in range(1, B * B, M + 1)] == [(r, 1) for r in range(B)]
    flat[::M + 1] = 1 / N
    flat[1::M + 1] = strat
    W[M - 1, 0] = strat
    torch.testing.assert_close(weights.mss_shipped_log_weights(B, N).exp(), W, rtol=1e-14, atol=0)


@pytest.mark.parametrize("B,N", [(4, 9), (8, 1000), (64, 60000)])
def test_shipped_rows_and_own_weights(B, N):
    """What the bug does: row B - 2 no longer sums to 1 and the own weight is 1/N only in row 0."""
    M = B - 1
    strat = (N - M) / (N * M)
    W = weights.mss_shipped_log_weights(B, N).exp()
    sums = W.sum(1)
    others = [r for r in range(B) if r != B - 2]
    torch.testing.assert_close(sums[others], torch.ones(B - 1, dtype=torch.float64), rtol=1e-13, atol=0)
    assert math.isclose(float(sums[B - 2]), 2 * strat + (B - 2) / M, rel_tol=1e-13)
    assert not math.isclose(float(sums[B - 2]), 1.0, rel_tol=1e-6)
    own = W.diagonal()
    assert math.isclose(float(own[0]), 1 / N) and math.isclose(float(own[1]), strat)
    torch.testing.assert_close(own[2:], torch.full((B - 2,), 1 / M, dtype=torch.float64))


def test_registry_of_weight_kinds():
    assert set(weights.WEIGHT_KINDS) == set(BUILDERS)
    with pytest.raises(ValueError, match="already registered"):
        weights.register_weight_kind("mss")(lambda B, N, dtype, device: None)
    for kind, builder in weights.WEIGHT_KINDS.items():  # builders write directly in the requested dtype
        w = builder(5, 20, torch.float32, torch.device("cpu"))
        assert w.shape == (5, 5) and w.dtype == torch.float32
        torch.testing.assert_close(w.double().exp(), hand_matrix(kind, 5, 20), rtol=1e-6, atol=0)


def test_cache_is_shared_and_public_copies_are_private():
    a = weights.cached_log_weights("mss", 16, 100, torch.float32)
    b = weights.cached_log_weights("mss", 16, 100, torch.float32)
    assert a is b and a.dtype == torch.float32
    assert weights.cached_log_weights("mss", 16, 100, torch.float64) is not a
    copy = weights.mss_log_weights(16, 100, dtype=torch.float32)
    copy.fill_(0.0)
    assert float(a[0, 0]) == pytest.approx(-math.log(100))
    torch.testing.assert_close(a.double(), weights.mss_log_weights(16, 100), rtol=1e-6, atol=0)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: weights.mss_log_weights(1, 10), ValueError, "batch_size must be at least 2"),
    (lambda: weights.stratified_log_weights(5, 4), ValueError, "dataset_size must be at least batch_size"),
    (lambda: weights.mss_shipped_log_weights(3.0, 10), TypeError, "batch_size must be an int"),
    (lambda: weights.mss_log_weights(3, 10.5), TypeError, "dataset_size must be an int"),
    (lambda: weights.loo_log_weights(1), ValueError, "batch_size must be at least 2"),
    (lambda: weights.cached_log_weights("diag", 3, 10), ValueError, "unknown weight kind"),
])
def test_bad_sizes(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
