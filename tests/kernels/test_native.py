"""The fused C kernel (estimators.kernels.native): builds, agrees with torch, and is used where it should be."""
import math

import pytest
import torch

from estimators import kernels
from estimators.kernels import log_weighted_marginals, log_weighted_sum, marginal_lse, native
from kernel_cases import DTYPES, assert_close, brute_force, field, weight_matrix


@pytest.fixture
def built():
    if native.get() is None:
        pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}")
    return native.get()


def test_native_kernel_builds(built):
    assert set(built) == {torch.float32, torch.float64}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [1, 1023, 1024, 2500])  # below, at and across the kernel's block of 1024
@pytest.mark.parametrize("D", [3, 64])  # D = 64: the joint's blocks shrink to fit L2 (184 or 368 components)
def test_kernel_matches_brute_force_across_blocks(built, dtype, N, D):
    # Q = 13: one full tile of 8 and a partial one; N odd: a partial vector of components at the end
    z, mu, logvar = field(N=N, D=D, Q=13, seed=1, dtype=dtype)
    W = weight_matrix(13, N, seed=2, dtype=dtype)
    lw = torch.linspace(-1, 1, N, dtype=dtype)
    lw[N // 2] = -math.inf
    want_joint, want_dims = brute_force(z, mu, logvar, lw, W)
    assert_close(native.joint_lse(z, mu, logvar, lw, W), want_joint, dtype)
    assert_close(native.marginal_lse(z, mu, logvar, lw, W), want_dims, dtype)
    want_joint, want_dims = brute_force(z, mu, logvar)
    assert_close(native.joint_lse(z, mu, logvar), want_joint, dtype)
    assert_close(native.marginal_lse(z, mu, logvar), want_dims, dtype)


def test_unavailable_returns_none(monkeypatch):
    z, mu, logvar = field(N=5, D=2, Q=3, seed=3)
    monkeypatch.setenv("VAE_ESTIMATORS_NATIVE", "0")
    assert native.get() is None
    assert native.joint_lse(z, mu, logvar) is None and native.marginal_lse(z, mu, logvar) is None
    torch.testing.assert_close(kernels.log_mixture_marginals(z, mu, logvar),
                               kernels.log_mixture_marginals(z, mu, logvar, use_native=False), rtol=0, atol=0)


class _Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.fn(*args)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_marginals_take_the_native_forward(built, monkeypatch, dtype):
    z, mu, logvar = field(N=40, D=3, Q=40, seed=4, dtype=dtype)
    W = weight_matrix(40, 40, seed=5, dtype=dtype)
    spy = _Spy(native.marginal_lse)
    monkeypatch.setattr(native, "marginal_lse", spy)
    got = log_weighted_marginals(z, mu, logvar, W)
    assert len(spy.calls) == 1 and spy.calls[0][4] is not None  # the (Q, N) matrix went to the C kernel
    _, want = brute_force(z, mu, logvar, log_weight_matrix=W)
    assert_close(got, want, dtype)
    # the internal the estimators call takes it too, and its backward still runs (in torch)
    args = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    marginal_lse(*args, None, W).sum().backward()
    assert len(spy.calls) == 2 and all(a.grad is not None for a in args)
    log_weighted_marginals(z, mu, logvar, W, use_native=False)
    assert len(spy.calls) == 2  # use_native=False: the torch forward


def test_weighted_joint_takes_the_native_forward(built, monkeypatch):
    z, mu, logvar = field(N=20, D=3, Q=20, seed=6)
    W = weight_matrix(20, 20, seed=7)
    spy = _Spy(native.joint_lse)
    monkeypatch.setattr(native, "joint_lse", spy)
    log_weighted_sum(z, mu, logvar, W)
    assert len(spy.calls) == 1 and spy.calls[0][4] is not None


def test_native_and_torch_paths_agree_float32(built):
    z, mu, logvar = field(N=3000, D=10, Q=64, seed=8, dtype=torch.float32)
    W = weight_matrix(64, 3000, seed=9, dtype=torch.float32)
    for lw in (None, torch.full((3000,), -math.log(3000.0))):
        torch.testing.assert_close(marginal_lse(z, mu, logvar, lw, W),
                                   marginal_lse(z, mu, logvar, lw, W, use_native=False), rtol=0, atol=2e-5)
        torch.testing.assert_close(kernels.joint_lse(z, mu, logvar, lw, W),
                                   kernels.joint_lse(z, mu, logvar, lw, W, use_native=False), rtol=0, atol=2e-4)


@pytest.mark.skipif(native.get() is None, reason="the C kernel is not built here")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_inline_exp_is_accurate_to_a_few_ulps(dtype):
    """Two equal components, one weighted by e^x (a bias per query): out = c + log(1 + e^x) exactly, so
    the error of the kernel's exp(x), over x from the clamp to 0, shows as at most a few ulps of the sum."""
    clamp = -80.0 if dtype == torch.float32 else -700.0
    x = torch.cat([torch.linspace(clamp, 0.0, 4001, dtype=torch.float64), -torch.rand(4000, dtype=torch.float64) * 3])
    Q = x.shape[0]
    bias = torch.stack([torch.zeros(Q, dtype=torch.float64), x], 1).to(dtype)
    z, mu, lv = torch.zeros(Q, 1, dtype=dtype), torch.zeros(2, 1, dtype=dtype), torch.zeros(2, 1, dtype=dtype)
    got = native.joint_lse(z, mu, lv, None, bias).double() + 0.5 * math.log(2 * math.pi)
    want = torch.log1p(torch.exp(bias[:, 1].double()))
    eps = torch.finfo(dtype).eps
    assert float((got - want).abs().max()) <= 4 * eps
