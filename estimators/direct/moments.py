r"""Moment-based estimators and bounds: Gaussians matched to the moments of q(z) or of the encoder means.

For q(z) = (1/N) sum_n Normal(mu_n, diag var_n), the moment-matched Gaussian q_G = Normal(m, S) has the
mean and covariance of q(z) itself:

    m = mean_n mu_n,    S = mean_n diag(var_n) + Cov_n[mu_n]    (population covariance, ddof 0).

Because log q_G - log p is a quadratic in z for p = Normal(0, I), and q and q_G share the first two
moments, E_q[log q_G - log p] = E_{q_G}[log q_G - log p], so (Pythagoras for the Gaussian family)

    KL(q || p) = KL(q || q_G) + KL(q_G || p) >= KL(q_G || p)
               = 1/2 (tr S + m.m - D - log det S)                 (:func:`moment_kl`, a lower bound on kl_agg),

and the same in each dimension: KL(q(z_d) || p(z_d)) >= 1/2 (S_dd + m_d^2 - 1 - log S_dd)
(:func:`moment_dimwise_kl`, a lower bound on each dimension's KL and on their sum, dimwise_kl). Both are exact
when q is a Gaussian (one component, or identical ones). Written as an upper bound on mi (the Gaussian has
the largest entropy of a given covariance): mi = H(q) - E_n H(q(z|n)) <= 1/2 (log det S - mean_n sum_d logvar_nd)
(:func:`moment_mi_upper`), with the huge terms of avg_kl and KL(q_G || p) cancelled analytically.

Two estimates (not bounds):

* :func:`moment_tc`: the total correlation of q_G, 1/2 (sum_d log S_dd - log det S);
* :func:`gaussian_tc_of_means`: the Gaussian total correlation of the encoder means only, C = Cov_n[mu_n],
  1/2 (sum_d log C_dd - log det C) -- what disentanglement evaluation code reports as a "TC" metric
  (e.g. ``gaussian_total_correlation`` of disentanglement_lib's unsupervised metrics). It ignores the
  posterior variances, so it is neither a bound nor a consistent estimate of tc: on a product grid of means
  it is 0 as tc is, but on well-separated correlated means it can exceed tc by far (tc <= mi <= log N).

Everything is computed in float64 and returned as 0-d float64 tensors (per-dimension: (D,)), differentiable
in mu and logvar. See docs/maths.md, "Density-ratio and moment-based estimators".
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..validation import as_float_tensor, as_posteriors, check_finite

__all__ = ["moment_matched", "moment_kl", "moment_dimwise_kl", "moment_tc", "moment_mi_upper",
           "gaussian_tc_of_means", "gaussian_tc"]


def _field(mu, logvar) -> tuple[Tensor, Tensor]:
    mu, logvar = as_posteriors(mu, logvar)
    if mu.shape[0] < 1 or mu.shape[1] < 1:
        raise ValueError(f"mu and logvar must be (N, D) with N >= 1 and D >= 1, got shape {tuple(mu.shape)}")
    return mu.to(torch.float64), logvar.to(torch.float64)


def moment_matched(mu, logvar) -> tuple[Tensor, Tensor]:
    r"""The mean m (D,) and covariance S (D, D) of q(z) = (1/N) sum_n Normal(mu_n, diag exp(logvar_n)).

    S = mean_n diag(exp(logvar_n)) + Cov_n[mu_n] with the population covariance (divisor N): the exact
    second moments of the mixture of the N given posteriors (a minibatch is taken as the whole data set).
    Float64.

    Raises:
        ValueError: shapes differ, N or D is 0, or a value is not finite (naming the argument).
    """
    mu, logvar = _field(mu, logvar)
    m = mu.mean(0)
    centred = mu - m
    S = centred.T @ centred / mu.shape[0] + torch.diag(torch.exp(logvar).mean(0))
    return m, S


def _logdet(S: Tensor, what: str) -> Tensor:
    sign, logdet = torch.linalg.slogdet(S)
    if float(sign.detach()) <= 0:
        raise ValueError(f"{what} is singular or not positive definite (sign of det {float(sign):g})")
    return logdet


def moment_kl(mu, logvar) -> Tensor:
    r"""KL(q_G || N(0, I)) with q_G matched to the mean and covariance of q(z): a lower bound on kl_agg.

    1/2 (tr S + m.m - D - log det S) with (m, S) of :func:`moment_matched`; equal to kl_agg when q(z) is a
    Gaussian. Returns a 0-d float64 tensor.
    """
    m, S = moment_matched(mu, logvar)
    return 0.5 * (torch.diagonal(S).sum() + (m * m).sum() - S.shape[0] - _logdet(S, "the moment-matched covariance"))


def moment_dimwise_kl(mu, logvar, *, per_dim: bool = False) -> Tensor:
    r"""sum_d KL(Normal(m_d, S_dd) || Normal(0, 1)): a lower bound on dimwise_kl, term by term.

    Each term 1/2 (S_dd + m_d^2 - 1 - log S_dd) is a lower bound on KL(q(z_d) || p(z_d)), exact when
    q(z_d) is a Gaussian. ``per_dim``: return the (D,) terms instead of their sum.
    """
    m, S = moment_matched(mu, logvar)
    s = torch.diagonal(S)
    terms = 0.5 * (s + m * m - 1.0 - torch.log(s))
    return terms if per_dim else terms.sum()


def moment_mi_upper(mu, logvar, *, per_dim: bool = False) -> Tensor:
    r"""1/2 (log det S - mean_n sum_d logvar_nd) = avg_kl - :func:`moment_kl`: an upper bound on mi.

    The Gaussian of covariance S has the largest entropy of any distribution with that covariance, so
    H(q) <= 1/2 log det(2 pi e S), and mi = H(q) - mean_n H(q(z|n)) is at most this; formed without the
    avg_kl and KL(q_G || p) terms, which can be huge (1e12 at logvar = 30) while their difference is not.
    ``per_dim``: the (D,) one-dimensional bounds 1/2 (log S_dd - mean_n logvar_nd) on each marginal's
    mixture information instead.
    """
    mu_, logvar_ = _field(mu, logvar)
    _, S = moment_matched(mu_, logvar_)
    if per_dim:
        return 0.5 * (torch.log(torch.diagonal(S)) - logvar_.mean(0))
    return 0.5 * (_logdet(S, "the moment-matched covariance") - logvar_.sum(1).mean())


def gaussian_tc(cov) -> Tensor:
    r"""Total correlation of a Gaussian of covariance ``cov`` (D, D): 1/2 (sum_d log cov_dd - log det cov).

    Dimensions of zero variance (constants, e.g. inactive latents whose means never move) are independent
    of everything and contribute 0: they are left out. Returns a 0-d float64 tensor (>= 0 up to rounding).

    Raises:
        ValueError: ``cov`` is not square, or (on the dimensions of non-zero variance) is singular.
    """
    cov = as_float_tensor("cov", cov, ndim=2).to(torch.float64)
    if cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be square (D, D), got shape {tuple(cov.shape)}")
    check_finite("cov", cov)
    live = torch.diagonal(cov) > 0
    if not bool(live.any()):
        return cov.new_zeros(())
    c = cov[live][:, live]
    return 0.5 * (torch.log(torch.diagonal(c)).sum() - _logdet(c, "the covariance (on its non-constant dimensions)"))


def moment_tc(mu, logvar) -> Tensor:
    r"""The total correlation of the moment-matched Gaussian q_G: :func:`gaussian_tc` of S. An estimate of tc
    (neither bound: q_G's dependence is only the linear part of q's)."""
    _, S = moment_matched(mu, logvar)
    return gaussian_tc(S)


def gaussian_tc_of_means(mu) -> Tensor:
    r"""The Gaussian total correlation of the encoder means: :func:`gaussian_tc` of Cov_n[mu_n] (divisor N).

    What disentanglement evaluation code reports as a TC metric (the posterior variances are ignored). An
    estimate, not a bound: see the module docstring.

    Args:
        mu: (N, D) encoder means, N > D on the dimensions that vary (else their covariance is singular).
    Raises:
        ValueError: mu is not 2-D, holds NaN/inf, or has N <= D (the covariance of N points in D dimensions
            has rank at most N - 1).
    """
    mu = as_float_tensor("mu", mu, ndim=2)
    check_finite("mu", mu)
    N, D = mu.shape
    if N <= D:
        raise ValueError(f"mu must hold more points than dimensions for a Gaussian TC of the means (N > D), "
                         f"got N = {N}, D = {D}")
    mu = mu.to(torch.float64)
    centred = mu - mu.mean(0)
    return gaussian_tc(centred.T @ centred / N)
