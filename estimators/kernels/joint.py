r"""The joint reduction: out_i = logsumexp_n (log N(z_i; mu_n, diag var_n) + log w_n + bias_in), streamed.

Matrix-product form: sum_d (z - mu)^2 / var = z^2 . prec - 2 z . (mu prec) + mu^2 . prec, one
matmul of the augmented features A = [z^2, z, 1] (Q, 2D+1) and C = [-prec/2, mu prec, c_n]
(N, 2D+1). In float32 this cancels catastrophically for sharp posteriors (errors of nats at
logvar ~ -10), so the product is always formed in float64 (:data:`estimators.numerics.ACCUMULATE`)
from inputs centred on the mean of mu; the result is cast back to the input dtype. The matmul is
cheap next to the exps. ``torch.set_float32_matmul_precision`` does not touch float64 products, so
a global "medium" (bf16) setting cannot degrade this kernel.

The logsumexp is taken block by block (rows x column chunks of the Q x N matrix, one float64 block
of ``block_bytes``), with an online (running max, running sum) merge across column chunks, the
exact maximum subtracted and (L - max) clamped at :func:`estimators.numerics.exp_clamp` before exp.
The backward pass recomputes each block and contracts the responsibilities with the features by
matmul, so it is as memory-bounded as the forward. The forward value comes from the fused C kernel
(:mod:`estimators.kernels.native`) when it is available.

Internal: inputs are trusted (same-dtype 2-D tensors; see :mod:`estimators.kernels` for the
validated public functions).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import native
from ..numerics import ACCUMULATE, LOG_2PI, exp_clamp

__all__ = ["DEFAULT_BLOCK_BYTES", "joint_lse", "normal_matrix"]

DEFAULT_BLOCK_BYTES = 16 * 2**20  # one float64 block of L; small enough to stay near cache
_CLAMP = exp_clamp(ACCUMULATE)  # the blocks are float64


def _features(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Augmented float64 features with A @ C.T = L_in + log w_n.

    A = [z^2, z, 1] (Q, 2D+1); C = [-prec/2, mu prec, c_n] (N, 2D+1) where
    c_n = -sum_d (mu^2 prec + logvar + log 2pi) / 2 + log w_n; z and mu are centred on the
    (detached) mean of mu first, which reduces cancellation for offset latents.
    """
    centre = mu.detach().to(ACCUMULATE).mean(0)
    zc, muc = z.to(ACCUMULATE) - centre, mu.to(ACCUMULATE) - centre
    lv = logvar.to(ACCUMULATE)
    prec = torch.exp(-lv)
    const = -0.5 * (muc * muc * prec + lv + LOG_2PI).sum(1)
    if log_weights is not None:
        const = const + log_weights.to(ACCUMULATE)
    A = torch.cat([zc * zc, zc, torch.ones_like(zc[:, :1])], dim=1)
    C = torch.cat([-0.5 * prec, muc * prec, const[:, None]], dim=1)
    return A, C


def normal_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The (Q, N) matrix log N(z_i; mu_n, diag var_n) in the float64 product form, in z's dtype."""
    A, C = _features(z, mu, logvar, None)
    return (A @ C.T).to(z.dtype)


def _block_sizes(Q: int, N: int, block_bytes: int) -> tuple[int, int]:
    """Rows and columns of one float64 block: whole rows of N when they fit, else column chunks."""
    elements = max(block_bytes // 8, 1)
    cols = min(N, max(elements // 64, 1)) if N * 64 > elements else N
    rows = max(min(Q, elements // cols), 1)
    return rows, cols


def _lse_blocks(A: Tensor, C: Tensor, block_bytes: int, bias: Tensor | None) -> Tensor:
    """logsumexp over the last axis of A @ C^T (+ bias), block by block, (Q,).

    Online (running max, running sum) merge across column chunks; in-place exp on each block.
    """
    Q, N = A.shape[0], C.shape[0]
    rows, cols = _block_sizes(Q, N, block_bytes)
    out = torch.empty(Q, dtype=A.dtype, device=A.device)
    Ct = C.T
    lowest = torch.finfo(A.dtype).min
    for r0 in range(0, Q, rows):
        a = A[r0:r0 + rows]
        run_max = run_sum = None
        for c0 in range(0, N, cols):
            L = a @ Ct[:, c0:c0 + cols]  # (r, c)
            if bias is not None:
                L.add_(bias[r0:r0 + rows, c0:c0 + cols])
            m = L.amax(dim=1, keepdim=True).clamp_(min=lowest)  # all -inf: no NaN
            if run_max is not None:
                new_max = torch.maximum(run_max, m)
                run_sum = run_sum * torch.exp(run_max - new_max)
                m = new_max
            L.sub_(m).clamp_(min=_CLAMP).exp_()
            s = L.sum(dim=1, keepdim=True)
            run_sum = s if run_sum is None else run_sum + s
            run_max = m
        out[r0:r0 + rows] = (run_max + torch.log(run_sum)).squeeze(1)
    return out


def _lse_blocks_backward(A: Tensor, C: Tensor, out: Tensor, grad: Tensor, block_bytes: int,
                         bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Gradients of sum(grad * lse(A @ C^T + bias)) w.r.t. A and C, recomputing each block.

    d out_i / d L_in is the responsibility r_in = exp(L_in - out_i), so with G = grad * r:
    dA = G @ C and dC = G^T @ A.
    """
    Q, N = A.shape[0], C.shape[0]
    rows, cols = _block_sizes(Q, N, block_bytes)
    grad_A = torch.zeros_like(A)
    grad_C = torch.zeros_like(C)
    Ct = C.T
    for r0 in range(0, Q, rows):
        a = A[r0:r0 + rows]
        shift = out[r0:r0 + rows, None]
        g = grad[r0:r0 + rows, None]
        for c0 in range(0, N, cols):
            W = a @ Ct[:, c0:c0 + cols]
            if bias is not None:
                W.add_(bias[r0:r0 + rows, c0:c0 + cols])
            W.sub_(shift).clamp_(min=_CLAMP).exp_().mul_(g)  # (r, c) weighted responsibilities
            grad_A[r0:r0 + rows] += W @ C[c0:c0 + cols]
            grad_C[c0:c0 + cols] += W.T @ a
    return grad_A, grad_C


class _StreamedLSE(torch.autograd.Function):
    """out_i = logsumexp_n ((A @ C.T)[i, n] + bias[i, n]), memory-bounded forward and backward.

    ``precomputed`` is the forward value from the fused C kernel when it ran; the backward pass
    always recomputes blocks in torch. ``bias`` is a constant (no gradient).
    """

    @staticmethod
    def forward(ctx, A: Tensor, C: Tensor, block_bytes: int, precomputed: Tensor | None,
                bias: Tensor | None) -> Tensor:
        out = _lse_blocks(A, C, block_bytes, bias) if precomputed is None else precomputed.to(A.dtype)
        ctx.save_for_backward(A, C, out)
        ctx.block_bytes, ctx.bias = block_bytes, bias
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        A, C, out = ctx.saved_tensors
        grad_A, grad_C = _lse_blocks_backward(A, C, out, grad, ctx.block_bytes, ctx.bias)
        return grad_A, grad_C, None, None, None


def joint_lse(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None,
              bias: Tensor | None = None, *, block_bytes: int = DEFAULT_BLOCK_BYTES,
              use_native: bool = True) -> Tensor:
    r"""out_i = logsumexp_n (log N(z_i; mu_n, diag exp(logvar_n)) + log_weights_n + bias_in), (Q,).

    Unvalidated internal of :func:`estimators.kernels.log_mixture` and ``log_weighted_sum``:
    z (Q, D), mu and logvar (N, D) of one floating dtype; optional per-component ``log_weights``
    (N,) and row-specific ``bias`` (Q, N) (both may hold -inf, a zero weight; the bias is a
    constant). Differentiable in z, mu, logvar (and log_weights); memory bounded by ``block_bytes``
    forward and backward. The forward value comes from the C kernel when ``use_native`` and it
    can run (CPU, float32/float64); otherwise from the blocked torch path.
    """
    if bias is not None:
        bias = bias.detach()  # added block by block into the float64 blocks (no full copy)
    fast = native.joint_lse(z, mu, logvar, log_weights, bias) if use_native else None
    A, C = _features(z, mu, logvar, log_weights)
    return _StreamedLSE.apply(A, C, block_bytes, fast, bias).to(z.dtype)
