r"""How the kernels reach torch: registered operators, and a plain eager fast path to them.

Each kernel is a pair of registered torch operators (``torch.library.custom_op``), the forward value
and its memory-bounded backward, with fake implementations (shape, dtype, device) and the autograd
formula registered, so that ``torch.compile`` (dynamo, AOTAutograd, inductor) and ``torch.export``
treat a kernel as one opaque operator that runs on real tensors only:

* ``vae_estimators::joint_lse(Tensor z, Tensor mu, Tensor logvar, Tensor? log_weights, Tensor? bias,
  SymInt block_bytes, bool use_native) -> Tensor`` (Q,), and ``vae_estimators::joint_lse_backward``;
* ``vae_estimators::marginal_lse(...)`` (same arguments) -> Tensor (Q, D), and
  ``vae_estimators::marginal_lse_backward``.

Why (the bug this replaced): the fused C kernel was called through ctypes inside the Python code
that dynamo traces. Dynamo put the temporaries handed to C (the contiguous copies of mu, of
exp(-logvar)/2, of the constants, the output buffer) into a graph, broke the graph at the ctypes call
(which it cannot trace) and passed the C function their ``data_ptr()`` as plain integers; in the
resumed bytecode only the output buffer was still referenced, so the other graph outputs were freed
*before* the call, and the C kernel read freed (reused) memory: silently wrong values under
``torch.compile`` (in eager mode the Python locals kept the tensors alive; with
``VAE_ESTIMATORS_NATIVE=0`` there was no ctypes call, hence correct). Behind an operator boundary
the C call only ever sees real, live tensors.

Eager fast path: calling a custom operator with autograd costs tens of microseconds of Python per
call in torch 2.13 (the generated autograd function binds its arguments to the schema, and the
backward operator is dispatched again), a few percent of a minibatch estimator's call. So in plain
eager mode (:func:`eager`: not compiling or exporting, no torch dispatch mode active, ordinary
tensors) the kernels run the very same forward, setup and backward functions through an
old-style ``torch.autograd.Function`` instead, and anything traced goes through the operators.

``torch.func`` transforms reject the operators' generated autograd functions in this torch
(pytorch/pytorch#168393, #179652); inside them the kernels compute the plain torch logsumexp of the
whole matrix instead (differentiable to any order, vmappable; memory not bounded).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["eager", "functorch_active", "register_kernel_autograd"]

_PLAIN = (Tensor, torch.nn.Parameter)


def eager(*tensors: Tensor | None) -> bool:
    """True in plain eager mode on ordinary tensors: take the direct path, not the registered operator.

    False while dynamo traces or export runs (``torch.compiler.is_compiling()``), under any torch
    dispatch mode (fake tensors, make_fx proxies, functionalization, FlopCounterMode, ...) and for
    tensor subclasses (FakeTensor, FunctionalTensor): there the operator is called, whose implementation
    then runs on real tensors only.
    """
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack():
        return False
    return all(t is None or type(t) in _PLAIN for t in tensors)


def functorch_active() -> bool:
    """A torch.func transform (grad, vmap, jacrev, ...) is active."""
    return torch._C._are_functorch_transforms_active()


def register_kernel_autograd(op, name: str, forward, streamed_backward, op_backward, differentiable_backward):
    r"""Register the autograd formula of a kernel operator ``op`` and return its eager ``autograd.Function``.

    One wiring for both kernels. The operator's inputs are ``(z, mu, logvar, log_weights, bias,
    block_bytes, use_native)``; the backwards return ``(dz, dmu, dlogvar, dlog_weights)``:
    ``streamed_backward(grad, *saved, out, block_bytes)`` in eager mode, the registered backward operator
    ``op_backward`` (same arguments) when traced, and ``differentiable_backward(grad, *saved)`` when the
    backward itself is recorded (create_graph=True). The bias (a constant log-weight matrix) takes no
    gradient.
    """

    def setup(ctx, inputs, output):
        z, mu, logvar, log_weights, bias, block_bytes, _ = inputs
        ctx.save_for_backward(z, mu, logvar, log_weights, bias, output)
        ctx.block_bytes = block_bytes

    def backward(ctx, grad):
        z, mu, logvar, log_weights, bias, out = ctx.saved_tensors
        if ctx.needs_input_grad[4]:
            raise RuntimeError(f"vae_estimators::{name}: the bias (Q, N) is a constant (no gradient flows to it); "
                               "pass bias.detach()")
        if torch.is_grad_enabled():  # create_graph=True: the gradient must itself be differentiable
            gz, gmu, glv, gw = differentiable_backward(grad, z, mu, logvar, log_weights, bias)
        else:
            run = streamed_backward if eager(grad, z) else op_backward
            gz, gmu, glv, gw = run(grad, z, mu, logvar, log_weights, bias, out, ctx.block_bytes)
        gw = gw.to(log_weights.dtype) if log_weights is not None and ctx.needs_input_grad[3] else None
        return gz, gmu, glv, gw, None, None, None

    op.register_autograd(backward, setup_context=setup)

    class Eager(torch.autograd.Function):
        """The operator's forward, setup and backward without the dispatcher (plain eager mode only)."""

        @staticmethod
        def forward(ctx, *inputs):
            out = forward(*inputs)
            setup(ctx, inputs, out)
            return out

        @staticmethod
        def backward(ctx, grad):
            return backward(ctx, grad)

    Eager.__name__ = Eager.__qualname__ = f"{name}_eager"
    return Eager
