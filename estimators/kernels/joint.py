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
matmul, so it is as memory-bounded as the forward; (dA, dC) are mapped to (dz, dmu, dlogvar, dlog w)
by the chain rule written out (:func:`_feature_grads`). The forward value comes from the fused C
kernel (:mod:`estimators.kernels.native`) when it is available.

Both passes are registered torch operators, ``vae_estimators::joint_lse`` and
``vae_estimators::joint_lse_backward`` (``torch.library.custom_op``, with fake implementations and
the autograd formula registered), so ``torch.compile`` keeps them whole and calls them on real
tensors (see :mod:`estimators.kernels._dispatch` for what went wrong before, and for the eager fast
path). With grad mode on in the backward (``create_graph=True``) the gradient is formed by
differentiable torch operations instead, so second-order gradients work (the whole (Q, N) matrix at
once then).

Internal: inputs are trusted (same-dtype 2-D tensors; see :mod:`estimators.kernels` for the
validated public functions).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import native
from ._dispatch import eager, functorch_active, register_kernel_autograd
from ..numerics import ACCUMULATE, LOG_2PI, exp_clamp

__all__ = ["DEFAULT_BLOCK_BYTES", "joint_lse", "normal_matrix"]

DEFAULT_BLOCK_BYTES = 16 * 2**20  # one float64 block of L; small enough to stay near cache
_CLAMP = exp_clamp(ACCUMULATE)  # the blocks are float64


def _centred(z: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(zc, muc, logvar, prec) in float64: z and mu centred on the (detached) mean of mu, prec = exp(-logvar)."""
    centre = mu.detach().to(ACCUMULATE).mean(0)
    lv = logvar.to(ACCUMULATE)
    return z.to(ACCUMULATE) - centre, mu.to(ACCUMULATE) - centre, lv, torch.exp(-lv)


def _features(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None,
              centred: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Augmented float64 features with A @ C.T = L_in + log w_n.

    A = [z^2, z, 1] (Q, 2D+1); C = [-prec/2, mu prec, c_n] (N, 2D+1) where
    c_n = -sum_d (mu^2 prec + logvar + log 2pi) / 2 + log w_n; z and mu are centred on the
    (detached) mean of mu first, which reduces cancellation for offset latents (``centred``:
    :func:`_centred` of the inputs, when the caller has it).
    """
    zc, muc, lv, prec = _centred(z, mu, logvar) if centred is None else centred
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


def _feature_grads(centred: tuple[Tensor, Tensor, Tensor, Tensor], grad_A: Tensor, grad_C: Tensor):
    """Chain rule from (dA, dC) of :func:`_features` to (dz, dmu, dlogvar, dlog w), float64.

    With (zc, muc, _, prec) = ``centred`` (the centre is a constant: the value does not depend on it):
    dz = 2 zc dA_1 + dA_2, dmu = prec (dC_2 - dC_3 muc),
    dlogvar = prec dC_1 / 2 - muc prec dC_2 + dC_3 (muc^2 prec - 1) / 2, dlog w = dC_3. Plain torch
    operations: differentiable again when ``grad_A`` and ``grad_C`` are.
    """
    zc, muc, _, prec = centred
    D = zc.shape[1]
    a1, a2 = grad_A[:, :D], grad_A[:, D:2 * D]
    c1, c2, c3 = grad_C[:, :D], grad_C[:, D:2 * D], grad_C[:, 2 * D:]
    muc_prec = muc * prec
    grad_z = 2 * zc * a1 + a2
    grad_mu = prec * c2 - c3 * muc_prec
    grad_logvar = 0.5 * prec * c1 - muc_prec * c2 + 0.5 * c3 * (muc * muc_prec - 1)
    return grad_z, grad_mu, grad_logvar, c3.squeeze(1)


# ------------------------------------------------------------------------------------------------
# The registered operators and their eager twin (why operators, and why a twin: see :mod:`._dispatch`)


def _joint_forward(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None, bias: Tensor | None,
                   block_bytes: int, use_native: bool) -> Tensor:
    """out_i = logsumexp_n (log N(z_i; mu_n, var_n) + log_weights_n + bias_in), (Q,) in z's dtype.

    The fused C kernel where it can run (``use_native``, CPU, float32/float64, built and not
    disabled); otherwise the blocked torch path (any device).
    """
    fast = native.joint_lse(z, mu, logvar, log_weights, bias) if use_native else None
    if fast is not None:
        return fast
    A, C = _features(z, mu, logvar, log_weights)
    return _lse_blocks(A, C, block_bytes, bias).to(z.dtype)  # the bias is added into the float64 blocks


def _joint_backward_streamed(grad: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None,
                             bias: Tensor | None, out: Tensor, block_bytes: int
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dz, dmu, dlogvar, dlog w) of sum(grad * out), memory-bounded (each block recomputed); dlog w is (N,)
    in z's dtype (computed whether or not there are weights: it is a column of dC). Called with grad mode off
    (the backward) or below autograd (the operator)."""
    centred = _centred(z, mu, logvar)
    A, C = _features(z, mu, logvar, log_weights, centred)
    grad_A, grad_C = _lse_blocks_backward(A, C, out.to(ACCUMULATE), grad.to(ACCUMULATE), block_bytes, bias)
    gz, gmu, glv, gw = _feature_grads(centred, grad_A, grad_C)
    return gz.to(z.dtype), gmu.to(mu.dtype), glv.to(logvar.dtype), gw.to(z.dtype).contiguous()  # gw: a column


def _responsibilities(L: Tensor, may_be_empty: bool, dim: int = 1) -> Tensor:
    """softmax of L along ``dim``, differentiably; -inf entries (zero weights) get 0, also in a row of them only.

    Where every entry of a row is -inf the value is a constant (the streamed path's floor) and the
    gradient 0, as the streamed backward gives (up to exp of the clamp).
    """
    if not may_be_empty:
        return torch.softmax(L, dim=dim)
    r = torch.softmax(L.clamp(min=torch.finfo(L.dtype).min), dim=dim)
    return torch.where(torch.isneginf(L), 0.0, r)


def _joint_backward_differentiable(grad, z, mu, logvar, log_weights, bias):
    """The gradient by differentiable torch operations on the whole (Q, N) matrix: for double backward."""
    centred = _centred(z, mu, logvar)
    A, C = _features(z, mu, logvar, log_weights, centred)
    L = A @ C.T
    if bias is not None:
        L = L + bias.to(ACCUMULATE)
    G = grad.to(ACCUMULATE)[:, None] * _responsibilities(L, bias is not None or log_weights is not None)
    gz, gmu, glv, gw = _feature_grads(centred, G @ C, G.T @ A)
    return gz.to(z.dtype), gmu.to(mu.dtype), glv.to(logvar.dtype), gw


_joint_op = torch.library.custom_op("vae_estimators::joint_lse", _joint_forward, mutates_args=())
_joint_backward_op = torch.library.custom_op("vae_estimators::joint_lse_backward", _joint_backward_streamed,
                                             mutates_args=())


@_joint_op.register_fake
def _(z, mu, logvar, log_weights, bias, block_bytes, use_native):
    return z.new_empty(z.shape[:1])


@_joint_backward_op.register_fake
def _(grad, z, mu, logvar, log_weights, bias, out, block_bytes):
    return torch.empty_like(z), torch.empty_like(mu), torch.empty_like(logvar), z.new_empty(mu.shape[:1])


_JointEager = register_kernel_autograd(_joint_op, "joint_lse", _joint_forward, _joint_backward_streamed,
                                       _joint_backward_op, _joint_backward_differentiable)


def _joint_plain(z, mu, logvar, log_weights, bias):
    """The whole (Q, N) matrix and torch.logsumexp: composable with every torch.func transform."""
    A, C = _features(z, mu, logvar, log_weights)
    L = A @ C.T
    return torch.logsumexp(L if bias is None else L + bias.to(ACCUMULATE), dim=1).to(z.dtype)


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

    The registered operator ``torch.ops.vae_estimators.joint_lse`` (:mod:`._dispatch`): one opaque
    node under ``torch.compile`` (``fullgraph=True`` works) and ``torch.export``.

    Second-order gradients (``create_graph=True``, e.g. gradient penalties): when the backward runs
    with grad mode on, the gradient is formed by ordinary differentiable torch operations on the whole
    (Q, N) matrix, so memory is then **not** bounded by ``block_bytes`` (the ordinary backward stays
    memory-bounded). Inside ``torch.func`` transforms the value is the plain torch logsumexp of the
    whole matrix (memory not bounded either). ``torch.compile`` itself does not support double
    backward (a torch limitation): take gradient penalties eagerly.
    """
    if bias is not None:
        bias = bias.detach()  # added block by block into the float64 blocks (no full copy)
    if functorch_active():
        return _joint_plain(z, mu, logvar, log_weights, bias)
    if eager(z, mu, logvar):
        return _JointEager.apply(z, mu, logvar, log_weights, bias, block_bytes, use_native)
    return _joint_op(z, mu, logvar, log_weights, bias, block_bytes, use_native)
