r"""Stage 2, the kernels: exact log-sums over mixtures of diagonal Gaussians (the hot path).

For query points z (Q, D) and N components Normal(mu_n, diag exp(logvar_n)), with
L_in = log N(z_i; mu_n, var_n) (joint over d) and L_ind its per-dimension terms:

* :func:`log_normal_matrix` -- the (Q, N) matrix L_in (batch-sized Q and N),
* :func:`log_mixture` -- logsumexp_n (L_in + log w_n), (Q,),
* :func:`log_weighted_sum` -- logsumexp_n (L_in + log W_in) with a row-specific (Q, N) log-weight matrix,
* :func:`log_mixture_marginals` -- logsumexp_n (L_ind + log w_n), every 1-D marginal at once, (Q, D),
* :func:`log_weighted_marginals` -- logsumexp_n (L_ind + log W_in), (Q, D).

All are streamed: memory is bounded by a block budget, never Q x N (let alone Q x N x D), in the
forward and in the (written-out) backward pass; all are differentiable in z, mu and logvar, to
second order too (``create_graph=True``: then by differentiable torch operations on the whole
matrix, memory not bounded). One module per concept:

* :mod:`.joint` -- the joint reduction, matrix-product form in float64 (cancellation-free for sharp
  posteriors), blocks merged online;
* :mod:`.marginals` -- the one weighted per-dimension reduction, direct (z - mu)^2 form in the
  inputs' dtype, blocks of (dimension, rows, column chunk) merged online;
* :mod:`.native` -- the fused C kernel computing both forward values (compiled at first use;
  torch fallback, or ``VAE_ESTIMATORS_NATIVE=0``);
* :mod:`._dispatch` -- both reductions are registered torch operators
  (``torch.ops.vae_estimators.joint_lse`` and ``marginal_lse``, with fake implementations and
  registered autograd), so ``torch.compile``, ``torch.export`` and ``torch.library.opcheck`` see
  them as single operators; plain eager calls take the same functions without the dispatcher.

The public functions validate their arguments (:mod:`estimators.validation`); the internals
:func:`joint_lse` and :func:`marginal_lse` do not, for the other stages of the package, which
validate at their own boundary.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..validation import check_points, validating
from .joint import DEFAULT_BLOCK_BYTES, joint_lse, normal_matrix
from .marginals import marginal_lse

__all__ = ["log_normal_matrix", "log_mixture", "log_weighted_sum", "log_mixture_marginals",
           "log_weighted_marginals", "joint_lse", "marginal_lse", "DEFAULT_BLOCK_BYTES"]


def _describe(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _below_inf(t: Tensor) -> bool:
    """No NaN and no +inf in ``t`` (-inf allowed): one reduction, no temporary of t's size (max propagates NaN)."""
    return t.numel() == 0 or float(t.detach().max()) < math.inf


def _check_log_weights(log_weights, N: int, dtype: torch.dtype) -> Tensor | None:
    if log_weights is None:
        return None
    if not isinstance(log_weights, Tensor) or log_weights.shape != (N,):
        raise ValueError(f"log_weights must be a tensor of shape (N,) = ({N},), got {_describe(log_weights)}")
    if validating() and not _below_inf(log_weights):
        raise ValueError("log_weights must not hold NaN or +inf (use -inf for a zero weight)")
    return log_weights.to(dtype)


def _check_weight_matrix(log_weight_matrix, Q: int, N: int, dtype: torch.dtype) -> Tensor | None:
    if log_weight_matrix is None:
        return None
    if not isinstance(log_weight_matrix, Tensor) or log_weight_matrix.shape != (Q, N):
        raise ValueError(f"log_weight_matrix must have shape (Q, N) = ({Q}, {N}), got {_describe(log_weight_matrix)}")
    if validating() and not _below_inf(log_weight_matrix):
        raise ValueError("log_weight_matrix must not hold NaN or +inf (use -inf for a zero weight)")
    return log_weight_matrix.detach().to(dtype)


def log_normal_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""The (Q, N) matrix L_in = log Normal(z_i; mu_n, diag exp(logvar_n)), joint over the D dimensions.

    Matrix-product form in float64 (see :mod:`estimators.kernels.joint`), returned in the inputs'
    dtype; differentiable by ordinary autograd. Meant for batch-sized Q and N (an estimator's
    B x B); for a whole data set use :func:`log_mixture`, which never holds Q x N.

    Args:
        z: query points, (Q, D).
        mu, logvar: component means and log-variances, (N, D).
    """
    z, mu, logvar = check_points(z, mu, logvar)
    return normal_matrix(z, mu, logvar)


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
        log_weights: optional (N,) log mixture weights (-inf for a zero weight).
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
    log_weights = _check_log_weights(log_weights, mu.shape[0], z.dtype)
    return joint_lse(z, mu, logvar, log_weights, block_bytes=block_bytes, use_native=use_native)


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
    bias = _check_weight_matrix(log_weight_matrix, z.shape[0], mu.shape[0], z.dtype)
    return joint_lse(z, mu, logvar, None, bias, block_bytes=block_bytes, use_native=use_native)


def log_mixture_marginals(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None, *,
                          block_bytes: int = DEFAULT_BLOCK_BYTES, use_native: bool = True) -> Tensor:
    r"""log sum_n w_n Normal(z_id; mu_nd, exp(logvar_nd)) for every point and dimension, streamed.

    The D one-dimensional marginals of the mixture at once; same contract as :func:`log_mixture`
    (differentiable in z, mu, logvar and log_weights). Direct (z - mu)^2 form in the inputs' dtype
    (see :mod:`estimators.kernels.marginals`); memory is a few blocks of at most ``block_bytes``.

    Returns:
        (Q, D) tensor in the inputs' dtype.
    """
    z, mu, logvar = check_points(z, mu, logvar)
    log_weights = _check_log_weights(log_weights, mu.shape[0], z.dtype)
    return marginal_lse(z, mu, logvar, log_weights, block_bytes=block_bytes, use_native=use_native)


def log_weighted_marginals(z: Tensor, mu: Tensor, logvar: Tensor, log_weight_matrix: Tensor | None = None, *,
                           block_bytes: int = DEFAULT_BLOCK_BYTES, use_native: bool = True) -> Tensor:
    r"""out_id = logsumexp_n (L_ind + log_weight_matrix[i, n]): the marginals with row-specific weights.

    The per-dimension counterpart of :func:`log_weighted_sum` (the minibatch estimators' log q(z_id)):
    one (Q, N) matrix of log weights (-inf for a zero weight), shared by every dimension, constant
    (no gradient); differentiable in z, mu and logvar. The forward pass runs in the fused C kernel
    when it is available, the backward pass in torch.

    Args:
        z: (Q, D); mu, logvar: (N, D); log_weight_matrix: (Q, N) or None.
    Returns:
        (Q, D) tensor in the inputs' dtype.
    """
    z, mu, logvar = check_points(z, mu, logvar)
    bias = _check_weight_matrix(log_weight_matrix, z.shape[0], mu.shape[0], z.dtype)
    return marginal_lse(z, mu, logvar, None, bias, block_bytes=block_bytes, use_native=use_native)
