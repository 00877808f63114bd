r"""Importance-weighted bounds on log p(x) (IWAE-k) and their jackknife bias corrections.

For a latent-variable model p(x, z) and an encoder q(z|x), draw z_1..z_k ~ q(z|x) and form the
log importance weights log w_i = log p(x, z_i) - log q(z_i|x). The IWAE-k bound (Burda, Grosse and
Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016) is

    L_k = logsumexp_i log w_i - log k,    E[L_1] <= E[L_2] <= ... <= log p(x).

Its bias has the expansion (Maddison et al. 2017; Nowozin 2018, Prop. 1), with v = w / p(x),
mu_2 = Var_q(v) = exp(D_2(p(z|x) || q)) - 1 and mu_3 = E_q[(v - 1)^3]:

    E[L_k] - log p(x) = -mu_2 / (2k) + (mu_3 / 3 - 3 mu_2^2 / 4) / k^2 + O(k^-3)

(:func:`iwae_bias_expansion`, which also gives the 1/k^3 term).

The jackknife (Nowozin, "Debiasing evidence approximations: on importance-weighted autoencoders
and jackknife variational inference", ICLR 2018) cancels the leading terms by combining L_k with
the means of the bounds on the leave-one-out and leave-two-out subsets of the same k weights.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..validation import as_float_tensor, check_same_shape


__all__ = [
    "iwae_bound",
    "iwae_jackknife",
    "jackknife_coefficients",
    "iwae_bias_expansion",
]


def _check_no_nan(name: str, value: Tensor) -> None:
    # -inf is a legitimate log weight (a sample with zero model density); NaN and +inf are not.
    v = value.detach()
    if bool(torch.isnan(v).any()) or bool(torch.isposinf(v).any()):
        raise ValueError(f"{name} holds NaN or +inf values; log weights must be finite or -inf")


def _check_k(k: int, minimum: int, what: str) -> None:
    if k < minimum:
        raise ValueError(f"k must be at least {minimum} for {what}, got k = {k} samples")


def _samples_last(name: str, value: Tensor, dim: int) -> Tensor:
    if value.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension holding the k samples, got a scalar")
    if not -value.dim() <= dim < value.dim():
        raise ValueError(f"dim = {dim} is out of range for {name} of shape {tuple(value.shape)}")
    return value.movedim(dim, -1)


def iwae_bound(log_joint: Tensor, log_q: Tensor, k: int | None = None, dim: int = -1) -> Tensor:
    r"""The IWAE-k bound L_k = logsumexp_i [log p(x, z_i) - log q(z_i|x)] - log k.

    Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016. Works for any
    model that gives log p(x, z) and any encoder that gives log q(z|x) at the same samples
    z_i ~ q(z|x); the logsumexp subtracts the maximum, so the bound is stable for weights that
    span hundreds of nats. Differentiable; float32 or float64.

    Args:
        log_joint: log p(x, z_i), the k samples along ``dim``, any leading/trailing batch shape.
        log_q: log q(z_i|x), the same shape as ``log_joint``.
        k: the number of samples; ``None`` takes it from ``log_joint.shape[dim]``, otherwise it
            must equal that size (a check against passing the wrong axis).
        dim: the axis that holds the samples; it is reduced away.

    Returns:
        L_k with ``dim`` removed.

    Example::

        >>> log_w = torch.randn(10, 64, dtype=torch.float64)   # 10 data points, k = 64
        >>> iwae_bound(log_w, torch.zeros_like(log_w)).shape
        torch.Size([10])
    """
    log_joint = as_float_tensor("log_joint", log_joint)
    log_q = as_float_tensor("log_q", log_q)
    check_same_shape("log_joint", log_joint, "log_q", log_q)
    log_w = _samples_last("log_joint", log_joint, dim) - _samples_last("log_q", log_q, dim)
    n = log_w.shape[-1]
    if k is not None and int(k) != n:
        raise ValueError(f"k = {k} does not match the {n} samples along dim {dim} of log_joint")
    _check_k(n, 1, "the IWAE bound")
    _check_no_nan("log_joint - log_q", log_w)
    return torch.logsumexp(log_w, dim=-1) - math.log(n)


def jackknife_coefficients(k: int, order: int) -> list[float]:
    r"""Weights c_j (j = 0..order) of the generalised jackknife L^J = sum_j c_j mean L_{k-j}.

    c_j = (-1)^j (k - j)^order / (j! (order - j)!) (Sharot 1976, as used by Nowozin 2018, eq. 12);
    they sum to one and cancel the 1/k, ..., 1/k^order terms of the bias. Order 1 gives
    (k, -(k-1)); order 2 gives (k^2/2, -(k-1)^2, (k-2)^2/2).
    """
    return [(-1) ** j * (k - j) ** order / (math.factorial(j) * math.factorial(order - j)) for j in range(order + 1)]


def _lse_leave_one_out(a: Tensor) -> Tensor:
    """logsumexp over a[..., i != j] for every j, without subtraction: exclusive prefix and suffix sums."""
    pad = a.new_full(a.shape[:-1] + (1,), -math.inf)
    prefix = torch.cat([pad, torch.logcumsumexp(a[..., :-1], dim=-1)], dim=-1)  # LSE a[..., :j]
    suffix = torch.cat([torch.logcumsumexp(a[..., 1:].flip(-1), dim=-1).flip(-1), pad], dim=-1)  # LSE a[..., j+1:]
    return torch.logaddexp(prefix, suffix)


def _split_top(a: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised log weights a (..., k) -> (a with its largest entry set to -inf, the k-1 others of the top).

    Why: with p = exp(a) summing to one, 1 - p_j (and 1 - p_j - p_l) can only cancel when the set left
    out holds the largest weight. Every other leave-out mass is >= 1/3 and log1p(-p) is accurate, so
    only the leave-outs that contain the top need an exact logsumexp over what remains.
    """
    k = a.shape[-1]
    top = a.argmax(-1, keepdim=True)
    m = torch.arange(k - 1, device=a.device)
    # every entry but the top, (..., k-1), in float64: its leave-outs are O(k) work but enter
    # the estimate with weight ~k, so float32 rounding there would cost ~k eps.
    others = torch.gather(a, -1, m + (m >= top).long()).to(torch.float64)
    return a.scatter(-1, top, -math.inf), others


def _mean_log_leave_one_out(a: Tensor) -> Tensor:
    """mean_j log(1 - p_j) for normalised log weights a (..., k); O(k) memory."""
    no_top, others = _split_top(a)
    k = a.shape[-1]
    # j != top: log1p(-p_j) (p_j <= 1/2); j = top: log of the sum of the others, taken directly.
    # Sums accumulate in float64: the jackknife multiplies these means by up to k^2 / 2.
    total = torch.log1p(-torch.exp(no_top)).sum(-1, dtype=torch.float64) + torch.logsumexp(others, -1)
    return total / k


def _mean_log_leave_two_out(a: Tensor) -> Tensor:
    """mean over pairs j < l of log(1 - p_j - p_l); O(k^2) memory per batch element."""
    no_top, others = _split_top(a)
    k = a.shape[-1]
    neg_p = -torch.exp(no_top)  # 0 at the top
    neg_pair = neg_p.unsqueeze(-1) + neg_p.unsqueeze(-2)  # -(p_j + p_l) >= -2/3 when neither is the top
    neg_pair.diagonal(dim1=-2, dim2=-1).zero_()  # j = l is no pair; in place: this is the O(k^2) hot loop
    # Sum over ordered pairs; the top's row and column hold log1p(-p_l), which are taken back out.
    ordered = torch.log1p(neg_pair).sum(dim=(-2, -1), dtype=torch.float64) - 2.0 * torch.log1p(neg_p).sum(-1, dtype=torch.float64)
    with_top = _lse_leave_one_out(others).sum(-1, dtype=torch.float64)  # pairs (top, l): the rest summed directly
    return (0.5 * ordered + with_top) / (k * (k - 1) / 2)


def iwae_jackknife(log_w: Tensor, order: int = 1, dim: int = -1) -> Tensor:
    r"""Jackknife-corrected IWAE estimate of log p(x) from k log importance weights.

    Nowozin, "Debiasing evidence approximations: on importance-weighted autoencoders and jackknife
    variational inference", ICLR 2018. With L_k the IWAE bound on all k weights and mean L_{k-j} the
    mean of the bounds on all subsets that leave j of the weights out,

    * order 1: L^J = k L_k - (k - 1) mean_j L_{k-1}^{(-j)}, bias O(k^-2);
    * order 2: L^J = k^2/2 L_k - (k-1)^2 mean_j L_{k-1}^{(-j)} + (k-2)^2/2 mean_{j<l} L_{k-2}^{(-j,-l)},
      bias O(k^-3).

    The estimate is no longer a lower bound. It is computed as L_k + sum_j c_j (mean L_{k-j} - L_k)
    with mean L_{k-j} - L_k = mean log(1 - mass of the left-out normalised weights) + log(k/(k-j)).
    Each log(1 - mass) is taken as log1p(-mass) unless the left-out set holds the largest weight,
    in which case the remaining weights are summed directly (exclusive prefix/suffix logsumexp), so
    nothing cancels even when one weight dominates; the sums are accumulated in float64. The k^order
    coefficients then amplify only float rounding of relative size eps, and a float32 estimate is as
    accurate as the float32 L_k itself (about eps |L_k|). No Python loop over j; memory O(k)
    (order 1) or O(k^2) (order 2) per batch element. Differentiable; float32 or float64.

    Args:
        log_w: log importance weights log p(x, z_i) - log q(z_i|x), the k samples along ``dim``.
        order: 1 or 2. Needs k >= 2 (order 1) or k >= 3 (order 2).
        dim: the axis that holds the samples; it is reduced away.

    Returns:
        The jackknife estimate with ``dim`` removed.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    log_w = _samples_last("log_w", as_float_tensor("log_w", log_w), dim)
    k = log_w.shape[-1]
    _check_k(k, order + 1, f"the order-{order} jackknife")
    _check_no_nan("log_w", log_w)
    lse = torch.logsumexp(log_w, dim=-1, keepdim=True)
    a = log_w - lse  # normalised log weights, log p_i
    bound = lse.squeeze(-1) - math.log(k)
    c = jackknife_coefficients(k, order)
    # mean L_{k-1} - L_k = mean_j log(1 - p_j) + log(k / (k-1)), and likewise for pairs.
    out = bound.to(torch.float64) + c[1] * (_mean_log_leave_one_out(a) - math.log1p(-1.0 / k))
    if order == 2:
        out = out + c[2] * (_mean_log_leave_two_out(a) - math.log1p(-2.0 / k))
    return out.to(log_w.dtype)


def iwae_bias_expansion(
    k: int, renyi2: float, renyi3: float | None = None, renyi4: float | None = None
) -> float:
    r"""Predicted bias E[L_k] - log p(x) of IWAE-k from the Renyi divergences of p(z|x) from q.

    With v = p(x, z) / (q(z|x) p(x)) under q: E v^2 = exp(D_2), E v^3 = exp(2 D_3), E v^4 = exp(3 D_4)
    (D_a = D_a(p(z|x) || q)), central moments mu_2 = exp(D_2) - 1, mu_3 = exp(2 D_3) - 3 exp(D_2) + 2,
    mu_4 = exp(3 D_4) - 4 exp(2 D_3) + 6 exp(D_2) - 3. Expanding E log(mean of k weights) about
    log p(x) (Maddison et al. 2017; Nowozin 2018, Prop. 1; the 1/k^3 term from the same expansion
    with E eps^4, eps^5, eps^6 of the mean eps of k iid v - 1):

        bias = -mu_2 / (2k)
               + (mu_3 / 3 - 3 mu_2^2 / 4) / k^2
               + (-(mu_4 - 3 mu_2^2) / 4 + 2 mu_2 mu_3 - 5 mu_2^3 / 2) / k^3 + O(k^-4).

    Args:
        k: number of samples.
        renyi2: D_2(p(z|x) || q) = log E_q[(p(z|x)/q)^2] in nats; ``inf`` gives ``nan`` (the
            weights have infinite variance and the 1/k law does not hold).
        renyi3: D_3(p(z|x) || q); if given, the 1/k^2 term is added.
        renyi4: D_4(p(z|x) || q); if given (with ``renyi3``), the 1/k^3 term is added.

    Returns:
        The predicted bias (negative for the leading term: the bound lies below log p(x)).
    """
    if renyi4 is not None and renyi3 is None:
        raise ValueError("renyi4 needs renyi3: the 1/k^3 term uses both")
    if not all(math.isfinite(d) for d in (renyi2, renyi3, renyi4) if d is not None):
        return math.nan
    mu2 = math.expm1(renyi2)
    bias = -mu2 / (2 * k)
    if renyi3 is not None:
        mu3 = math.exp(2 * renyi3) - 3 * math.exp(renyi2) + 2
        bias += (mu3 / 3 - 0.75 * mu2**2) / k**2
        if renyi4 is not None:
            mu4 = math.exp(3 * renyi4) - 4 * math.exp(2 * renyi3) + 6 * math.exp(renyi2) - 3
            bias += (-(mu4 - 3 * mu2**2) / 4 + 2 * mu2 * mu3 - 2.5 * mu2**3) / k**3
    return bias
