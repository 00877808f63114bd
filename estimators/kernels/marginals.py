r"""The per-dimension reduction: out_id = logsumexp_n (log N(z_id; mu_nd, var_nd) + log w_n + bias_in).

One weighted reduction for all D one-dimensional marginals at once, serving the exact mixture
marginals (per-component weights w_n, or none) and the minibatch estimators (a row-specific
(Q, N) log-weight matrix, -inf for a zero weight).

Numerics: the direct (z - mu)^2 form in the inputs' dtype (no cancellation, so it is accurate in
float32). Blocks of (dimensions, rows, column chunk), about ``_CACHE_ELEMENTS`` elements so one
stays in cache, are built in place in one preallocated buffer; each logsumexp subtracts the exact
maximum and clamps (L - max) at :func:`estimators.numerics.exp_clamp` before exp, and column
chunks are merged online (running max, running sum), so memory is bounded for any N.

Per block the values are built as L = c + bias - (z - mu)^2 prec / 2 with c = -(logvar + log 2pi)/2
+ log w, written as nha ((z - mu)^2 + k) + bias with nha = -prec/2 and k = c / nha, so that the
square, the constant and the bias take two fused passes (``addcmul``).

Backward (written out, memory-bounded): each block is recomputed and the responsibilities
r = exp(L - out) contracted by batched matrix-vector products with the upstream gradient g:

    dz_id = -g_id sum_n r (z - mu) prec,   dmu_nd = prec sum_i g r (z - mu),
    dlogvar_nd = (prec sum_i g r (z - mu)^2 - sum_i g r) / 2,   dlog w_n = sum_{i,d} g r.

The forward value comes from the fused C kernel (:mod:`estimators.kernels.native`) when it can
run, with or without the bias; the backward always runs here. Both passes are registered torch
operators, ``vae_estimators::marginal_lse`` and ``vae_estimators::marginal_lse_backward`` (fake
implementations, the autograd formula registered), safe under ``torch.compile`` (see
:mod:`estimators.kernels._dispatch`). With grad mode on in the backward (``create_graph=True``) the
gradient is formed by differentiable torch operations on the whole (Q, N, D) tensor instead, so
second-order gradients work.

Internal: inputs are trusted (same-dtype 2-D tensors; see :mod:`estimators.kernels` for the
validated public functions).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import native
from ._dispatch import eager, functorch_active, register_kernel_autograd
from .joint import DEFAULT_BLOCK_BYTES, _responsibilities
from ..numerics import LOG_2PI, exp_clamp, log_normal

__all__ = ["marginal_lse"]

_CACHE_ELEMENTS = 2**19  # elements of one block (2 MiB in float32): in L2 across two threads; measured
_MIN_ROWS = 8  # whole rows of N per block unless fewer than this many fit: then column chunks


def _block_shape(D: int, Q: int, N: int, elements: int) -> tuple[int, int, int]:
    """(dims, rows, cols) of one block of the (D, Q, N) tensor, about ``elements`` in all."""
    cols = N if N * _MIN_ROWS <= elements else max(elements // _MIN_ROWS, 1)
    rows = max(1, min(Q, elements // cols))
    dims = max(1, min(D, elements // (rows * cols)))
    return dims, rows, cols


def _elements(block_bytes: int, dtype: torch.dtype) -> int:
    return max(1, min(_CACHE_ELEMENTS, block_bytes // (torch.finfo(dtype).bits // 8)))


class _Layout:
    """(D, Q) and (D, N) contiguous layouts: z, mu, prec, nha = -prec/2, c = -(logvar + log 2pi)/2 + log w."""

    def __init__(self, z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None):
        self.zt = z.T.contiguous()
        self.mt = mu.T.contiguous()
        self.prec = torch.exp(-logvar.T).contiguous()
        self.nha = self.prec * -0.5
        c = -0.5 * (logvar.T + LOG_2PI)
        if log_weights is not None:
            c = c + log_weights.to(z.dtype)[None, :]
        self.c = c.contiguous()
        # k = c / nha, so that nha ((z - mu)^2 + k) = c - (z - mu)^2 prec / 2 (+inf where a weight is
        # zero). None where it overflows (variances beyond about exp(80) in float32): then c is added
        # in a pass of its own; likewise off the CPU, where checking would synchronise with the device
        self.k = None
        if z.device.type == "cpu":
            k = self.c / self.nha
            self.k = k if bool((torch.isfinite(k) | torch.isinf(self.c)).all()) else None


class _Chunk:
    """One column chunk [c0, c1) of one range of dimensions: its (dims, 1, cols) component views."""

    __slots__ = ("c0", "c1", "mu", "nha", "c", "k", "prec")

    def __init__(self, lay: _Layout, d0: int, d1: int, c0: int, c1: int):
        self.c0, self.c1 = c0, c1
        self.mu, self.nha, self.c = (t[d0:d1, None, c0:c1] for t in (lay.mt, lay.nha, lay.c))
        self.k = None if lay.k is None else lay.k[d0:d1, None, c0:c1]
        self.prec = lay.prec[d0:d1, c0:c1, None]  # (dims, cols, 1), for the matrix-vector products

    def values(self, diff: Tensor, out: Tensor, bias: Tensor | None, shift: Tensor | None) -> Tensor:
        """L = c + bias - diff^2 prec / 2 (+ shift, (dims, rows, 1)), written into ``out`` (may be ``diff``).

        ``bias`` is the block's (rows, cols) slice of the log-weight matrix, or None.
        """
        if self.k is not None and (bias is not None or shift is not None):  # two fused passes
            L = torch.addcmul(self.k, diff, diff, out=out)
            torch.addcmul(bias if bias is not None else shift, L, self.nha, out=L)
            return L.add_(shift) if bias is not None and shift is not None else L
        L = torch.square(diff, out=out)
        torch.addcmul(self.c, L, self.nha, out=L)
        if bias is not None:
            L.add_(bias)
        return L if shift is None else L.add_(shift)


def _blocks(lay: _Layout, D: int, Q: int, N: int, shape: tuple[int, int, int], buffers: list[Tensor]):
    """(d0, d1, r0, r1, chunk, views) over the (D, Q, N) tensor, column chunks innermost.

    ``views`` are the buffers viewed as the block's (dims, rows, cols). Slicing is hoisted out of the
    inner loop: a block is a few hundred microseconds of work, the Python around it must stay small.
    """
    dims, rows, cols = shape
    full = [buf.view(shape) for buf in buffers]
    for d0 in range(0, D, dims):
        d1 = min(D, d0 + dims)
        chunks = [_Chunk(lay, d0, d1, c0, min(N, c0 + cols)) for c0 in range(0, N, cols)]
        for r0 in range(0, Q, rows):
            r1 = min(Q, r0 + rows)
            for chunk in chunks:
                block = (d1 - d0, r1 - r0, chunk.c1 - chunk.c0)
                views = full if block == shape else [buf[:math.prod(block)].view(block) for buf in buffers]
                yield d0, d1, r0, r1, chunk, views


def _forward(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None, bias: Tensor | None,
             elements: int) -> Tensor:
    """The (D, Q) per-dimension logsumexps, block by block (see the module notes)."""
    (Q, D), N = z.shape, mu.shape[0]
    lay = _Layout(z, mu, logvar, log_weights)
    clamp, lowest = exp_clamp(z.dtype), torch.finfo(z.dtype).min
    may_be_empty = bias is not None or log_weights is not None  # a row of zero weights is all -inf
    shape = _block_shape(D, Q, N, elements)
    out = z.new_empty(D, Q)
    run_max = run_sum = None
    for d0, d1, r0, r1, chunk, (L,) in _blocks(lay, D, Q, N, shape, [z.new_empty(math.prod(shape))]):
        torch.sub(lay.zt[d0:d1, r0:r1, None], chunk.mu, out=L)
        L = chunk.values(L, L, None if bias is None else bias[r0:r1, chunk.c0:chunk.c1], None)
        m = L.amax(-1, keepdim=True)
        if may_be_empty:
            m.clamp_(min=lowest)  # no NaN from (-inf) - (-inf)
        if chunk.c0 > 0:  # online merge with the row's chunks before
            new_max = torch.maximum(run_max, m)
            run_sum.mul_(run_max.sub_(new_max).exp_())
            m = new_max
        L.sub_(m).clamp_(min=clamp).exp_()
        s = L.sum(-1, keepdim=True)
        run_sum = s if chunk.c0 == 0 else run_sum.add_(s)
        run_max = m
        if chunk.c1 == N:
            torch.add(run_max, run_sum.log_(), out=out[d0:d1, r0:r1, None])
    return out


def _backward(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None, bias: Tensor | None,
              out: Tensor, grad: Tensor, elements: int, need_weights: bool):
    """Gradients w.r.t. z, mu, logvar (and log_weights) of sum(grad * out), recomputing each block."""
    (Q, D), N = z.shape, mu.shape[0]
    lay = _Layout(z, mu, logvar, log_weights)
    clamp = exp_clamp(z.dtype)
    g = grad.T.to(z.dtype).contiguous()  # (D, Q)
    neg_out = -out  # (D, Q)
    shape = _block_shape(D, Q, N, elements)
    buffers = [z.new_empty(math.prod(shape)) for _ in range(2)]
    zrow = z.new_zeros(D, Q, 1)  # sum_n r (z - mu) prec
    s0, s1, s2 = (z.new_zeros(D, 1, N) for _ in range(3))  # sum_i g r, g r (z - mu), g r (z - mu)^2
    for d0, d1, r0, r1, chunk, (diff, r) in _blocks(lay, D, Q, N, shape, buffers):
        c0, c1 = chunk.c0, chunk.c1
        gb = g[d0:d1, None, r0:r1]  # (dims, 1, rows)
        torch.sub(lay.zt[d0:d1, r0:r1, None], chunk.mu, out=diff)
        r = chunk.values(diff, r, None if bias is None else bias[r0:r1, c0:c1], neg_out[d0:d1, r0:r1, None])
        r.clamp_(min=clamp).exp_()  # responsibilities exp(L - out)
        s0[d0:d1, :, c0:c1].baddbmm_(gb, r)
        t = r.mul_(diff)  # r (z - mu)
        s1[d0:d1, :, c0:c1].baddbmm_(gb, t)
        zrow[d0:d1, r0:r1].baddbmm_(t, chunk.prec)
        s2[d0:d1, :, c0:c1].baddbmm_(gb, diff.mul_(t))
    prec = lay.prec
    grad_z = (zrow.squeeze(2).mul_(g)).neg_().T
    grad_mu = (s1.squeeze(1) * prec).T
    grad_logvar = (s2.squeeze(1).mul_(prec).sub_(s0.squeeze(1))).mul_(0.5).T
    grad_w = s0.squeeze(1).sum(0) if need_weights else None
    return grad_z, grad_mu, grad_logvar, grad_w


# ------------------------------------------------------------------------------------------------
# The registered operators and their eager twin (why operators, and why a twin: see :mod:`._dispatch`)


def _marginal_forward(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None, bias: Tensor | None,
                      block_bytes: int, use_native: bool) -> Tensor:
    """out_id = logsumexp_n (log N(z_id; mu_nd, var_nd) + log_weights_n + bias_in), (Q, D) in z's dtype.

    The fused C kernel where it can run (``use_native``, CPU, float32/float64, built and not
    disabled); otherwise the blocked torch path (any device).
    """
    fast = native.marginal_lse(z, mu, logvar, log_weights, bias) if use_native else None
    if fast is not None:
        return fast
    out = _forward(z, mu, logvar, log_weights, None if bias is None else bias.to(z.dtype),
                   _elements(block_bytes, z.dtype))  # (D, Q)
    return out.T.contiguous()


def _marginal_backward_streamed(grad: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None,
                                bias: Tensor | None, out: Tensor, block_bytes: int
                                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dz, dmu, dlogvar, dlog w) of sum(grad * out), memory-bounded (each block recomputed); dlog w is (N,), or
    None without weights. Called with grad mode off (the backward) or below autograd (the operator)."""
    return _backward(z, mu, logvar, log_weights, None if bias is None else bias.to(z.dtype), out.T.to(z.dtype),
                     grad, _elements(block_bytes, z.dtype), log_weights is not None)


def _marginal_backward_contiguous(grad: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None,
                                  bias: Tensor | None, out: Tensor, block_bytes: int
                                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_marginal_backward_streamed` with contiguous results, zeros for dlog w without weights (the
    operator's results, as its fake implementation gives them)."""
    gz, gmu, glv, gw = _marginal_backward_streamed(grad, z, mu, logvar, log_weights, bias, out, block_bytes)
    return gz.contiguous(), gmu.contiguous(), glv.contiguous(), z.new_zeros(mu.shape[:1]) if gw is None else gw


def _marginal_backward_differentiable(grad, z, mu, logvar, log_weights, bias):
    """The gradient by differentiable torch operations on the whole (Q, N, D) tensor: for double backward."""
    diff = z[:, None, :] - mu[None]  # (Q, N, D)
    prec = torch.exp(-logvar)
    c = -0.5 * (logvar + LOG_2PI)
    if log_weights is not None:
        c = c + log_weights.to(z.dtype)[:, None]
    L = c[None] - 0.5 * diff * diff * prec[None]
    if bias is not None:
        L = L + bias.to(z.dtype)[:, :, None]
    G = grad.to(z.dtype)[:, None, :] * _responsibilities(L, bias is not None or log_weights is not None)
    t = G * diff * prec[None]
    return -t.sum(1), t.sum(0), 0.5 * (G * (diff * diff * prec[None] - 1)).sum(0), G.sum((0, 2))


_marginal_op = torch.library.custom_op("vae_estimators::marginal_lse", _marginal_forward, mutates_args=())
_marginal_backward_op = torch.library.custom_op("vae_estimators::marginal_lse_backward",
                                                _marginal_backward_contiguous, mutates_args=())


@_marginal_op.register_fake
def _(z, mu, logvar, log_weights, bias, block_bytes, use_native):
    return torch.empty_like(z, memory_format=torch.contiguous_format)


@_marginal_backward_op.register_fake
def _(grad, z, mu, logvar, log_weights, bias, out, block_bytes):
    return (torch.empty_like(z, memory_format=torch.contiguous_format),
            torch.empty_like(mu, memory_format=torch.contiguous_format),
            torch.empty_like(logvar, memory_format=torch.contiguous_format), z.new_empty(mu.shape[:1]))


_MarginalEager = register_kernel_autograd(_marginal_op, "marginal_lse", _marginal_forward,
                                          _marginal_backward_streamed, _marginal_backward_op,
                                          _marginal_backward_differentiable)


def _marginal_plain(z, mu, logvar, log_weights, bias):
    """The whole (Q, N, D) tensor and torch.logsumexp: composable with every torch.func transform."""
    L = log_normal(z[:, None, :], mu[None], logvar[None])
    if log_weights is not None:
        L = L + log_weights.to(z.dtype)[None, :, None]
    if bias is not None:
        L = L + bias.to(z.dtype)[:, :, None]
    return torch.logsumexp(L, dim=1)


def marginal_lse(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None,
                 bias: Tensor | None = None, *, block_bytes: int = DEFAULT_BLOCK_BYTES,
                 use_native: bool = True) -> Tensor:
    r"""out_id = logsumexp_n (log N(z_id; mu_nd, exp(logvar_nd)) + log_weights_n + bias_in), (Q, D).

    Unvalidated internal of :func:`estimators.kernels.log_mixture_marginals` and
    ``log_weighted_marginals``, and the marginals of the minibatch estimators: z (Q, D), mu and
    logvar (N, D) of one floating dtype; optional per-component ``log_weights`` (N,) and a
    row-specific ``bias`` (Q, N) shared by every dimension (both may hold -inf, a zero weight; the
    bias is a constant). Differentiable in z, mu, logvar (and log_weights). Memory: a few blocks of
    at most ``block_bytes`` (and of about 2**19 elements, for the cache), forward and backward,
    whatever N. The forward value comes from the C kernel when ``use_native`` and it can run (CPU,
    float32/float64), with or without the bias; otherwise from the blocked torch path.

    The registered operator ``torch.ops.vae_estimators.marginal_lse`` (:mod:`._dispatch`): one
    opaque node under ``torch.compile`` (``fullgraph=True`` works) and ``torch.export``.

    Second-order gradients (``create_graph=True``, e.g. gradient penalties): when the backward runs
    with grad mode on, the gradient is formed by ordinary differentiable torch operations on the whole
    (Q, N, D) tensor, so memory is then **not** bounded (the ordinary backward stays memory-bounded).
    Inside ``torch.func`` transforms the value is the plain torch logsumexp of the whole (Q, N, D)
    tensor (memory not bounded either). ``torch.compile`` itself does not support double backward (a
    torch limitation): take gradient penalties eagerly.
    """
    if bias is not None:
        bias = bias.detach()
    if functorch_active():
        return _marginal_plain(z, mu, logvar, log_weights, bias)
    if eager(z, mu, logvar):
        return _MarginalEager.apply(z, mu, logvar, log_weights, bias, block_bytes, use_native)
    return _marginal_op(z, mu, logvar, log_weights, bias, block_bytes, use_native)
