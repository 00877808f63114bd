"""The kernels as registered torch operators: schema, fake tensors, autograd, torch.compile, export, torch.func.

``vae_estimators::joint_lse`` and ``vae_estimators::marginal_lse`` (and their backward operators) are
checked by ``torch.library.opcheck`` (schema, fake implementation, autograd registration, AOT dispatch
with static and dynamic shapes), with and without per-component weights and the (Q, N) bias, on the
native and the torch path. Then the kernels under ``torch.compile(fullgraph=True)``: one graph, the
operator in it, and the values and gradients of eager mode (they were garbage before: the C kernel
read freed memory, see :mod:`estimators.kernels._dispatch`).
"""
import math

import pytest
import torch

from estimators.kernels import joint_lse, marginal_lse, native
from kernel_cases import DTYPES, PATHS, field, weight_matrix

KERNELS = [pytest.param(joint_lse, id="joint"), pytest.param(marginal_lse, id="marginals")]
EXTRAS = [pytest.param(False, False, id="plain"), pytest.param(True, False, id="log_weights"),
          pytest.param(False, True, id="bias"), pytest.param(True, True, id="both")]


def _op(name):
    return getattr(torch.ops.vae_estimators, name).default


def _inputs(Q=5, N=7, D=3, dtype=torch.float64, weights=False, bias=False, seed=1, requires_grad=True):
    z, mu, logvar = field(N=N, D=D, Q=Q, seed=seed, dtype=dtype)
    lw = torch.linspace(-1.0, 0.5, N, dtype=dtype) if weights else None
    if lw is not None:
        lw[N // 2] = -math.inf  # a zero weight
    W = weight_matrix(Q, N, seed=seed + 1, dtype=dtype) if bias else None
    tensors = [z, mu, logvar] + ([lw] if weights else [])
    if requires_grad:
        tensors = [t.clone().requires_grad_() for t in tensors]
    z, mu, logvar, *rest = tensors
    return z, mu, logvar, (rest[0] if weights else None), W


@pytest.mark.parametrize("name", ["joint_lse", "marginal_lse"])
@pytest.mark.parametrize("weights, bias", EXTRAS)
@pytest.mark.parametrize("use_native", PATHS)
def test_opcheck(name, weights, bias, use_native):
    z, mu, logvar, lw, W = _inputs(weights=weights, bias=bias)
    # block_bytes=64: the torch path and the backward recompute many partial blocks
    torch.library.opcheck(_op(name), (z, mu, logvar, lw, W, 64, use_native))


@pytest.mark.parametrize("name", ["joint_lse_backward", "marginal_lse_backward"])
@pytest.mark.parametrize("weights, bias", EXTRAS)
def test_opcheck_backward_operators(name, weights, bias):
    z, mu, logvar, lw, W = _inputs(weights=weights, bias=bias, requires_grad=False)
    out = _op(name.removesuffix("_backward"))(z, mu, logvar, lw, W, 64, True)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    torch.library.opcheck(_op(name), (grad, z, mu, logvar, lw, W, out, 64))


def test_schema_has_optional_weights_and_bias():
    for name in ("joint_lse", "marginal_lse"):
        schema = str(_op(name)._schema)
        assert "Tensor? log_weights, Tensor? bias, SymInt block_bytes, bool use_native) -> Tensor" in schema, schema


@pytest.mark.parametrize("kernel", KERNELS)
def test_fake_tensors_give_shape_dtype_device_without_data(kernel):
    from torch._subclasses.fake_tensor import FakeTensorMode

    z, mu, logvar, lw, W = _inputs(Q=6, N=9, D=4, dtype=torch.float32, weights=True, bias=True, requires_grad=False)
    with FakeTensorMode() as mode:
        fz, fmu, flv, flw, fW = (mode.from_tensor(t) for t in (z, mu, logvar, lw, W))
        out = kernel(fz, fmu, flv, flw, fW)
    assert out.shape == ((6,) if kernel is joint_lse else (6, 4)) and out.dtype == torch.float32
    assert out.device == z.device


def _upstream(kernel, Q, D, dtype):
    """A fixed, non-uniform upstream gradient for the kernel's output."""
    shape = (Q,) if kernel is joint_lse else (Q, D)
    return torch.linspace(-1.0, 2.0, math.prod(shape), dtype=dtype).reshape(shape)


def _value_and_grads(fn, kernel, inputs):
    z, mu, logvar, lw, W = inputs
    leaves = [z, mu, logvar] + ([lw] if lw is not None else [])
    value = fn(z, mu, logvar, lw, W)
    grads = torch.autograd.grad((value * _upstream(kernel, z.shape[0], z.shape[1], z.dtype)).sum(), leaves)
    return value.detach(), grads


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compile_fullgraph_matches_eager(kernel, dtype):
    """One graph (fullgraph=True) holding the operator; forward and gradients as in eager mode."""
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: kernel(*a, block_bytes=256), fullgraph=True)
    tol = dict(rtol=0, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for weights, bias in [(False, False), (True, False), (False, True), (True, True)]:
        inputs = _inputs(Q=16, N=20, D=3, dtype=dtype, weights=weights, bias=bias)
        want = _value_and_grads(lambda *a: kernel(*a, block_bytes=256), kernel, inputs)
        got = _value_and_grads(compiled, kernel, inputs)
        torch.testing.assert_close(got[0], want[0], **tol)
        for g, w in zip(got[1], want[1]):
            torch.testing.assert_close(g, w, **tol)


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_operator_is_one_node_of_the_graph(kernel):
    z, mu, logvar, lw, W = _inputs(weights=True, bias=True, requires_grad=False)
    explanation = torch._dynamo.explain(kernel)(z, mu, logvar, lw, W)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    code = explanation.graphs[0].code
    assert f"torch.ops.vae_estimators.{kernel.__name__}.default" in code, code


@pytest.mark.parametrize("kernel", KERNELS)
def test_compile_reads_live_memory_with_new_shapes(kernel):
    """Recompiling for new shapes (dynamic after the first): every call equals eager mode, native and torch path."""
    for use_native in (True, False):
        torch._dynamo.reset()
        compiled = torch.compile(lambda *a: kernel(*a, use_native=use_native), backend="aot_eager", fullgraph=True)
        for Q, N in [(8, 11), (13, 11), (13, 30), (40, 64)]:
            z, mu, logvar, _, W = _inputs(Q=Q, N=N, D=3, dtype=torch.float32, bias=True, seed=Q + N,
                                          requires_grad=False)
            want = kernel(z, mu, logvar, None, W, use_native=use_native)
            torch.testing.assert_close(compiled(z, mu, logvar, None, W), want, rtol=0, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_export_keeps_the_operator(kernel):
    z, mu, logvar, lw, W = _inputs(weights=True, bias=True, requires_grad=False)

    class Module(torch.nn.Module):
        def forward(self, z, mu, logvar, lw, W):
            return kernel(z, mu, logvar, lw, W)

    exported = torch.export.export(Module(), (z, mu, logvar, lw, W))
    assert f"vae_estimators.{kernel.__name__}.default" in str(exported.graph)
    torch.testing.assert_close(exported.module()(z, mu, logvar, lw, W), kernel(z, mu, logvar, lw, W), rtol=0,
                               atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_torch_func_grad_vmap_and_hessian(kernel):
    """torch.func transforms (which reject custom operators' autograd in this torch) get the plain torch path."""
    from torch.func import grad, hessian, vmap

    z, mu, logvar, _, W = _inputs(Q=6, N=6, D=3, bias=True, requires_grad=False)
    u = _upstream(kernel, 6, 3, z.dtype)
    f = lambda z: (u * kernel(z, mu, logvar, None, W)).sum()  # noqa: E731
    zr = z.clone().requires_grad_()
    want, = torch.autograd.grad(f(zr), zr)
    torch.testing.assert_close(grad(f)(z), want, rtol=0, atol=1e-12)
    batched = vmap(lambda z: kernel(z, mu, logvar, None, W))(torch.stack([z, z + 0.1]))
    torch.testing.assert_close(batched[1], kernel(z + 0.1, mu, logvar, None, W), rtol=0, atol=1e-12)
    H = hessian(f)(z)
    H_ref = torch.autograd.functional.hessian(f, z)
    torch.testing.assert_close(H, H_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_bias_requiring_grad_is_refused_clearly(kernel):
    z, mu, logvar, _, W = _inputs(bias=True)
    out = _op(kernel.__name__)(z, mu, logvar, None, W.requires_grad_(), 2**20, True)
    with pytest.raises(RuntimeError, match="bias .* is a constant"):
        out.sum().backward()


def test_eager_calls_skip_the_dispatcher(monkeypatch):
    """Plain eager calls run the same functions without the operator's dispatch; traced ones use the operator."""
    from estimators.kernels import joint as joint_module

    calls, operator = [], joint_module._joint_op
    monkeypatch.setattr(joint_module, "_joint_op", lambda *a: calls.append(a) or operator(*a))
    z, mu, logvar, _, _ = _inputs()
    joint_lse(z, mu, logvar).sum().backward()
    assert not calls and z.grad is not None
    from torch._subclasses.fake_tensor import FakeTensorMode

    plain = [t.detach() for t in (z, mu, logvar)]
    with FakeTensorMode() as mode:
        joint_lse(*(mode.from_tensor(t) for t in plain))
    assert len(calls) == 1


@pytest.mark.skipif(native.get() is None, reason="native kernel unavailable")
def test_native_forward_runs_inside_the_compiled_graph(monkeypatch):
    """Under torch.compile the C kernel still serves the forward (called by the operator on real tensors)."""
    seen = []
    original = native.marginal_lse
    monkeypatch.setattr(native, "marginal_lse", lambda *a: seen.append(type(a[0])) or original(*a))
    z, mu, logvar, _, W = _inputs(Q=9, N=12, bias=True, requires_grad=False)
    torch._dynamo.reset()
    compiled = torch.compile(marginal_lse, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(z, mu, logvar, None, W), original(z, mu, logvar, None, W), rtol=0, atol=0)
    assert seen and all(t is torch.Tensor for t in seen)  # never a fake or functional tensor
