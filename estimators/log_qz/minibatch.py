r"""Minibatch estimators of log q(z_i): the batch's own posteriors with a weight per pair.

With L_ij = log q(z_i|n_j) (joint over d), L_ijd its per-dimension terms and M = B - 1, each
estimator is a weighted logsumexp over the batch, log q^(z_i) = LSE_j (L_ij + log W_ij), and
likewise for every marginal; its weights (:class:`~estimators.log_qz.registry.LogWeights`) are all
that distinguishes it:

==============  =================================================  =========================
name            log W_ij                                           citation
==============  =================================================  =========================
``naive``       -log B (the batch taken as the data set)           InfoNCE (mi: lower bound)
``mws``         -log(N B)                                          Chen et al. 2018, Sec. 4.1
``mss``         W_ii = 1/N, W_{i,i+1} = (N-M)/(N M), else 1/M      Chen et al. 2018, App. C.2
``stratified``  W_ii = 1/N, else (N-1)/(N M)                       stratified sampling
``loo``         W_ii = 0, else 1/M                                 L1Out (mi: upper bound)
==============  =================================================  =========================

With the encoder as critic, ``naive``'s mi is the InfoNCE lower bound on I(n; z) (van den Oord
et al. 2018; Poole et al. 2019), at most log B, and ``loo``'s mi is the leave-one-out upper bound
(Poole et al. 2019, "L1Out"): in expectation they bracket the mutual information.

The joint never needs a B x B x D tensor: both reductions are the streamed kernels of
:mod:`estimators.kernels` with the (B, B) log-weight matrix (fused C forward where available).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import kernels
from .batch import Batch
from .registry import LogWeights, register_minibatch
from .weights import cached_log_weights

__all__ = ["weighted_logsumexp", "CHEN_2018", "POOLE_2019"]

POOLE_2019 = "Poole, Ozair, van den Oord, Alemi & Tucker (2019), On Variational Bounds of Mutual Information, ICML"
CHEN_2018 = ("Chen, Li, Grosse & Duvenaud (2018), Isolating Sources of Disentanglement in Variational "
             "Autoencoders, NeurIPS")
BLOCK_BYTES = 2**22  # one block of the backward pass: batch-sized matrices stay in cache


def _reduce(kernel, batch: Batch, w) -> Tensor:
    if isinstance(w, Tensor):
        return kernel(batch.z, batch.mu, batch.logvar, bias=w, block_bytes=BLOCK_BYTES)
    out = kernel(batch.z, batch.mu, batch.logvar, block_bytes=BLOCK_BYTES)
    return out + w if w != 0.0 else out


def weighted_logsumexp(batch: Batch, w: LogWeights, *, marginals: bool = True) -> tuple[Tensor, Tensor | None]:
    r"""LSE_j (L_ij + w.joint) and, if ``marginals``, LSE_j (L_ijd + w.marginal): (B,), (B, D)."""
    log_qz = _reduce(kernels.joint_lse, batch, w.joint)
    dims = _reduce(kernels.marginal_lse, batch, w.marginal) if marginals else None
    return log_qz, dims


def matrix(kind: str):
    r"""Log weights of a weight-matrix kind of :mod:`.weights`, the same matrix for the joint and the marginals."""
    def weights(B: int, N: int, D: int, dtype: torch.dtype, device) -> LogWeights:
        W = cached_log_weights(kind, B, N, dtype, device)
        return LogWeights(W, W)

    return weights


@register_minibatch("naive", implementation=weighted_logsumexp, unbiased_inside=False, mi_bound="lower",
                    citation="the minibatch taken as the whole dataset (no importance correction); its mi is the "
                             "InfoNCE lower bound with the encoder as critic, " + POOLE_2019)
def _naive(B, N, D, dtype, device):
    r"""The batch as the dataset: LSE_j L_ij - log B (dataset_size is not used)."""
    return LogWeights(-math.log(B), -math.log(B))


@register_minibatch("mws", implementation=weighted_logsumexp, unbiased_inside=False, needs_dataset_size=True,
                    citation=CHEN_2018 + ", Sec. 4.1 (minibatch weighted sampling), formula as published")
def _mws(B, N, D, dtype, device):
    r"""Minibatch weighted sampling: LSE_j L_ij - log(N B)."""
    return LogWeights(-math.log(N * B), -math.log(N * B))


register_minibatch("mss", implementation=weighted_logsumexp, unbiased_inside=True, needs_dataset_size=True,
                   min_batch=2, citation=CHEN_2018 + ", App. C.2 (minibatch stratified sampling), weights as intended",
                   description="Minibatch stratified sampling: W_ii = 1/N, W_{i,(i+1) mod B} = (N-M)/(N M), else 1/M."
                   )(matrix("mss"))
register_minibatch("stratified", implementation=weighted_logsumexp, unbiased_inside=True, needs_dataset_size=True,
                   min_batch=2,
                   citation="stratified importance sampling: own stratum weight 1/N, batch mean for the rest",
                   description="Stratified: W_ii = 1/N, W_ij = (N-1)/(N M) for j != i (exact when B = N).")(matrix("stratified"))
register_minibatch("loo", implementation=weighted_logsumexp, unbiased_inside=False, min_batch=2, mi_bound="upper",
                   citation="leave-own-out batch mean: LSE_{j != i} L_ij - log M (dataset_size is not used); its mi "
                            "is the leave-one-out upper bound (L1Out), " + POOLE_2019,
                   description="Leave own out: LSE_{j != i} L_ij - log M.")(matrix("loo"))
