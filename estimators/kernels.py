r"""Log-density kernels for mixtures of diagonal Gaussians: the hot path of the project.

For query points z (Q, D) and N components Normal(mu_n, diag exp(logvar_n)):

* :func:`log_normal_matrix` -- the (Q, N) matrix L_in = log N(z_i; mu_n, var_n) (joint over d),
* :func:`log_normal_dim_matrix` -- the (Q, N) matrix of one dimension d, L_ind,
* :func:`log_mixture` -- logsumexp_n (L_in + log w_n), streamed: memory is bounded by a block budget,
  never Q x N (let alone Q x N x D),
* :func:`log_mixture_marginals` -- the same for every 1-D marginal at once, (Q, D),
* :func:`log_weighted_sum` -- logsumexp_n (L_in + log W_in) with a row-specific (Q, N) weight matrix.

Numerics (see PERF.md):

* The joint uses the matrix-product form: sum_d (z - mu)^2 / var = z^2 . prec - 2 z . (mu prec) + mu^2 . prec,
  one matmul of the augmented features [z^2, z, 1] and [-prec/2, mu prec, c_n]. In float32 this
  cancels catastrophically for sharp posteriors (errors of nats at logvar ~ -10), so the product
  is always formed in float64 ("float64 accumulation") from inputs centred on the mean of mu; the
  result is cast back to the input dtype. The matmul is cheap next to the exps, so this costs little.
* Logsumexp subtracts the running maximum and clamps (L - max) at -700 before exp, so no exp
  ever takes the slow denormal path and the clamped terms lie far below float64 precision.
* ``torch.set_float32_matmul_precision`` does not touch float64 products, so a global
  "medium" (bf16) setting cannot degrade these kernels.

Gradients: :func:`log_mixture` and :func:`log_mixture_marginals` have hand-written backward
passes that recompute each block and contract the responsibilities with the augmented features
by matmul, so a backward pass is as memory-bounded as the forward one.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import native
from ._checks import check_points

__all__ = [
    "log_normal_matrix",
    "log_normal_dim_matrix",
    "log_mixture",
    "log_mixture_marginals",
    "log_weighted_sum",
    "DEFAULT_BLOCK_BYTES",
]

LOG_2PI = math.log(2.0 * math.pi)
ACC = torch.float64  # dtype of every product and exp in the kernels
CLAMP = -700.0  # exp(-700) ~ 1e-304 is still a normal float64: no denormal slow path
DEFAULT_BLOCK_BYTES = 16 * 2**20  # one float64 block of L; small enough to stay near cache


def _centre(z: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
    """Shift z and mu by the mean of mu (detached): reduces cancellation for offset latents."""
    c = mu.detach().to(ACC).mean(0)
    return z.to(ACC) - c, mu.to(ACC) - c


def _joint_features(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Augmented float64 features with A @ C.T = L_in + log w_n.

    A = [z^2, z, 1] (Q, 2D+1); C = [-prec/2, mu prec, c_n] (N, 2D+1) where
    c_n = -sum_d (mu^2 prec + logvar + log 2pi) / 2 + log w_n.
    """
    zc, muc = _centre(z, mu)
    lv = logvar.to(ACC)
    prec = torch.exp(-lv)
    const = -0.5 * (muc * muc * prec + lv + LOG_2PI).sum(1)
    if log_weights is not None:
        const = const + log_weights.to(ACC)
    A = torch.cat([zc * zc, zc, torch.ones_like(zc[:, :1])], dim=1)
    C = torch.cat([-0.5 * prec, muc * prec, const[:, None]], dim=1)
    return A, C


def _dim_features(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-dimension augmented features: bmm(A, C^T)[d, i, n] = L_ind + log w_n.

    A (D, Q, 3) = [z_d^2, z_d, 1]; C (D, N, 3) = [-prec/2, mu prec, -(mu^2 prec + logvar + log 2pi)/2 + log w].
    """
    zc, muc = _centre(z, mu)
    lv = logvar.to(ACC)
    prec = torch.exp(-lv)
    const = -0.5 * (muc * muc * prec + lv + LOG_2PI)
    if log_weights is not None:
        const = const + log_weights.to(ACC)[:, None]
    A = torch.stack([zc * zc, zc, torch.ones_like(zc)], dim=2).transpose(0, 1)  # (D, Q, 3)
    C = torch.stack([-0.5 * prec, muc * prec, const], dim=2).transpose(0, 1)  # (D, N, 3)
    return A.contiguous(), C.contiguous()


def log_normal_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""The (Q, N) matrix L_in = log Normal(z_i; mu_n, diag exp(logvar_n)), joint over the D dimensions.

    Matrix-product form in float64 (see module notes), returned in the inputs' dtype;
    differentiable by ordinary autograd. Meant for batch-sized Q and N (an estimator's B x B);
    for a whole data set use :func:`log_mixture`, which never holds Q x N.

    Args:
        z: query points, (Q, D).
        mu, logvar: component means and log-variances, (N, D).
    """
    z, mu, logvar = check_points(z, mu, logvar)
    A, C = _joint_features(z, mu, logvar, None)
    return (A @ C.T).to(z.dtype)


def log_normal_dim_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Per-dimension log-densities of one coordinate: L_in = log Normal(z_i; mu_n, exp(logvar_n)).

    Direct (z - mu)^2 form, accurate in float32 and float64; differentiable.

    Args:
        z: (Q,) values of one coordinate.
        mu, logvar: (N,) that coordinate's means and log-variances.
    Returns:
        (Q, N) tensor.
    """
    diff = z[:, None] - mu[None, :]
    return -0.5 * (LOG_2PI + logvar[None, :] + diff * diff * torch.exp(-logvar)[None, :])


# ---------------------------------------------------------------------------------------------
# streamed logsumexp over blocks


def _block_sizes(Q: int, N: int, per_element: int, block_bytes: int) -> tuple[int, int]:
    """Rows and columns of one block: whole rows of N when they fit, else column chunks."""
    elements = max(block_bytes // (8 * per_element), 1)
    cols = min(N, max(elements // 64, 1)) if N * 64 > elements else N
    rows = max(min(Q, elements // cols), 1)
    return rows, cols


def _lse_blocks(A: Tensor, C: Tensor, block_bytes: int, bias: Tensor | None = None) -> Tensor:
    """logsumexp over the last axis of A @ C^T (+ bias), batched over a leading axis, block by block.

    A: (G, Q, K), C: (G, N, K), optional bias (Q, N) added to every group -> (G, Q). Online
    (running max, running sum) merge across column chunks; in-place exp on each block.
    """
    G, Q, _ = A.shape
    N = C.shape[1]
    rows, cols = _block_sizes(Q, N, G, block_bytes)
    out = torch.empty(G, Q, dtype=A.dtype, device=A.device)
    Ct = C.transpose(1, 2)
    for r0 in range(0, Q, rows):
        a = A[:, r0:r0 + rows]
        run_max = run_sum = None
        for c0 in range(0, N, cols):
            L = torch.bmm(a, Ct[:, :, c0:c0 + cols])  # (G, r, c)
            if bias is not None:
                L.add_(bias[r0:r0 + rows, c0:c0 + cols])
            m = L.amax(dim=2, keepdim=True).clamp_(min=torch.finfo(L.dtype).min)  # all -inf: no NaN
            if run_max is not None:
                new_max = torch.maximum(run_max, m)
                run_sum = run_sum * torch.exp(run_max - new_max)
                m = new_max
            L.sub_(m).clamp_(min=CLAMP).exp_()
            s = L.sum(dim=2, keepdim=True)
            run_sum = s if run_sum is None else run_sum + s
            run_max = m
        out[:, r0:r0 + rows] = (run_max + torch.log(run_sum)).squeeze(2)
    return out


def _lse_blocks_backward(A: Tensor, C: Tensor, out: Tensor, grad: Tensor, block_bytes: int,
                         bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gradients of sum(grad * lse(A @ C^T)) w.r.t. A and C, recomputing each block.

    d out_i / d L_in is the responsibility r_in = exp(L_in - out_i), so with G = grad * r:
    dA = G @ C and dC = G^T @ A.
    """
    G_, Q, _ = A.shape
    N = C.shape[1]
    rows, cols = _block_sizes(Q, N, G_, block_bytes)
    grad_A = torch.zeros_like(A)
    grad_C = torch.zeros_like(C)
    Ct = C.transpose(1, 2)
    for r0 in range(0, Q, rows):
        a = A[:, r0:r0 + rows]
        shift = out[:, r0:r0 + rows, None]
        g = grad[:, r0:r0 + rows, None]
        for c0 in range(0, N, cols):
            W = torch.bmm(a, Ct[:, :, c0:c0 + cols])
            if bias is not None:
                W.add_(bias[r0:r0 + rows, c0:c0 + cols])
            W.sub_(shift).clamp_(min=CLAMP).exp_().mul_(g)  # (G, r, c) weighted responsibilities
            grad_A[:, r0:r0 + rows] += torch.bmm(W, C[:, c0:c0 + cols])
            grad_C[:, c0:c0 + cols] += torch.bmm(W.transpose(1, 2), a)
    return grad_A, grad_C


class _StreamedLSE(torch.autograd.Function):
    """out[g, i] = logsumexp_n (A[g] @ C[g].T)[i, n], memory-bounded forward and backward.

    ``precomputed`` is the forward value from the fused C kernel when it ran; the backward pass
    always recomputes blocks in torch.
    """

    @staticmethod
    def forward(ctx, A: Tensor, C: Tensor, block_bytes: int, precomputed: Tensor | None,
                bias: Tensor | None = None) -> Tensor:
        out = _lse_blocks(A, C, block_bytes, bias) if precomputed is None else precomputed.to(A.dtype)
        ctx.save_for_backward(A, C, out)
        ctx.block_bytes, ctx.bias = block_bytes, bias
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        A, C, out = ctx.saved_tensors
        grad_A, grad_C = _lse_blocks_backward(A, C, out, grad, ctx.block_bytes, ctx.bias)
        return grad_A, grad_C, None, None, None


def _check_log_weights(log_weights: Tensor | None, N: int) -> Tensor | None:
    if log_weights is None:
        return None
    if not isinstance(log_weights, Tensor) or log_weights.shape != (N,):
        shape = tuple(log_weights.shape) if isinstance(log_weights, Tensor) else type(log_weights).__name__
        raise ValueError(f"log_weights must be a tensor of shape (N,) = ({N},), got {shape}")
    if bool(torch.isnan(log_weights).any()) or bool(torch.isposinf(log_weights).any()):
        raise ValueError("log_weights must not hold NaN or +inf (use -inf for a zero weight)")
    return log_weights


def _native_forward(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None,
                    marginals: bool, use_native: bool) -> Tensor | None:
    """Forward value from the fused C kernel (see ``estimators/native``), or None to use torch."""
    if not use_native:
        return None
    if log_weights is not None:
        keep = torch.isfinite(log_weights)  # the C kernel assumes finite values: drop zero weights
        if not bool(keep.all()):
            if not bool(keep.any()):
                return None
            mu, logvar, log_weights = mu[keep], logvar[keep], log_weights[keep]
    return native.mixture_lse(z, mu, logvar, log_weights, marginals)


def log_mixture(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None, *,
                block_bytes: int = DEFAULT_BLOCK_BYTES, use_native: bool = True) -> Tensor:
    r"""log sum_n w_n Normal(z_i; mu_n, diag exp(logvar_n)) for every query point, streamed.

    With ``log_weights=None`` the weights are 1 (a plain logsumexp over components); pass
    ``torch.full((N,), -math.log(N))`` or subtract log N for the aggregate posterior
    log q(z) = logsumexp_n L_in - log N.

    Memory is bounded by ``block_bytes`` (one float64 block of the Q x N matrix), in the forward
    and in the backward pass, whatever Q and N. Differentiable in z, mu, logvar and log_weights.

    Args:
        z: query points, (Q, D), float32 or float64.
        mu, logvar: the N components, (N, D).
        log_weights: optional (N,) log mixture weights.
        block_bytes: memory budget of one block (torch path and backward pass).
        use_native: run the forward pass in the fused C kernel when it is available (CPU tensors);
            False forces the pure-torch path.
    Returns:
        (Q,) tensor in the inputs' dtype.

    Example::

        >>> mu, logvar = torch.randn(1000, 5), torch.zeros(1000, 5)
        >>> z = mu[:10] + torch.randn(10, 5)
        >>> log_qz = log_mixture(z, mu, logvar) - math.log(1000)
    """
    z, mu, logvar = check_points(z, mu, logvar)
    log_weights = _check_log_weights(log_weights, mu.shape[0])
    fast = _native_forward(z, mu, logvar, log_weights, False, use_native)
    A, C = _joint_features(z, mu, logvar, log_weights)
    fast = None if fast is None else fast[None]
    return _StreamedLSE.apply(A[None], C[None], block_bytes, fast)[0].to(z.dtype)


def log_weighted_sum(z: Tensor, mu: Tensor, logvar: Tensor, log_weight_matrix: Tensor | None = None, *,
                     block_bytes: int = DEFAULT_BLOCK_BYTES, use_native: bool = True) -> Tensor:
    r"""out_i = logsumexp_n (L_in + log_weight_matrix[i, n]): a row-specific weighted mixture, streamed.

    The joint log-densities L_in of :func:`log_normal_matrix` with an additive (Q, N) matrix of log
    weights (e.g. the minibatch estimators' importance weights, -inf for a zero weight), reduced block
    by block without ever holding L whole. The weights are constants (no gradient flows to them);
    differentiable in z, mu and logvar, with the same memory-bounded backward as :func:`log_mixture`.

    Args:
        z: (Q, D); mu, logvar: (N, D); log_weight_matrix: (Q, N) or None.
    Returns:
        (Q,) tensor in the inputs' dtype.
    """
    z, mu, logvar = check_points(z, mu, logvar)
    bias = None
    if log_weight_matrix is not None:
        if not isinstance(log_weight_matrix, Tensor) or log_weight_matrix.shape != (z.shape[0], mu.shape[0]):
            shape = tuple(log_weight_matrix.shape) if isinstance(log_weight_matrix, Tensor) else type(log_weight_matrix).__name__
            raise ValueError(f"log_weight_matrix must have shape (Q, N) = ({z.shape[0]}, {mu.shape[0]}), got {shape}")
        bias = log_weight_matrix.detach()  # added block by block into the float64 blocks (no full copy)
    fast = native.mixture_lse(z, mu, logvar, None, False, bias) if use_native else None
    A, C = _joint_features(z, mu, logvar, None)
    fast = None if fast is None else fast[None]
    return _StreamedLSE.apply(A[None], C[None], block_bytes, fast, bias)[0].to(z.dtype)


def log_mixture_marginals(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None, *,
                          block_bytes: int = DEFAULT_BLOCK_BYTES, use_native: bool = True) -> Tensor:
    r"""log sum_n w_n Normal(z_id; mu_nd, exp(logvar_nd)) for every point and dimension, streamed.

    The D one-dimensional marginals of the mixture at once; same contract as :func:`log_mixture`.

    Returns:
        (Q, D) tensor in the inputs' dtype.
    """
    z, mu, logvar = check_points(z, mu, logvar)
    log_weights = _check_log_weights(log_weights, mu.shape[0])
    fast = _native_forward(z, mu, logvar, log_weights, True, use_native)
    A, C = _dim_features(z, mu, logvar, log_weights)
    fast = None if fast is None else fast.T
    return _StreamedLSE.apply(A, C, block_bytes, fast).T.to(z.dtype)
