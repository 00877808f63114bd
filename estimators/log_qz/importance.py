r"""IWAE-k estimates of log q(z_i): k components of the whole field, drawn independently of the batch.

Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR: with n_1..n_k iid
uniform on the N indices, q^(z_i) = (1/k) sum_m q(z_i|n_m) is unbiased for q(z_i). With the proposal
``own`` the own component enters with its exact weight 1/N and the k draws estimate the rest:
q^(z_i) = q(z_i|n_i)/N + (N-1)/N * (1/k) sum_m q(z_i|n'_m), n'_m uniform on the N - 1 others.

The k draws are ``torch.randint(N, (B, k), generator=generator)`` (``own``: ``randint(N - 1, ...)``
shifted past the own index), so a seeded generator reproduces them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..numerics import log_normal
from .batch import Batch
from .registry import register_estimator

__all__ = ["PROPOSALS"]

PROPOSALS = ("uniform", "own")


def _gathered(batch: Batch, idx: Tensor) -> Tensor:
    """(B, k, D) per-dimension log N(z_id; mu_{idx[i,m] d}, var_{idx[i,m] d}) over the field."""
    return log_normal(batch.z[:, None, :], batch.field_mu[idx], batch.field_logvar[idx])


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
        L = _gathered(batch, _randint(N, (B, k), generator, device))
        log_qz = torch.logsumexp(L.sum(2), 1) - math.log(k)
        dims = torch.logsumexp(L, 1) - math.log(k) if marginals else None
        return log_qz, dims
    L_own = log_normal(batch.z, batch.mu, batch.logvar)[:, None, :]  # (B, 1, D)
    if N == 1:
        return L_own.sum((1, 2)), (L_own[:, 0] if marginals else None)
    u = _randint(N - 1, (B, k), generator, device)
    idx = u + (u >= batch.index[:, None]).long()  # skip the own index
    L = torch.cat([L_own, _gathered(batch, idx)], 1)  # (B, 1 + k, D)
    log_w = torch.full((1 + k,), math.log((N - 1) / (N * k)), dtype=batch.z.dtype, device=device)
    log_w[0] = -math.log(N)
    log_qz = torch.logsumexp(L.sum(2) + log_w, 1)
    dims = torch.logsumexp(L + log_w[:, None], 1) if marginals else None
    return log_qz, dims
