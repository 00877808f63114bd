r"""Estimators of the aggregate-posterior log-density log q(z_i) and its 1-D marginals log q(z_id).

For samples z_i ~ q(z|n_i) every estimator returns the two per-sample targets of the SPEC: an
estimate of log q(z_i) (B,) and of log q(z_id) (B, D). With L_ij = log q(z_i|n_j) (joint over d),
L_ijd its per-dimension terms, M = B - 1 and LSE = logsumexp:

==================  ===============================================  =========================
name                log q^(z_i)                                      log q^(z_id)
==================  ===============================================  =========================
``naive``           LSE_j L_ij - log B                               LSE_j L_ijd - log B
``mws``             LSE_j L_ij - log(N B)                            LSE_j L_ijd - log(N B)
``mss``             LSE_j (L_ij + log W_ij), W of MSS                LSE_j (L_ijd + log W_ij)
``stratified``      as mss with W_ii = 1/N, W_ij = (N-1)/(N M)       same W
``loo``             LSE_{j != i} L_ij - log M                        likewise
``iwae``            LSE_m L_{i,n_m} - log k, n_m ~ U{0..N-1}         likewise
``exact``           LSE over all N components - log N                likewise
``mss_shipped``     as mss with the shipped (buggy) matrix           same matrix
``mss_per_dim``     LSE_j (L_ij + D log W_ij), shipped W             LSE_j (L_ijd + log W_ij)
``tc_no_constant``  LSE_j L_ij                                       LSE_j L_ijd
==================  ===============================================  =========================

The minibatch estimators (``naive`` ... ``loo`` and the published variants) see only the batch's
own posteriors: ``mu``, ``logvar`` (B, D), row i being the component z_i was drawn from.
``iwae`` and ``exact`` take the whole field (N, D). See :mod:`estimators.weights` for the weight
matrices and :mod:`estimators.registry` for the records (citation, unbiasedness, ...).

Implementation: the joint matrix L_ij comes from the float64 matrix-product form
(:func:`estimators.kernels.log_normal_matrix`), never from a B x B x D tensor. The marginals are
per-dimension matrices in the direct (z - mu)^2 form (accurate in float32). Both are built block by
block (a chunk of rows, times a chunk of dimensions for the marginals; about :data:`BLOCK_ELEMENTS`
elements, so a block stays in cache) and reduced at once by a weighted logsumexp that subtracts the
row maximum, clamps and exponentiates in place. Both reductions have hand-written backward passes
that recompute each block, so memory stays bounded by one block plus the inputs, forward and
backward (the only B x B tensor is the cached log-weight matrix); everything is differentiable
(first order) in z, mu and logvar.
"""
from __future__ import annotations

import math
import operator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import kernels, weights
from ._checks import as_float_tensor, check_finite
from .registry import get_estimator, register_estimator

__all__ = ["log_aggregate_posterior", "PROPOSALS", "BLOCK_ELEMENTS"]

PROPOSALS = ("uniform", "own")
LOG_2PI = math.log(2.0 * math.pi)
BLOCK_ELEMENTS = 2**19  # elements per block (2 MiB in float32): in L3 cache, and few blocks, so few thread syncs

CHEN_2018 = ("Chen, Li, Grosse & Duvenaud (2018), Isolating Sources of Disentanglement in Variational "
             "Autoencoders, NeurIPS")
SHIPPED_MATRIX = ("rtqichen/beta-tcvae vae_quant.py VAE._log_importance_weight_matrix (copied into "
                  "YannDubs/disentangling-vae disvae/utils/math.py log_importance_weight_matrix)")
SHIPPED_PER_DIM = ("YannDubs/disentangling-vae disvae/models/losses.py _get_log_pz_qz_prodzi_qzCx "
                   "(and its many copies)")


# ---------------------------------------------------------------------------------------------
# blocked weighted logsumexp


def _clamp_for(dtype: torch.dtype) -> float:
    """Lower clamp of (x - max) before exp: keeps exp off the slow denormal path (PERF.md)."""
    return -80.0 if torch.finfo(dtype).bits <= 32 else -700.0


def _lse_(block: Tensor, clamp: float) -> Tensor:
    """logsumexp over the last axis, destroying ``block`` (max subtracted, clamped, exp in place)."""
    m = block.amax(-1, keepdim=True).clamp_(min=torch.finfo(block.dtype).min)  # all -inf row: no NaN
    block.sub_(m).clamp_(min=clamp).exp_()
    return m.squeeze(-1) + block.sum(-1).log_()


def _dim_chunks(D: int, Q: int, N: int):
    """(d0, d1, r0, r1) blocks of about BLOCK_ELEMENTS elements of the (D, Q, N) per-dimension tensor."""
    rows = max(1, BLOCK_ELEMENTS // max(1, N))
    dims = max(1, BLOCK_ELEMENTS // max(1, Q * N)) if rows >= Q else 1
    for d0 in range(0, D, dims):
        for r0 in range(0, Q, rows):
            yield d0, min(D, d0 + dims), r0, min(Q, r0 + rows)


def _dim_layout(z: Tensor, mu: Tensor, logvar: Tensor):
    """(D, Q) and (D, N) contiguous layouts: z, mu, precision and -(logvar + log 2pi)/2."""
    return (z.T.contiguous(), mu.T.contiguous(), torch.exp(-logvar).T.contiguous(),
            (-0.5 * (logvar + LOG_2PI)).T.contiguous())


class _DimWeightedLSE(torch.autograd.Function):
    """out_id = LSE_j (log N(z_id; mu_jd, exp(logvar_jd)) + log_w_ij): all D marginals, block by block."""

    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor | None) -> Tensor:
        (Q, D), N = z.shape, mu.shape[0]
        zt, mt, prec, cst = _dim_layout(z, mu, logvar)
        clamp = _clamp_for(z.dtype)
        nhp = -0.5 * prec
        out = z.new_empty(D, Q)
        for d0, d1, r0, r1 in _dim_chunks(D, Q, N):
            block = zt[d0:d1, r0:r1, None] - mt[d0:d1, None, :]  # (dims, rows, N)
            block.square_().mul_(nhp[d0:d1, None, :]).add_(cst[d0:d1, None, :])
            if log_w is not None:
                block.add_(log_w[r0:r1])
            out[d0:d1, r0:r1] = _lse_(block, clamp)
        ctx.save_for_backward(z, mu, logvar, out)
        ctx.log_w = log_w
        return out.T.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        z, mu, logvar, out = ctx.saved_tensors
        log_w = ctx.log_w
        (Q, D), N = z.shape, mu.shape[0]
        zt, mt, prec, cst = _dim_layout(z, mu, logvar)
        grad_t = grad.T.contiguous()
        clamp = _clamp_for(z.dtype)
        gz, gmu, glv = torch.zeros_like(zt), torch.zeros_like(mt), torch.zeros_like(mt)
        for d0, d1, r0, r1 in _dim_chunks(D, Q, N):
            diff = zt[d0:d1, r0:r1, None] - mt[d0:d1, None, :]
            t = diff * prec[d0:d1, None, :]  # dL/dmu = (z - mu) / var = -dL/dz
            sq = diff.mul_(t)  # (z - mu)^2 / var
            resp = torch.add(cst[d0:d1, None, :], sq, alpha=-0.5)  # L_ijd
            if log_w is not None:
                resp.add_(log_w[r0:r1])
            resp.sub_(out[d0:d1, r0:r1, None]).clamp_(min=clamp).exp_().mul_(grad_t[d0:d1, r0:r1, None])
            t.mul_(resp)
            gz[d0:d1, r0:r1] -= t.sum(2)
            gmu[d0:d1] += t.sum(1)
            glv[d0:d1] += 0.5 * sq.sub_(1.0).mul_(resp).sum(1)  # dL/dlogvar = ((z - mu)^2 / var - 1) / 2
        return gz.T, gmu.T, glv.T, None


def _minibatch(z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor | None, *, offset: float = 0.0,
               joint_scale: float = 1.0, marginals: bool = True) -> tuple[Tensor, Tensor | None]:
    """LSE_j (L_ij + joint_scale log w_ij) + offset and LSE_j (L_ijd + log w_ij) + offset."""
    joint_w = log_w * joint_scale if log_w is not None and joint_scale != 1.0 else log_w
    # the joint never needs a B x B x D tensor: the streamed matrix-product kernel, block by block
    log_qz = kernels.log_weighted_sum(z, mu, logvar, joint_w, block_bytes=8 * BLOCK_ELEMENTS)
    log_qz_dims = _DimWeightedLSE.apply(z, mu, logvar, log_w) if marginals else None
    if offset != 0.0:
        log_qz = log_qz + offset
        log_qz_dims = None if log_qz_dims is None else log_qz_dims + offset
    return log_qz, log_qz_dims


def _log_w(kind: str, z: Tensor, dataset_size: int) -> Tensor:
    return weights.cached_log_weights(kind, z.shape[0], dataset_size, z.dtype, z.device)


# ---------------------------------------------------------------------------------------------
# the estimators


@register_estimator("naive", family="minibatch", unbiased_inside=False,
                    citation="baseline: the minibatch taken as the whole dataset (no importance correction)")
def _naive(z, mu, logvar, *, marginals=True, **unused):
    r"""The batch as the dataset: LSE_j L_ij - log B (dataset_size is not used)."""
    return _minibatch(z, mu, logvar, None, offset=-math.log(z.shape[0]), marginals=marginals)


@register_estimator("mws", family="minibatch", unbiased_inside=False, needs_dataset_size=True,
                    citation=CHEN_2018 + ", Sec. 4.1 (minibatch weighted sampling), formula as published")
def _mws(z, mu, logvar, *, dataset_size, marginals=True, **unused):
    r"""Minibatch weighted sampling: LSE_j L_ij - log(N B)."""
    return _minibatch(z, mu, logvar, None, offset=-math.log(dataset_size * z.shape[0]), marginals=marginals)


@register_estimator("mss", family="minibatch", unbiased_inside=True, needs_dataset_size=True, min_batch=2,
                    citation=CHEN_2018 + ", App. C.2 (minibatch stratified sampling), weights as intended")
def _mss(z, mu, logvar, *, dataset_size, marginals=True, **unused):
    r"""Minibatch stratified sampling: W_ii = 1/N, W_{i,(i+1) mod B} = (N-M)/(N M), else 1/M."""
    return _minibatch(z, mu, logvar, _log_w("mss", z, dataset_size), marginals=marginals)


@register_estimator("stratified", family="minibatch", unbiased_inside=True, needs_dataset_size=True, min_batch=2,
                    citation="stratified importance sampling: own stratum weight 1/N, batch mean for the rest")
def _stratified(z, mu, logvar, *, dataset_size, marginals=True, **unused):
    r"""Stratified: W_ii = 1/N, W_ij = (N-1)/(N M) for j != i (exact when B = N)."""
    return _minibatch(z, mu, logvar, _log_w("stratified", z, dataset_size), marginals=marginals)


@register_estimator("loo", family="minibatch", unbiased_inside=False, min_batch=2,
                    citation="leave-own-out batch mean: LSE_{j != i} L_ij - log M (dataset_size is not used)")
def _loo(z, mu, logvar, *, marginals=True, **unused):
    r"""Leave own out: LSE_{j != i} L_ij - log M."""
    return _minibatch(z, mu, logvar, _log_w("loo", z, z.shape[0]), marginals=marginals)


@register_estimator("mss_shipped", family="minibatch", unbiased_inside=False, published_variant=True,
                    needs_dataset_size=True, min_batch=2,
                    citation=SHIPPED_MATRIX + "; weights applied once to the joint and to each marginal")
def _mss_shipped(z, mu, logvar, *, dataset_size, marginals=True, **unused):
    r"""Replica of the shipped MSS: 1/N in column 0 of every row, strat in column 1 (the stride bug)."""
    return _minibatch(z, mu, logvar, _log_w("mss_shipped", z, dataset_size), marginals=marginals)


@register_estimator("mss_per_dim", family="minibatch", unbiased_inside=False, published_variant=True,
                    needs_dataset_size=True, min_batch=2,
                    citation=SHIPPED_PER_DIM + ", is_mss=True: the shipped matrix added to every L_ijd")
def _mss_per_dim(z, mu, logvar, *, dataset_size, marginals=True, **unused):
    r"""Replica: shipped log W added to each L_ijd before the sum over d, so the joint gets D log W_ij."""
    log_w = _log_w("mss_shipped", z, dataset_size)
    return _minibatch(z, mu, logvar, log_w, joint_scale=float(z.shape[1]), marginals=marginals)


@register_estimator("tc_no_constant", family="minibatch", unbiased_inside=False, published_variant=True,
                    citation=SHIPPED_PER_DIM + ", is_mss=False: no normalising constant at all")
def _tc_no_constant(z, mu, logvar, *, marginals=True, **unused):
    r"""Replica: LSE_j L_ij and LSE_j L_ijd with no constant; TC = mws TC - (D-1) log(N B)."""
    return _minibatch(z, mu, logvar, None, marginals=marginals)


def _gathered_log_normal(z: Tensor, mu: Tensor, logvar: Tensor, idx: Tensor) -> Tensor:
    """(B, k, D) per-dimension log N(z_id; mu_{idx[i,m] d}, var_{idx[i,m] d}), direct form."""
    m, lv = mu[idx], logvar[idx]
    diff = z[:, None, :] - m
    return -0.5 * (LOG_2PI + lv + diff * diff * torch.exp(-lv))


def _randint(high: int, shape: tuple[int, int], generator, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=gen_device).to(device)


@register_estimator("iwae", family="importance", unbiased_inside=True, needs_k=True,
                    citation="Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR: "
                             "k-sample importance estimate of q(z_i) with a uniform proposal over the N indices")
def _iwae(z, mu, logvar, *, k, proposal, index, generator, marginals=True, **unused):
    r"""IWAE-k: LSE_m L_{i,n_m} - log k with n_m iid uniform (``own``: own term 1/N + (N-1)/N x others)."""
    (B, D), N = z.shape, mu.shape[0]
    if proposal == "uniform":
        # contract: indices = torch.randint(N, (B, k), generator=generator), drawn independently of the batch
        idx = _randint(N, (B, k), generator, mu.device)
        L = _gathered_log_normal(z, mu, logvar, idx)
        log_qz = torch.logsumexp(L.sum(2), 1) - math.log(k)
        dims = torch.logsumexp(L, 1) - math.log(k) if marginals else None
        return log_qz, dims
    # proposal "own": q^ = q(z|n_i)/N + (N-1)/N * mean over k indices uniform on the N - 1 others
    L_own = _gathered_log_normal(z, mu, logvar, index[:, None])  # (B, 1, D)
    if N == 1:
        return L_own.sum((1, 2)), (L_own[:, 0] if marginals else None)
    u = _randint(N - 1, (B, k), generator, mu.device)
    idx = u + (u >= index[:, None]).long()  # skip the own index
    L = torch.cat([L_own, _gathered_log_normal(z, mu, logvar, idx)], 1)  # (B, 1 + k, D)
    log_w = torch.full((1 + k,), math.log((N - 1) / (N * k)), dtype=z.dtype, device=z.device)
    log_w[0] = -math.log(N)
    log_qz = torch.logsumexp(L.sum(2) + log_w, 1)
    dims = torch.logsumexp(L + log_w[:, None], 1) if marginals else None
    return log_qz, dims


@register_estimator("exact", family="exact", unbiased_inside=True,
                    citation="the full mixture: LSE over all N components - log N (streamed kernels)")
def _exact(z, mu, logvar, *, marginals=True, **unused):
    r"""Exact: log (1/N) sum_n q(z_i|n), and likewise for each marginal."""
    log_n = math.log(mu.shape[0])
    log_qz = kernels.log_mixture(z, mu, logvar) - log_n
    dims = kernels.log_mixture_marginals(z, mu, logvar) - log_n if marginals else None
    return log_qz, dims


# ---------------------------------------------------------------------------------------------
# the public entry point


def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _check_index(index, B: int, N: int, device) -> Tensor:
    if not isinstance(index, Tensor):
        try:
            index = torch.as_tensor(index)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"index must be a tensor of integer indices, got {type(index).__name__}") from exc
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"index must hold integers (torch.long), got {index.dtype}")
    if index.shape != (B,):
        raise ValueError(f"index must have shape (B,) = ({B},), one own component per row of z, got {tuple(index.shape)}")
    if B and (int(index.min()) < 0 or int(index.max()) >= N):
        raise ValueError(f"index values must lie in [0, N) = [0, {N}), got min {int(index.min())} and max {int(index.max())}")
    return index.to(device=device, dtype=torch.long)


def log_aggregate_posterior(z, mu, logvar, dataset_size=None, estimator: str = "exact", *, k=None,
                            proposal: str = "uniform", index=None, generator: torch.Generator | None = None,
                            marginals: bool = True) -> tuple[Tensor, Tensor | None]:
    r"""Estimate log q(z_i) and every log q(z_id) for samples z_i ~ q(z|n_i).

    q(z) = (1/N) sum_n Normal(z; mu_n, diag exp(logvar_n)) is the aggregate posterior and q(z_d)
    its marginals. The estimators and their formulas are listed in :mod:`estimators.log_qz` and
    :data:`estimators.ESTIMATORS`; ``"mws"`` and ``"mss"`` follow Chen et al. (2018), ``"iwae"``
    Burda et al. (2016). Differentiable in ``z``, ``mu`` and ``logvar``; works in float32 and
    float64 and returns the common dtype of the inputs.

    What ``mu``, ``logvar`` and ``dataset_size`` mean depends on the estimator's family:

    * minibatch (``naive``, ``mws``, ``mss``, ``stratified``, ``loo``, ``mss_shipped``,
      ``mss_per_dim``, ``tc_no_constant``): ``mu``, ``logvar`` are the batch's own posteriors
      (B, D), row i being the component z_i was drawn from (the batch: B distinct indices drawn
      uniformly without replacement). ``dataset_size`` = N >= B is required by the estimators whose
      formula uses N (``mws`` and the ``mss`` family, ``stratified``); ``naive``, ``loo`` and
      ``tc_no_constant`` do not use it, and check it (N >= B) only when given. ``index`` is ignored.
    * ``iwae`` and ``exact``: ``mu``, ``logvar`` are the whole field (N, D); ``index`` (B,) holds
      the own component n_i of each z_i (required by ``iwae`` with ``proposal="own"``, else
      optional and only checked); ``dataset_size`` defaults to N and, if given, must equal N.

    Args:
        z: samples, (B, D).
        mu, logvar: posterior means and log-variances, (B, D) or (N, D) as above.
        dataset_size: N, the number of points in the dataset.
        estimator: a name in :data:`estimators.ESTIMATORS`.
        k: number of importance samples (``iwae`` only; required there, k >= 1).
        proposal: ``"uniform"`` (k indices iid uniform on 0..N-1, drawn independently of the
            batch) or ``"own"`` (the own component with weight 1/N plus (N-1)/N times the mean
            over k indices drawn uniformly from the N - 1 others); ``iwae`` only.
        index: (B,) long, own component of each z_i in the field (``iwae``, ``exact``).
        generator: torch.Generator for the ``iwae`` draws (``torch.randint`` of shape (B, k)).
        marginals: if False, skip the marginals (about D times the work) and return None for them.

    Returns:
        ``(log_qz, log_qz_dims)``: (B,) and (B, D) tensors (``log_qz_dims`` None if not ``marginals``).

    Raises:
        ValueError: unknown estimator (the message lists the known ones) or proposal; shapes that
            disagree; non-finite values; B below the estimator's minimum (2 for ``mss``,
            ``stratified``, ``loo`` and the mss variants); dataset_size < B or missing where
            required; k missing or < 1; index missing, of the wrong shape or out of range.
        TypeError: non-float tensors, non-integer sizes or index.

    Example::

        >>> mu, logvar = torch.randn(256, 10), torch.zeros(256, 10)
        >>> z = mu + torch.randn(256, 10)
        >>> log_qz, log_qz_dims = log_aggregate_posterior(z, mu, logvar, 60000, "mss")
    """
    info = get_estimator(estimator)
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    z = as_float_tensor("z", z, ndim=2)
    mu = as_float_tensor("mu", mu, ndim=2)
    logvar = as_float_tensor("logvar", logvar, ndim=2)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    (B, D), rows = z.shape, mu.shape[0]
    if mu.shape[1] != D:
        raise ValueError(f"z has D = {D} latent dimensions but mu and logvar have {mu.shape[1]}")
    if B == 0 or D == 0:
        raise ValueError(f"z must hold at least one sample with at least one dimension, got shape {(B, D)}")
    if rows == 0:
        raise ValueError("mu and logvar must hold at least one posterior, got 0 rows")
    for name, t in (("z", z), ("mu", mu), ("logvar", logvar)):
        check_finite(name, t)
    dtype = torch.promote_types(torch.promote_types(z.dtype, mu.dtype), logvar.dtype)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)

    N = None if dataset_size is None else _as_int("dataset_size", dataset_size)
    if info.family == "minibatch":
        if rows != B:
            raise ValueError(
                f"estimator {info.name!r} is a minibatch estimator: mu and logvar must be the batch's own "
                f"posteriors, one row per row of z, but z has B = {B} rows and mu, logvar have {rows}")
        if B < info.min_batch:
            raise ValueError(f"estimator {info.name!r} needs a batch of at least {info.min_batch} samples "
                             f"(M = B - 1 >= 1), got B = {B}")
        if N is None and info.needs_dataset_size:
            raise ValueError(f"estimator {info.name!r} needs dataset_size (N, the number of points in the dataset)")
        if N is not None and N < B:
            raise ValueError(f"dataset_size must be at least the batch size (distinct indices), got N = {N} < B = {B}")
        index = None
    else:
        if N is not None and N != rows:
            raise ValueError(f"estimator {info.name!r} takes the whole field: dataset_size must equal "
                             f"mu.shape[0] = {rows} (or be None), got {N}")
        N = rows
        if index is not None:
            index = _check_index(index, B, N, mu.device)
        elif info.needs_k and proposal == "own":
            raise ValueError("proposal 'own' needs index, the (B,) own component of each z_i in the field")
    if info.needs_k:
        if k is None:
            raise ValueError(f"estimator {info.name!r} needs k, the number of importance samples (k >= 1)")
        k = _as_int("k", k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
    return info.implementation(z, mu, logvar, dataset_size=N, k=k, proposal=proposal, index=index,
                               generator=generator, marginals=bool(marginals))
