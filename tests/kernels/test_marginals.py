"""The per-dimension reduction (estimators.kernels.marginals) against brute force, on both paths."""
import math

import numpy as np
import pytest
import torch

from estimators.kernels import log_mixture_marginals, log_weighted_marginals, marginal_lse
from estimators.kernels import marginals as marginals_module
from kernel_cases import DTYPES, PATHS, assert_close, brute_force, field, weight_matrix

# 2**10: column chunks of 16 (f64) / 32 (f32) components, N = 301 not a multiple: online merges;
# 2**14: two chunks; 2**24: whole rows and several dimensions per block
BLOCKS = [2**10, 2**14, 2**24]


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_block_sizes_exercise_column_chunks(block_bytes):
    elements = marginals_module._elements(block_bytes, torch.float64)
    dims, rows, cols = marginals_module._block_shape(5, 70, 301, elements)
    assert dims * rows * cols <= max(elements, 1)
    if block_bytes <= 2**14:
        assert cols < 301 and 301 % cols != 0  # several column chunks, the last one partial
    else:
        assert cols == 301 and dims > 1


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_marginals_match_brute_force(use_native, dtype, block_bytes):
    z, mu, logvar = field(N=301, D=5, Q=70, seed=1, dtype=dtype)
    _, want = brute_force(z, mu, logvar)
    got = log_mixture_marginals(z, mu, logvar, block_bytes=block_bytes, use_native=use_native)
    assert got.dtype == dtype and got.shape == (70, 5)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_per_component_weights_with_zeros(use_native, dtype, block_bytes):
    z, mu, logvar = field(N=301, D=4, Q=40, seed=2, dtype=dtype)
    lw = torch.randn(301, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    lw[::7] = -math.inf
    _, want = brute_force(z, mu, logvar, lw)
    got = log_mixture_marginals(z, mu, logvar, lw, block_bytes=block_bytes, use_native=use_native)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_weight_matrix_with_zero_weights(use_native, dtype, block_bytes):
    z, mu, logvar = field(N=301, D=4, Q=40, seed=4, dtype=dtype)
    W = weight_matrix(40, 301, seed=5, dtype=dtype)
    _, want = brute_force(z, mu, logvar, log_weight_matrix=W)
    got = log_weighted_marginals(z, mu, logvar, W, block_bytes=block_bytes, use_native=use_native)
    assert got.dtype == dtype and got.shape == (40, 4)
    assert_close(got, want, dtype)
    # both weights at once (the internal): per-component and row-specific add up
    lw = torch.linspace(-2, 1, 301, dtype=torch.float64).to(dtype)
    lw[5] = -math.inf
    _, want = brute_force(z, mu, logvar, lw, W)
    assert_close(marginal_lse(z, mu, logvar, lw, W, block_bytes=block_bytes, use_native=use_native), want, dtype)


@pytest.mark.parametrize("use_native", PATHS)
def test_square_minibatch_matrix_and_no_matrix(use_native):
    # the estimators' shape: Q = N = B with a (B, B) matrix; None is the unweighted logsumexp
    z, mu, logvar = field(N=64, D=6, Q=64, seed=6)
    W = weight_matrix(64, 64, seed=7)
    _, want = brute_force(z, mu, logvar, log_weight_matrix=W)
    assert_close(log_weighted_marginals(z, mu, logvar, W, use_native=use_native), want, torch.float64)
    torch.testing.assert_close(log_weighted_marginals(z, mu, logvar, use_native=use_native),
                               log_mixture_marginals(z, mu, logvar, use_native=use_native), rtol=0, atol=1e-12)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [1, 16, 128])
def test_extreme_legal_inputs(use_native, dtype, D):
    # logvar from -20 (sd 4.5e-5) to 10 (sd 148): log-densities from about +9 to -1e10 per term
    z, mu, logvar = field(N=97, D=D, Q=23, seed=8, logvar_range=(-20.0, 10.0), spread=3.0, dtype=dtype)
    z = torch.cat([z, z[:3] + 50.0])  # far from every component
    W = weight_matrix(26, 97, seed=9, dtype=dtype)
    _, want = brute_force(z, mu, logvar)
    assert_close(log_mixture_marginals(z, mu, logvar, block_bytes=2**12, use_native=use_native), want, dtype)
    _, want = brute_force(z, mu, logvar, log_weight_matrix=W)
    assert_close(log_weighted_marginals(z, mu, logvar, W, block_bytes=2**12, use_native=use_native), want, dtype)


@pytest.mark.parametrize("use_native", PATHS)
def test_float32_wide_span(use_native):
    # log-densities spanning ~1e4 nats: far-apart means, sharp and broad components
    z, mu, logvar = field(N=400, D=6, Q=80, seed=10, logvar_range=(-12.0, 2.0), spread=3.0)
    z = torch.cat([z, z[:10] + 30.0])
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    _, want = brute_force(z, mu, logvar)
    got = log_mixture_marginals(z, mu, logvar, use_native=use_native)
    assert got.dtype == torch.float32
    assert np.all(np.abs(got.double().numpy() - want) <= 1e-3 * np.maximum(1.0, np.abs(want) / 1e3))


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("with_matrix", [False, True], ids=["no-matrix", "matrix"])
def test_gradcheck(use_native, with_matrix):
    z, mu, logvar = field(N=9, D=3, Q=5, seed=11)
    W = weight_matrix(5, 9, seed=12) if with_matrix else None
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    # block_bytes=64: blocks of 8 float64 elements, so the backward recomputes many partial blocks
    assert torch.autograd.gradcheck(lambda *a: marginal_lse(*a, None, W, block_bytes=64, use_native=use_native),
                                    args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("use_native", PATHS)
def test_gradcheck_per_component_weights(use_native):
    z, mu, logvar = field(N=7, D=2, Q=4, seed=13)
    lw = torch.randn(7, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar, lw)]
    assert torch.autograd.gradcheck(
        lambda *a: log_mixture_marginals(*a, block_bytes=64, use_native=use_native), args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_matches_autograd_of_brute_force(dtype):
    z, mu, logvar = field(N=50, D=3, Q=12, seed=14, logvar_range=(-8.0, 2.0), dtype=dtype)
    W = weight_matrix(12, 50, seed=15, dtype=dtype)
    upstream = torch.randn(12, 3, generator=torch.Generator().manual_seed(16), dtype=torch.float64).to(dtype)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    (upstream * marginal_lse(*args, None, W, block_bytes=2**9)).sum().backward()
    ref = [t.double().clone().requires_grad_() for t in (z, mu, logvar)]
    diff = ref[0][:, None] - ref[1][None]
    L = -0.5 * (math.log(2 * math.pi) + ref[2][None] + diff ** 2 / torch.exp(ref[2])[None]) + W.double()[:, :, None]
    (upstream.double() * torch.logsumexp(L, 1)).sum().backward()
    rtol, atol = (1e-9, 1e-9) if dtype == torch.float64 else (2e-4, 1e-3)
    for a, r in zip(args, ref):
        torch.testing.assert_close(a.grad.double(), r.grad, rtol=rtol, atol=atol * float(r.grad.abs().max()))


def test_no_gradient_to_the_weight_matrix():
    z, mu, logvar = field(N=6, D=2, Q=6, seed=17)
    W = weight_matrix(6, 6, seed=18).requires_grad_()
    out = log_weighted_marginals(z.requires_grad_(), mu, logvar, W)
    out.sum().backward()
    assert W.grad is None and z.grad is not None


def test_forward_and_backward_memory_is_blocked():
    # one column chunk at a time: a (Q, N) block is never formed when the budget is smaller
    z, mu, logvar = field(N=300, D=2, Q=40, seed=19)
    seen = []
    original = marginals_module._blocks

    def spy(*args):
        for item in original(*args):
            seen.append((item[4].c1 - item[4].c0, [v.numel() for v in item[5]], [b.numel() for b in args[-1]]))
            yield item

    marginals_module._blocks = spy
    try:
        args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
        marginal_lse(*args, block_bytes=2**10, use_native=False).sum().backward()
    finally:
        marginals_module._blocks = original
    assert len({n for _, _, buffers in seen for n in buffers}) == 1  # one buffer size, forward and backward
    assert max(n for _, views, buffers in seen for n in views + buffers) <= 2**10 // 8
    assert max(cols for cols, _, _ in seen) < 300  # column chunks


@pytest.mark.parametrize("use_native", PATHS)
def test_huge_variances_take_the_direct_sum(use_native):
    # logvar near 100 in float32: prec = exp(-logvar) is denormal and c / prec overflows, so the
    # fused two-pass form is not used; the result must still be the brute-force one
    z, mu, logvar = field(N=30, D=2, Q=10, seed=20, dtype=torch.float32)
    logvar[:, 1] = 95.0 + torch.arange(30.0) / 10
    W = weight_matrix(10, 30, seed=21, dtype=torch.float32)
    assert marginals_module._Layout(z, mu, logvar, None).k is None
    _, want = brute_force(z, mu, logvar, log_weight_matrix=W)
    assert_close(log_weighted_marginals(z, mu, logvar, W, use_native=use_native), want, torch.float32)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    marginal_lse(*args, None, W).sum().backward()
    assert all(torch.isfinite(a.grad).all() for a in args)
