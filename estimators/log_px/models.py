r"""Linear-Gaussian (factor analysis) models: exact log p(x) references for IWAE-k.

The model is z ~ N(0, I_D), x | z ~ N(W z + b, diag psi), so that

    log p(x) = log N(x; b, W W^T + diag psi),
    p(z | x) = N(m, S),  S^{-1} = I + W^T diag(1/psi) W,  m = S W^T diag(1/psi) (x - b)

(Bishop, "Pattern Recognition and Machine Learning", 2006, sec. 12.2.4). Two kinds of model: random
(seeded) and probabilistic PCA fitted to scikit-learn's digits. Everything here is float64.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..digits import digits_images
from ..numerics import LOG_2PI
from ..validation import as_float_tensor, check_finite
from .gaussian import Gaussian, _cholesky, _vector

__all__ = ["LinearGaussian", "random_linear_gaussian", "fit_ppca", "digits_ppca"]


@dataclass(frozen=True)
class LinearGaussian:
    r"""Factor analysis: z ~ N(0, I_D), x | z ~ N(W z + b, diag psi).

    Args:
        W: loadings (P, D); b: offset (P,); psi: noise variances (P,), all positive.
    """

    W: Tensor
    b: Tensor
    psi: Tensor

    def __post_init__(self) -> None:
        w = as_float_tensor("W", self.W, ndim=2).to(torch.float64)
        check_finite("W", w)
        p, d = w.shape
        if p == 0 or d == 0:
            raise ValueError(f"W must be (P, D) with P, D >= 1, got {tuple(w.shape)}")
        b = _vector("b", self.b, p)
        psi = _vector("psi", self.psi, p)
        if bool((psi <= 0).any()):
            raise ValueError(f"psi (noise variances) must be positive, got min {float(psi.min()):.3g}")
        object.__setattr__(self, "W", w)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "psi", psi)

    @property
    def latent_dim(self) -> int:
        return int(self.W.shape[1])

    @property
    def observed_dim(self) -> int:
        return int(self.W.shape[0])

    def _x(self, x) -> Tensor:
        x = as_float_tensor("x", x).to(torch.float64)
        if x.dim() == 0 or x.shape[-1] != self.observed_dim:
            raise ValueError(f"x must have shape (..., {self.observed_dim}), got {tuple(x.shape)}")
        check_finite("x", x)
        return x

    def marginal(self) -> Gaussian:
        """p(x) = N(b, W W^T + diag psi)."""
        return Gaussian(self.b, self.W @ self.W.mT + torch.diag(self.psi))

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact log p(x) for x (..., P)."""
        return self.marginal().log_prob(self._x(x))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log N(z; 0, I) + log N(x; W z + b, diag psi); x (P,) or (..., P), z (..., D)."""
        x = self._x(x)
        z = as_float_tensor("z", z).to(torch.float64)
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (..., {self.latent_dim}), got {tuple(z.shape)}")
        log_prior = -0.5 * ((z**2).sum(-1) + self.latent_dim * LOG_2PI)
        resid = x - (z @ self.W.mT + self.b)
        log_lik = -0.5 * ((resid**2 / self.psi).sum(-1) + self.observed_dim * LOG_2PI + torch.log(self.psi).sum())
        return log_prior + log_lik

    def posterior(self, x: Tensor) -> Gaussian:
        """The exact posterior p(z|x) = N(m, S) for one x (P,)."""
        x = self._x(x)
        if x.dim() != 1:
            raise ValueError(f"posterior takes one data point x of shape ({self.observed_dim},), got {tuple(x.shape)}")
        wt_psi = self.W.mT / self.psi  # W^T diag(1/psi), (D, P)
        precision = torch.eye(self.latent_dim, dtype=torch.float64) + wt_psi @ self.W
        tril = _cholesky("posterior precision", precision)
        cov = torch.cholesky_inverse(tril)
        mean = torch.cholesky_solve((wt_psi @ (x - self.b)).unsqueeze(-1), tril).squeeze(-1)
        return Gaussian(mean, 0.5 * (cov + cov.mT))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of x (n, P) from the model."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        eps = torch.randn(n, self.observed_dim, generator=generator, dtype=torch.float64)
        return z @ self.W.mT + self.b + eps * torch.sqrt(self.psi)


def random_linear_gaussian(latent_dim: int, observed_dim: int, seed: int = 0) -> LinearGaussian:
    """A seeded random model: W, b ~ N(0, 1) entrywise, psi ~ Uniform(0.5, 1.5)."""
    if latent_dim < 1 or observed_dim < 1:
        raise ValueError(f"latent_dim and observed_dim must be >= 1, got {latent_dim} and {observed_dim}")
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(observed_dim, latent_dim, generator=g, dtype=torch.float64)
    b = torch.randn(observed_dim, generator=g, dtype=torch.float64)
    psi = 0.5 + torch.rand(observed_dim, generator=g, dtype=torch.float64)
    return LinearGaussian(w, b, psi)


def fit_ppca(data: Tensor, latent_dim: int, rotation_seed: int | None = None) -> LinearGaussian:
    r"""Maximum-likelihood probabilistic PCA, closed form (Tipping and Bishop, JRSS-B 1999).

    With the eigen-decomposition of the sample covariance (divisor n), lambda_1 >= ... >= lambda_P:
    sigma^2 = mean(lambda_{D+1..P}), W = U_D (Lambda_D - sigma^2 I)^{1/2} R, b = sample mean,
    psi = sigma^2. The likelihood does not depend on the rotation R; R = I makes W^T W (hence the
    posterior covariance) diagonal, so ``rotation_seed`` picks a random orthogonal R instead, giving
    correlated posteriors for which a diagonal encoder is an approximation.

    PPCA rather than general factor analysis: the fit is closed form and deterministic, and the
    digits have constant (always-zero) pixels on which a factor-analysis psi collapses to zero.
    """
    data = as_float_tensor("data", data, ndim=2).to(torch.float64)
    check_finite("data", data)
    n, p = data.shape
    if not 1 <= latent_dim < p:
        raise ValueError(f"latent_dim must be in [1, {p - 1}] for data with {p} columns, got {latent_dim}")
    mean = data.mean(0)
    centred = data - mean
    evals, evecs = torch.linalg.eigh(centred.mT @ centred / n)
    evals, evecs = evals.flip(0), evecs.flip(1)
    sigma2 = evals[latent_dim:].mean()
    if not bool(evals[latent_dim - 1] > sigma2) or not bool(sigma2 > 0):
        raise ValueError("data has too few non-degenerate directions for PPCA with this latent_dim")
    w = evecs[:, :latent_dim] * torch.sqrt(evals[:latent_dim] - sigma2)
    if rotation_seed is not None:
        g = torch.Generator().manual_seed(rotation_seed)
        qm, r = torch.linalg.qr(torch.randn(latent_dim, latent_dim, generator=g, dtype=torch.float64))
        w = w @ (qm * torch.sign(torch.diagonal(r)))  # Haar-random orthogonal
    return LinearGaussian(w, mean, sigma2.expand(p).clone())


@functools.lru_cache(maxsize=8)
def digits_ppca(latent_dim: int, rotation_seed: int = 0) -> LinearGaussian:
    """PPCA fitted to scikit-learn's digits (1797 images, 64 pixels scaled to [0, 1]); cached."""
    return fit_ppca(digits_images(torch.float64), latent_dim, rotation_seed)
