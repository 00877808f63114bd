"""The joint reduction (estimators.kernels.joint) and log_normal_matrix against brute force."""
import math

import numpy as np
import pytest
import torch

from estimators.kernels import (joint_lse, log_mixture, log_mixture_marginals, log_normal_matrix,
                                log_weighted_sum, native)
from estimators.numerics import log_normal
from kernel_cases import DTYPES, PATHS, assert_close, brute_force, field, weight_matrix


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", [2**10, 2**14, 2**24])  # tiny blocks force row and column chunking
def test_joint_matches_brute_force(use_native, dtype, block_bytes):
    z, mu, logvar = field(N=301, D=5, Q=70, seed=1, dtype=dtype)
    want, _ = brute_force(z, mu, logvar)
    got = log_mixture(z, mu, logvar, block_bytes=block_bytes, use_native=use_native)
    assert got.dtype == dtype and got.shape == (70,)
    assert_close(got, want, dtype)
    W = weight_matrix(70, 301, seed=2, dtype=dtype)
    want, _ = brute_force(z, mu, logvar, log_weight_matrix=W)
    assert_close(log_weighted_sum(z, mu, logvar, W, block_bytes=block_bytes, use_native=use_native), want, dtype)
    lw = torch.linspace(-3, 1, 301, dtype=dtype)
    lw[::5] = -math.inf
    want, _ = brute_force(z, mu, logvar, lw, W)
    assert_close(joint_lse(z, mu, logvar, lw, W, block_bytes=block_bytes, use_native=use_native), want, dtype)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("block_bytes", [2**10, 2**24])
def test_float64_matches_brute_force(use_native, block_bytes):
    z, mu, logvar = field(N=300, D=5, Q=70, seed=1)
    want_joint, want_dims = brute_force(z, mu, logvar)
    joint = log_mixture(z, mu, logvar, block_bytes=block_bytes, use_native=use_native)
    dims = log_mixture_marginals(z, mu, logvar, block_bytes=block_bytes, use_native=use_native)
    assert joint.dtype == dims.dtype == torch.float64
    np.testing.assert_allclose(joint.numpy(), want_joint, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dims.numpy(), want_dims, rtol=0, atol=1e-10)


@pytest.mark.parametrize("use_native", PATHS)
def test_sharp_posteriors_float64(use_native):
    # logvar down to -20: the matrix-product form must not cancel (float64 accumulation + centring)
    z, mu, logvar = field(N=200, D=4, Q=50, seed=2, logvar_range=(-20.0, -8.0), spread=1.0)
    want_joint, want_dims = brute_force(z, mu, logvar)
    joint = log_mixture(z, mu, logvar, use_native=use_native)
    dims = log_mixture_marginals(z, mu, logvar, use_native=use_native)
    # absolute error of the matrix-product form is ~ eps64 * max(z^2 / var): documented bound
    product_form = not use_native or native.get() is None
    scale = float((z.abs().max() + mu.abs().max()) ** 2 * torch.exp(-logvar).max()) if product_form else 1.0
    np.testing.assert_allclose(joint.numpy(), want_joint, rtol=0, atol=1e-10 * max(scale * 1e-6, 1.0))
    np.testing.assert_allclose(dims.numpy(), want_dims, rtol=0, atol=1e-10)  # direct form: no cancellation


@pytest.mark.parametrize("use_native", PATHS)
def test_float32_wide_span(use_native):
    # log-densities spanning ~1e4 nats: far-apart means, sharp and broad components
    z, mu, logvar = field(N=400, D=6, Q=80, seed=3, logvar_range=(-12.0, 2.0), spread=3.0)
    z = torch.cat([z, z[:10] + 30.0])  # queries far from every component
    want_joint, want_dims = brute_force(z.float(), mu.float(), logvar.float())
    L = log_normal_matrix(z, mu, logvar)
    assert float(L.max() - L.min()) > 1e4  # the component log-densities span over 1e4 nats
    joint = log_mixture(z.float(), mu.float(), logvar.float(), use_native=use_native)
    dims = log_mixture_marginals(z.float(), mu.float(), logvar.float(), use_native=use_native)
    assert joint.dtype == dims.dtype == torch.float32
    assert torch.isfinite(joint).all() and torch.isfinite(dims).all()
    # relative to the magnitude of the value: float32 carries ~7 digits
    tol = 1e-3 * np.maximum(1.0, np.abs(want_joint) / 1e3)
    assert np.all(np.abs(joint.double().numpy() - want_joint) <= tol)
    tol_d = 1e-3 * np.maximum(1.0, np.abs(want_dims) / 1e3)
    assert np.all(np.abs(dims.double().numpy() - want_dims) <= tol_d)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [16, 128])
def test_extreme_legal_inputs(use_native, dtype, D):
    # logvar from -20 to 10: joint log-densities down to about -1e11; float64 product form centred
    z, mu, logvar = field(N=97, D=D, Q=23, seed=4, logvar_range=(-20.0, 10.0), spread=3.0, dtype=dtype)
    W = weight_matrix(23, 97, seed=5, dtype=dtype)
    want, _ = brute_force(z, mu, logvar, log_weight_matrix=W)
    got = log_weighted_sum(z, mu, logvar, W, block_bytes=2**12, use_native=use_native)
    assert torch.isfinite(got).all()
    # the product form's error is ~ eps64 * sum_d z^2 / var (about 1e-4 here); float32 sums D terms
    if dtype == torch.float64:
        tol = 1e-9 * np.maximum(1.0, np.abs(want)) + 1e-3
    else:
        tol = 1e-5 * np.maximum(10.0, np.abs(want))
    assert np.all(np.abs(got.double().numpy() - want) <= tol)


@pytest.mark.parametrize("use_native", PATHS)
def test_log_weights_including_zero_weights(use_native):
    z, mu, logvar = field(N=60, D=3, Q=20, seed=4)
    lw = torch.randn(60, dtype=torch.float64)
    lw[::7] = -math.inf
    want_joint, want_dims = brute_force(z, mu, logvar, lw)
    np.testing.assert_allclose(log_mixture(z, mu, logvar, lw, use_native=use_native).numpy(), want_joint, atol=1e-10)
    np.testing.assert_allclose(log_mixture_marginals(z, mu, logvar, lw, use_native=use_native).numpy(),
                               want_dims, atol=1e-10)


def test_matrices_match_brute_force():
    z, mu, logvar = field(N=40, D=3, Q=15, seed=5)
    L = log_normal_matrix(z, mu, logvar)
    for n in range(40):
        want, _ = brute_force(z, mu[n:n + 1], logvar[n:n + 1])
        np.testing.assert_allclose(L[:, n].numpy(), want, atol=1e-10)
    per_dim = log_normal(z[:, None], mu[None], logvar[None])  # (Q, N, D), the direct form
    torch.testing.assert_close(L, per_dim.sum(2), rtol=0, atol=1e-10)
    assert log_normal_matrix(z.float(), mu.float(), logvar.float()).dtype == torch.float32


@pytest.mark.parametrize("use_native", PATHS)
def test_gradcheck(use_native):
    z, mu, logvar = field(N=7, D=2, Q=4, seed=6)
    lw = torch.randn(7, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar, lw)]
    for fn in (log_mixture, log_mixture_marginals):
        assert torch.autograd.gradcheck(
            lambda *a: fn(*a, block_bytes=64, use_native=use_native), args, eps=1e-6, atol=1e-7)


def test_gradient_matches_autograd_of_brute_force():
    z, mu, logvar = field(N=50, D=3, Q=12, seed=7)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    weights = torch.linspace(-1, 1, 12, dtype=torch.float64)
    (weights * log_mixture(*args, block_bytes=256)).sum().backward()
    got = [a.grad for a in args]
    ref = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    L = -0.5 * (math.log(2 * math.pi) + ref[2][None] + (ref[0][:, None] - ref[1][None]) ** 2 / torch.exp(ref[2])[None])
    (weights * torch.logsumexp(L.sum(2), 1)).sum().backward()
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r.grad, rtol=1e-9, atol=1e-11)


def test_reduced_matmul_precision_setting_does_not_leak_in():
    z, mu, logvar = field(N=100, D=8, Q=30, seed=8, logvar_range=(-12.0, -8.0))
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    W = weight_matrix(30, 100, seed=9, dtype=torch.float32)
    fns = [lambda: log_mixture(z, mu, logvar, use_native=False),
           lambda: log_weighted_sum(z, mu, logvar, W, use_native=False),
           lambda: log_mixture_marginals(z, mu, logvar, use_native=False)]
    want = [fn() for fn in fns]
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        got = [fn() for fn in fns]
    finally:
        torch.set_float32_matmul_precision(old)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("block_bytes", [2**9, 2**24])
def test_log_weighted_sum_matches_brute_force(block_bytes, use_native):
    z, mu, logvar = field(N=30, D=4, Q=25, seed=10)
    g = torch.Generator().manual_seed(11)
    W = torch.randn(25, 30, generator=g, dtype=torch.float64)
    W[torch.arange(25), torch.arange(25)] = -math.inf  # zero weights, as leave-one-out uses
    got = log_weighted_sum(z, mu, logvar, W, block_bytes=block_bytes, use_native=use_native)
    for i in range(25):
        want, _ = brute_force(z[i:i + 1], mu, logvar, W[i])
        assert float(got[i]) == pytest.approx(float(want[0]), abs=1e-10)
    torch.testing.assert_close(log_weighted_sum(z, mu, logvar, use_native=use_native), log_mixture(z, mu, logvar),
                               rtol=0, atol=1e-10)
    got32 = log_weighted_sum(z.float(), mu.float(), logvar.float(), W.float(), use_native=use_native)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), got, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"log_weight_matrix must have shape \(Q, N\) = \(25, 30\)"):
        log_weighted_sum(z, mu, logvar, W[:, :5])


@pytest.mark.parametrize("use_native", PATHS)
def test_log_weighted_sum_gradcheck(use_native):
    z, mu, logvar = field(N=6, D=2, Q=5, seed=12)
    W = torch.randn(5, 6, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    assert torch.autograd.gradcheck(lambda *a: log_weighted_sum(*a, W, block_bytes=64, use_native=use_native),
                                    args, eps=1e-6, atol=1e-7)
