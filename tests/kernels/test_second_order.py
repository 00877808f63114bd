"""Second-order gradients through the kernels and an estimator (gradient penalties).

With ``create_graph=True`` the kernels' backward is formed by differentiable torch operations, so a
double backward works: checked by ``torch.autograd.gradgradcheck`` in float64 (with and without the
per-component weights and the (Q, N) bias, on the native, torch and disabled-native paths, which
share that backward), the first-order gradient it gives against the ordinary memory-bounded one,
and a gradient penalty through ``estimators.decompose(..., "mss")["tc"]``.
"""
import math

import pytest
import torch

import estimators
from estimators.kernels import joint_lse, log_mixture_marginals, marginal_lse, native
from kernel_cases import field, weight_matrix

KERNELS = [pytest.param(joint_lse, id="joint"), pytest.param(marginal_lse, id="marginals")]
EXTRAS = [pytest.param(False, False, id="plain"), pytest.param(True, False, id="log_weights"),
          pytest.param(False, True, id="bias"), pytest.param(True, True, id="both")]
ROUTES = ["native", "torch", "disabled"]


def _inputs(Q, N, D, weights, bias, seed=1):
    z, mu, logvar = field(N=N, D=D, Q=Q, seed=seed)
    lw = torch.linspace(-1.0, 0.5, N, dtype=torch.float64) if weights else None
    W = weight_matrix(Q, N, seed=seed + 1) if bias else None
    leaves = [t.clone().requires_grad_() for t in [z, mu, logvar] + ([lw] if weights else [])]
    return leaves, W


def _function(kernel, route, weights, W, monkeypatch):
    if route == "disabled":
        monkeypatch.setenv("VAE_ESTIMATORS_NATIVE", "0")
    use_native = route != "torch"

    def fn(z, mu, logvar, *lw):
        return kernel(z, mu, logvar, lw[0] if weights else None, W, block_bytes=64, use_native=use_native)

    return fn


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("weights, bias", EXTRAS)
@pytest.mark.parametrize("route", ROUTES)
def test_gradgradcheck(kernel, weights, bias, route, monkeypatch):
    if route == "native" and native.get() is None:
        pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}")
    leaves, W = _inputs(Q=4, N=5, D=2, weights=weights, bias=bias)
    fn = _function(kernel, route, weights, W, monkeypatch)
    assert torch.autograd.gradgradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("weights, bias", EXTRAS)
def test_differentiable_gradient_equals_the_streamed_one(kernel, weights, bias):
    """The backward formed for a double backward gives the gradient of the memory-bounded backward, and is
    differentiable (a second backward runs)."""
    leaves, W = _inputs(Q=13, N=17, D=3, weights=weights, bias=bias, seed=4)
    out = kernel(*leaves[:3], leaves[3] if weights else None, W, block_bytes=128)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    streamed = torch.autograd.grad(out, leaves, upstream, retain_graph=True)
    differentiable = torch.autograd.grad(out, leaves, upstream, create_graph=True)
    assert all(g.requires_grad for g in differentiable)
    for s, d in zip(streamed, differentiable):
        torch.testing.assert_close(d, s, rtol=1e-10, atol=1e-12)
    second = torch.autograd.grad(sum((d * d).sum() for d in differentiable), leaves)
    assert all(torch.isfinite(t).all() for t in second)


def test_zero_weight_rows_stay_finite_in_the_double_backward():
    """Rows whose weights are all zero (-inf) give a zero gradient and no NaN, first and second order."""
    leaves, _ = _inputs(Q=4, N=5, D=2, weights=False, bias=False)
    W = torch.zeros(4, 5, dtype=torch.float64)
    W[2] = -math.inf
    W[0, 1] = -math.inf
    for kernel in (joint_lse, marginal_lse):
        out = kernel(*leaves, None, W)
        g = torch.autograd.grad(out.sum(), leaves, create_graph=True)
        assert all(torch.isfinite(t).all() for t in g) and float(g[0][2].detach().abs().max()) == 0.0
        gg = torch.autograd.grad(sum((t * t).sum() for t in g), leaves)
        assert all(torch.isfinite(t).all() for t in gg)


def test_public_marginals_double_backward_in_float32():
    z, mu, logvar = field(N=30, D=3, Q=8, seed=6, dtype=torch.float32)
    z.requires_grad_()
    g, = torch.autograd.grad(log_mixture_marginals(z, mu, logvar).sum(), z, create_graph=True)
    (g * g).sum().backward()
    z64 = z.detach().double().requires_grad_()
    g64, = torch.autograd.grad(log_mixture_marginals(z64, mu.double(), logvar.double()).sum(), z64,
                               create_graph=True)
    (g64 * g64).sum().backward()
    assert z.grad.dtype == torch.float32
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-3, atol=1e-3)


def _tc(z, mu, logvar):
    return estimators.decompose(z, mu, logvar, dataset_size=1000, estimator="mss")["tc"]


def test_gradient_penalty_through_the_mss_total_correlation():
    """gradgradcheck of tc(z, mu, logvar): the penalty's gradient matches finite differences of the first gradient."""
    from tests.helpers import draw, make_field

    mu, logvar = make_field(5, 2, seed=7)
    z = draw(mu, logvar, seed=8)
    leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    assert torch.autograd.gradgradcheck(_tc, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)
    # the training-loop form: penalty = |d tc / d z|^2, then backward to every input
    g, = torch.autograd.grad(_tc(*leaves), leaves[0], create_graph=True)
    (g * g).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)
