r"""Gaussian algebra in float64: the full-covariance normal and its closed-form divergences.

Used for the encoders q(z|x) (exact, diagonal or mismatched posteriors) of the log p(x) tasks and for
the marginal of x in the linear-Gaussian models: KL(q || p) (the ELBO gap when p = p(z|x)) and the
Renyi divergences D_alpha(p || q) that govern the IWAE bias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..numerics import LOG_2PI
from ..validation import as_float_tensor, check_finite

__all__ = ["Gaussian", "gaussian_kl", "gaussian_renyi", "diagonal_approximation", "mismatched_encoder"]



def _vector(name: str, value, size: int | None = None) -> Tensor:
    value = as_float_tensor(name, value, ndim=1).to(torch.float64)
    if size is not None and value.shape[0] != size:
        raise ValueError(f"{name} must have {size} entries, got shape {tuple(value.shape)}")
    check_finite(name, value)
    return value


def _cholesky(name: str, matrix: Tensor) -> Tensor:
    """Cholesky factor, or a ValueError saying that ``name`` is not symmetric positive definite."""
    scale = float(matrix.detach().abs().max()) if matrix.numel() else 0.0
    if not torch.allclose(matrix, matrix.mT, rtol=0.0, atol=1e-10 * max(scale, 1e-300)):
        raise ValueError(f"{name} must be symmetric, got a matrix with max |A - A^T| = "
                         f"{float((matrix - matrix.mT).abs().max()):.3g}")
    tril, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0 or not bool(torch.isfinite(tril).all()):
        raise ValueError(f"{name} must be positive definite (non-singular); its Cholesky factorisation failed")
    return tril


@dataclass(frozen=True)
class Gaussian:
    r"""A multivariate normal N(mean, cov) with full covariance, in float64.

    Used for encoders q(z|x) (exact, diagonal or mismatched posteriors) and for the marginal of x.
    Construction validates: ``mean`` (D,), ``cov`` (D, D) finite, symmetric, positive definite.

    Example::

        >>> q = Gaussian(torch.zeros(2), torch.eye(2))
        >>> q.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    mean: Tensor
    cov: Tensor
    scale_tril: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mean = _vector("mean", self.mean)
        cov = as_float_tensor("cov", self.cov, ndim=2).to(torch.float64)
        if cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"cov must be ({mean.shape[0]}, {mean.shape[0]}) to match mean, got {tuple(cov.shape)}")
        check_finite("cov", cov)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "scale_tril", _cholesky("cov", cov))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def precision(self) -> Tensor:
        return torch.cholesky_inverse(self.scale_tril)

    def log_det_cov(self) -> float:
        return float(2.0 * torch.log(torch.diagonal(self.scale_tril)).sum())

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mean, cov) for z (..., D); float64 result of shape (...)."""
        z = as_float_tensor("z", z).to(torch.float64)
        if z.dim() == 0 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got {tuple(z.shape)}")
        diff = (z - self.mean).reshape(-1, self.dim)
        # one triangular solve with every point as a column (a batch of tiny solves is far slower)
        white = torch.linalg.solve_triangular(self.scale_tril, diff.mT, upper=False)
        maha = (white**2).sum(0).reshape(z.shape[:-1])
        return -0.5 * (maha + self.dim * LOG_2PI + self.log_det_cov())

    def sample(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> Tensor:
        """Draws of shape (*sample_shape, D), reparameterised: mean + L eps."""
        eps = torch.randn(*sample_shape, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + eps @ self.scale_tril.mT


def gaussian_kl(q: Gaussian, p: Gaussian) -> float:
    r"""KL(q || p) between two Gaussians, in nats (closed form).

    KL = 1/2 [tr(S_p^{-1} S_q) + (m_p - m_q)^T S_p^{-1} (m_p - m_q) - D + log det S_p - log det S_q].
    With q an encoder and p = p(z|x) this is the ELBO gap log p(x) - E[L_1].
    """
    _same_dim(q, p)
    lp = p.scale_tril
    a = torch.linalg.solve_triangular(lp, q.scale_tril, upper=False)  # tr(S_p^-1 S_q) = ||Lp^-1 Lq||_F^2
    d = torch.linalg.solve_triangular(lp, (p.mean - q.mean).unsqueeze(-1), upper=False)
    return float(0.5 * ((a**2).sum() + (d**2).sum() - q.dim + p.log_det_cov() - q.log_det_cov()))


def gaussian_renyi(p: Gaussian, q: Gaussian, alpha: float = 2.0) -> float:
    r"""Renyi divergence D_alpha(p || q) = 1/(alpha - 1) log int p^alpha q^(1 - alpha), in nats.

    Closed form for Gaussians (Gil, Alajaji and Linder, "Renyi divergence measures for commonly
    used univariate continuous distributions", Inf. Sci. 2013; the multivariate form): with
    S_a = alpha S_q + (1 - alpha) S_p and delta = m_p - m_q,

        D_alpha = alpha/2 delta^T S_a^{-1} delta
                  - [log det S_a - (1 - alpha) log det S_p - alpha log det S_q] / (2 (alpha - 1)).

    For alpha > 1 the integral diverges unless S_a is positive definite (q must not be too narrow
    relative to p; for alpha = 2, S_q > S_p / 2): then ``inf`` is returned, not an error. With
    alpha = 2, D_2(p(z|x) || q) = log E_q[(p(z|x)/q)^2] governs the large-k IWAE bias.

    Args:
        p, q: Gaussians of the same dimension.
        alpha: order, > 0 and != 1.
    """
    _same_dim(p, q)
    if not (alpha > 0 and alpha != 1 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be positive, finite and != 1, got {alpha}")
    s_a = alpha * q.cov + (1.0 - alpha) * p.cov
    tril, info = torch.linalg.cholesky_ex(s_a)
    if int(info) != 0:
        return math.inf
    d = torch.linalg.solve_triangular(tril, (p.mean - q.mean).unsqueeze(-1), upper=False)
    log_det_a = float(2.0 * torch.log(torch.diagonal(tril)).sum())
    quad = float((d**2).sum())
    log_dets = log_det_a - (1.0 - alpha) * p.log_det_cov() - alpha * q.log_det_cov()
    return 0.5 * alpha * quad - log_dets / (2.0 * (alpha - 1.0))


def _same_dim(a: Gaussian, b: Gaussian) -> None:
    if not isinstance(a, Gaussian) or not isinstance(b, Gaussian):
        raise TypeError(f"expected two Gaussian objects, got {type(a).__name__} and {type(b).__name__}")
    if a.dim != b.dim:
        raise ValueError(f"the two Gaussians must have the same dimension, got {a.dim} and {b.dim}")


def diagonal_approximation(posterior: Gaussian) -> Gaussian:
    r"""The diagonal Gaussian closest to ``posterior`` in KL(q || p): same mean, precision diag(S^{-1}).

    This is the mean-field (reverse-KL) optimum; it is narrower than the posterior's marginals, so
    D_2(p || q) is finite only when 2 S^{-1} - diag(S^{-1}) is positive definite (weak correlation).
    """
    return Gaussian(posterior.mean, torch.diag(1.0 / torch.diagonal(posterior.precision)))


def mismatched_encoder(posterior: Gaussian, shift: float = 0.0, scale: float = 1.0) -> Gaussian:
    r"""A deliberately wrong encoder N(m + shift * sd, scale * S) from the posterior N(m, S).

    Args:
        posterior: the exact posterior p(z|x).
        shift: mean offset, in posterior standard deviations sd = sqrt(diag S), added to every coordinate.
        scale: covariance inflation (> 1) or deflation (< 1). D_2(p || q) is finite iff scale > 1/2.
    """
    if not (math.isfinite(shift) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"shift must be finite and scale positive, got shift = {shift}, scale = {scale}")
    sd = torch.sqrt(torch.diagonal(posterior.cov))
    return Gaussian(posterior.mean + shift * sd, scale * posterior.cov)
