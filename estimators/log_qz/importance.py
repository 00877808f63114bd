r"""IWAE-k estimates of log q(z_i): k components of the whole field, drawn independently of the batch.

Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR: with n_1..n_k iid
uniform on the N indices, q^(z_i) = (1/k) sum_m q(z_i|n_m) is unbiased for q(z_i). With the proposal
``own`` the own component enters with its exact weight 1/N and the k draws estimate the rest:
q^(z_i) = q(z_i|n_i)/N + (N-1)/N * (1/k) sum_m q(z_i|n'_m), n'_m uniform on the N - 1 others.

The k draws are ``torch.randint(N, (B, k), generator=generator)`` (``own``: ``randint(N - 1, ...)``
shifted past the own index), so a seeded generator reproduces them.

Streamed: the (B, k, D) tensor of per-dimension log-densities is never formed whole. The k draws
are taken in chunks of at most ``CHUNK_BYTES`` (B x k_c x D floats); each chunk's logsumexp
(joint (B,) and marginals (B, D)) is kept and the chunks are merged by one more logsumexp. With
autograd on, each chunk is checkpointed (``torch.utils.checkpoint``: its gather and log-densities are
recomputed in the backward pass), so memory stays bounded by a chunk there too.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from torch.utils.checkpoint import checkpoint

from ..numerics import log_normal, logsumexp
from .batch import Batch
from .registry import register_estimator

__all__ = ["PROPOSALS", "CHUNK_BYTES"]

PROPOSALS = ("uniform", "own")
CHUNK_BYTES = 2**23  # one chunk of the (B, k, D) log-densities: 8 MB


def _chunk(z: Tensor, field_mu: Tensor, field_logvar: Tensor, idx: Tensor,
           marginals: bool) -> tuple[Tensor, Tensor]:
    """LSE over one chunk of draws: joint (B,) and marginals (B, D) (empty if not ``marginals``)."""
    L = log_normal(z[:, None, :], field_mu[idx], field_logvar[idx])  # (B, k_c, D)
    joint = logsumexp(L.sum(2), 1)
    return joint, (logsumexp(L, 1) if marginals else z.new_empty(0))


def _streamed(batch: Batch, idx: Tensor, marginals: bool) -> tuple[Tensor, Tensor | None]:
    """LSE_m over all (B, k) draws ``idx``, chunk by chunk: joint (B,) and marginals (B, D) or None."""
    B, k, D = idx.shape[0], idx.shape[1], batch.D
    size = max(1, CHUNK_BYTES // max(1, B * D * batch.z.element_size()))
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (batch.z, batch.field_mu, batch.field_logvar))
    recompute = grad and not torch.compiler.is_compiling()
    joints, dims = [], []
    for start in range(0, k, size):
        args = (batch.z, batch.field_mu, batch.field_logvar, idx[:, start:start + size], marginals)
        j, d = checkpoint(_chunk, *args, use_reentrant=False) if recompute and k > size else _chunk(*args)
        joints.append(j)
        dims.append(d)
    if len(joints) == 1:
        return joints[0], (dims[0] if marginals else None)
    log_qz = logsumexp(torch.stack(joints, 1), 1)
    return log_qz, (logsumexp(torch.stack(dims, 1), 1) if marginals else None)


def _randint(high: int, shape: tuple[int, int], generator, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=gen_device).to(device)


@register_estimator("iwae", family="importance", unbiased_inside=True, needs_k=True,
                    citation="Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR: "
                             "k-sample importance estimate of q(z_i) with a uniform proposal over the N indices")
def _iwae(batch: Batch, *, k, proposal, generator, marginals, **unused):
    r"""IWAE-k: LSE_m L_{i,n_m} - log k with n_m iid uniform (``own``: own term 1/N + (N-1)/N x others)."""
    B, N, device = batch.B, batch.field_mu.shape[0], batch.z.device
    if proposal == "uniform":
        log_qz, dims = _streamed(batch, _randint(N, (B, k), generator, device), marginals)
        return log_qz - math.log(k), (dims - math.log(k) if marginals else None)
    L_own = log_normal(batch.z, batch.mu, batch.logvar)  # (B, D)
    if N == 1:
        return L_own.sum(1), (L_own if marginals else None)
    u = _randint(N - 1, (B, k), generator, device)
    idx = u + (u >= batch.index[:, None]).long()  # skip the own index
    others, others_dims = _streamed(batch, idx, marginals)  # LSE over the k draws
    log_rest = math.log((N - 1) / (N * k))
    log_qz = torch.logaddexp(L_own.sum(1) - math.log(N), others + log_rest)
    dims = torch.logaddexp(L_own - math.log(N), others_dims + log_rest) if marginals else None
    return log_qz, dims
