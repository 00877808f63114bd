r"""Log importance-weight matrices of the minibatch estimators of log q(z_i).

A minibatch estimator writes q^(z_i) = sum_j W_ij q(z_i | n_j) over the batch's own components
n_1..n_B (B distinct indices drawn uniformly without replacement from N). Row i of W holds the
weights used for sample z_i, whose own component is n_i (so the own weight is W_ii). With M = B - 1:

* :func:`mss_log_weights` -- minibatch stratified sampling as intended (Chen et al. 2018, App. C.2):
  W_ii = 1/N, W_{i,(i+1) mod B} = (N - M)/(N M), every other W_ij = 1/M.
* :func:`stratified_log_weights` -- W_ii = 1/N, every other W_ij = (N - 1)/(N M).
* :func:`loo_log_weights` -- leave own out: W_ii = 0, every other W_ij = 1/M.
* :func:`mss_shipped_log_weights` -- the matrix of the widely copied beta-TCVAE code, bug included.
* ``"hfvae"`` -- the HFVAE code's batch marginal (Esmaeili et al. 2019): W_ii = M/(B (N-1)),
  every other W_ij = 1/B; it is the stratified matrix times N M / (B (N - 1)), rows summing to
  N/(N-1) * (1 - 1/B) + M/(B(N-1)) != 1 unless B = N.

For the first two, each row sums to 1 and the own weight is 1/N; since each other batch member is
marginally uniform on the N - 1 other indices, E[q^(z_i)] = q(z_i|n_i)/N + (N-1)/N * E[q(z_i|n)]
= q(z_i) exactly: the inner sum is unbiased and log q^ is biased only by Jensen's inequality.

Each kind is a builder in the registry :data:`WEIGHT_KINDS` (``@register_weight_kind``). The
matrices are built once per (B, N, dtype, device) and cached (``functools.lru_cache``);
zero weights are ``-inf``. The public functions return a fresh copy; the estimators use the
cached tensor directly through :func:`cached_log_weights` and never modify it.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor

from ..validation import as_int

__all__ = [
    "WEIGHT_KINDS",
    "register_weight_kind",
    "cached_log_weights",
    "mss_log_weights",
    "stratified_log_weights",
    "loo_log_weights",
    "mss_shipped_log_weights",
]

WEIGHT_KINDS: dict[str, Callable] = {}  # kind -> builder(B, N, dtype, device) -> (B, B) log W


def register_weight_kind(name: str) -> Callable[[Callable], Callable]:
    """Decorator adding a builder ``f(B, N, dtype, device) -> (B, B) log W`` to :data:`WEIGHT_KINDS`.

    Builders write log W entry by entry from its definition, directly in ``dtype`` (the matrix is
    B x B: no float64 temporaries); logs are taken in Python double precision. B >= 2, N >= B.
    """
    def decorator(builder: Callable) -> Callable:
        if name in WEIGHT_KINDS:
            raise ValueError(f"a weight kind named {name!r} is already registered")
        WEIGHT_KINDS[name] = builder
        return builder

    return decorator


def _full(B: int, value: float, dtype, device) -> Tensor:
    return torch.full((B, B), value, dtype=dtype, device=device)


def _log_strat(B: int, N: int) -> float:
    M = B - 1
    return math.log(N - M) - math.log(N) - math.log(M)  # log((N - M) / (N M))


@register_weight_kind("mss")
def _mss(B: int, N: int, dtype, device) -> Tensor:
    rows = torch.arange(B, device=device)
    W = _full(B, -math.log(B - 1), dtype, device)
    W[rows, (rows + 1) % B] = _log_strat(B, N)
    W[rows, rows] = -math.log(N)  # after the superdiagonal: for B = 2 both differ, nothing is overwritten
    return W


@register_weight_kind("stratified")
def _stratified(B: int, N: int, dtype, device) -> Tensor:
    rows = torch.arange(B, device=device)
    W = _full(B, math.log(N - 1) - math.log(N) - math.log(B - 1), dtype, device)
    W[rows, rows] = -math.log(N)
    return W


@register_weight_kind("loo")
def _loo(B: int, N: int, dtype, device) -> Tensor:
    rows = torch.arange(B, device=device)
    W = _full(B, -math.log(B - 1), dtype, device)
    W[rows, rows] = -math.inf
    return W


@register_weight_kind("mss_shipped")
def _mss_shipped(B: int, N: int, dtype, device) -> Tensor:
    # Replica of the shipped construction: W.view(-1)[::M+1] = 1/N, W.view(-1)[1::M+1] = strat,
    # W[M-1, 0] = strat. The flat stride M + 1 is B (a row), not B + 1 (a diagonal step), so the
    # two slices fill column 0 and column 1 of every row; row M - 1 = B - 2 then has strat in
    # both columns 0 and 1. The own weight of row i >= 2 is 1/M, not 1/N.
    M = B - 1
    W = _full(B, -math.log(M), dtype, device)
    W[:, 0] = -math.log(N)
    W[:, 1] = _log_strat(B, N)
    W[M - 1, 0] = _log_strat(B, N)
    return W


@register_weight_kind("hfvae")
def _hfvae(B: int, N: int, dtype, device) -> Tensor:
    # probtorch's log_batch_marginal: the diagonal of the (B, B) pairwise densities divided by
    # bias = (N - 1)/(B - 1), then the mean over the B columns.
    rows = torch.arange(B, device=device)
    W = _full(B, -math.log(B), dtype, device)
    W[rows, rows] = math.log(B - 1) - math.log(N - 1) - math.log(B)
    return W


@functools.lru_cache(maxsize=16)
def _cached(kind: str, B: int, N: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return WEIGHT_KINDS[kind](B, N, dtype, device)


def cached_log_weights(kind: str, batch_size: int, dataset_size: int, dtype: torch.dtype = torch.float64,
                       device: torch.device | str | None = None) -> Tensor:
    r"""The cached (B, B) log-weight matrix of ``kind`` (one of :data:`WEIGHT_KINDS`).

    Shared between calls: treat it as read-only (use the public builders for a private copy).
    ``dataset_size`` is ignored for ``"loo"``.
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"unknown weight kind {kind!r}; known: {', '.join(WEIGHT_KINDS)}")
    B = as_int("batch_size", batch_size)
    N = B if kind == "loo" else as_int("dataset_size", dataset_size)
    if B < 2:
        raise ValueError(f"batch_size must be at least 2 for a minibatch weight matrix (M = B - 1 >= 1), got {B}")
    if N < B:
        raise ValueError(f"dataset_size must be at least batch_size (the batch holds distinct indices), got N = {N} < B = {B}")
    return _cached(kind, B, N, dtype, torch.device(device if device is not None else "cpu"))


def mss_log_weights(batch_size: int, dataset_size: int, dtype: torch.dtype = torch.float64,
                    device=None) -> Tensor:
    r"""log W of minibatch stratified sampling as intended (Chen et al. 2018, NeurIPS, App. C.2).

    W_ii = 1/N, W_{i,(i+1) mod B} = (N - M)/(N M), every other W_ij = 1/M, with M = B - 1.

    Args:
        batch_size: B >= 2.
        dataset_size: N >= B.
        dtype, device: of the returned (B, B) tensor.

    Example::

        >>> mss_log_weights(3, 10).exp().sum(1)
        tensor([1., 1., 1.], dtype=torch.float64)
    """
    return cached_log_weights("mss", batch_size, dataset_size, dtype, device).clone()


def stratified_log_weights(batch_size: int, dataset_size: int, dtype: torch.dtype = torch.float64,
                           device=None) -> Tensor:
    r"""log W of stratified sampling: the own stratum {n_i} has weight 1/N, the other N - 1 points
    are estimated by the batch mean, W_ij = (N - 1)/(N M) for j != i. With B = N it is exact."""
    return cached_log_weights("stratified", batch_size, dataset_size, dtype, device).clone()


def loo_log_weights(batch_size: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    r"""log W of the leave-own-out estimator: -inf on the diagonal, -log M elsewhere."""
    return cached_log_weights("loo", batch_size, batch_size, dtype, device).clone()


def mss_shipped_log_weights(batch_size: int, dataset_size: int, dtype: torch.dtype = torch.float64,
                            device=None) -> Tensor:
    r"""log W exactly as built by the widely copied beta-TCVAE code (a documented bug).

    Replicates ``_log_importance_weight_matrix`` of rtqichen/beta-tcvae (vae_quant.py), copied into
    e.g. YannDubs/disentangling-vae (``log_importance_weight_matrix``): a B x B matrix of 1/M, then
    ``W.view(-1)[::M+1] = 1/N``, ``W.view(-1)[1::M+1] = strat``, ``W[M-1, 0] = strat`` with
    strat = (N - M)/(N M). The flat stride M + 1 equals B, so 1/N lands in column 0 of every row
    and strat in column 1, not on the diagonal and superdiagonal; row B - 2 then holds strat in
    columns 0 and 1 (its row sum is 2 strat + (B - 2)/M, not 1).
    """
    return cached_log_weights("mss_shipped", batch_size, dataset_size, dtype, device).clone()
