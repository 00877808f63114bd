r"""Linear-Gaussian (factor analysis) models: exact log p(x) references for IWAE-k.

The model is z ~ N(0, I_D), x | z ~ N(W z + b, diag psi), so that

    log p(x) = log N(x; b, W W^T + diag psi),
    p(z | x) = N(m, S),  S^{-1} = I + W^T diag(1/psi) W,  m = S W^T diag(1/psi) (x - b)

(Bishop, "Pattern Recognition and Machine Learning", 2006, sec. 12.2.4). With a Gaussian encoder
q(z|x) every quantity that governs the IWAE bias has a closed form: the ELBO gap
KL(q || p(z|x)) and the Renyi divergences D_alpha(p(z|x) || q). This module holds the model and
its encoders (:class:`Gaussian`), two kinds of model (random, seeded; probabilistic PCA fitted to
scikit-learn's digits), and the small registry of log p(x) tasks used by the benchmark grid.

Everything here works in float64; estimates are cast to the requested dtype only at the estimator.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._checks import as_float_tensor, check_finite
from .iwae import iwae_bias_expansion, iwae_bound, iwae_jackknife

__all__ = [
    "Gaussian",
    "gaussian_kl",
    "gaussian_renyi",
    "LinearGaussian",
    "random_linear_gaussian",
    "fit_ppca",
    "digits_ppca",
    "diagonal_approximation",
    "mismatched_encoder",
    "LogPxTask",
    "LogPxProblem",
    "LOG_PX_TASKS",
    "LOG_PX_ESTIMATORS",
    "log_px_reference",
    "sample_log_px_estimates",
    "predicted_bias",
]

LOG_2PI = math.log(2.0 * math.pi)
F64 = torch.float64


def _vector(name: str, value, size: int | None = None) -> Tensor:
    value = as_float_tensor(name, value, ndim=1).to(F64)
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
        cov = as_float_tensor("cov", self.cov, ndim=2).to(F64)
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
        z = as_float_tensor("z", z).to(F64)
        if z.dim() == 0 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got {tuple(z.shape)}")
        diff = (z - self.mean).reshape(-1, self.dim)
        # one triangular solve with every point as a column (a batch of tiny solves is far slower)
        white = torch.linalg.solve_triangular(self.scale_tril, diff.mT, upper=False)
        maha = (white**2).sum(0).reshape(z.shape[:-1])
        return -0.5 * (maha + self.dim * LOG_2PI + self.log_det_cov())

    def sample(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> Tensor:
        """Draws of shape (*sample_shape, D), reparameterised: mean + L eps."""
        eps = torch.randn(*sample_shape, self.dim, generator=generator, dtype=F64)
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
        w = as_float_tensor("W", self.W, ndim=2).to(F64)
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
        x = as_float_tensor("x", x).to(F64)
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
        z = as_float_tensor("z", z).to(F64)
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
        precision = torch.eye(self.latent_dim, dtype=F64) + wt_psi @ self.W
        tril = _cholesky("posterior precision", precision)
        cov = torch.cholesky_inverse(tril)
        mean = torch.cholesky_solve((wt_psi @ (x - self.b)).unsqueeze(-1), tril).squeeze(-1)
        return Gaussian(mean, 0.5 * (cov + cov.mT))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of x (n, P) from the model."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=F64)
        eps = torch.randn(n, self.observed_dim, generator=generator, dtype=F64)
        return z @ self.W.mT + self.b + eps * torch.sqrt(self.psi)


def random_linear_gaussian(latent_dim: int, observed_dim: int, seed: int = 0) -> LinearGaussian:
    """A seeded random model: W, b ~ N(0, 1) entrywise, psi ~ Uniform(0.5, 1.5)."""
    if latent_dim < 1 or observed_dim < 1:
        raise ValueError(f"latent_dim and observed_dim must be >= 1, got {latent_dim} and {observed_dim}")
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(observed_dim, latent_dim, generator=g, dtype=F64)
    b = torch.randn(observed_dim, generator=g, dtype=F64)
    psi = 0.5 + torch.rand(observed_dim, generator=g, dtype=F64)
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
    data = as_float_tensor("data", data, ndim=2).to(F64)
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
        qm, r = torch.linalg.qr(torch.randn(latent_dim, latent_dim, generator=g, dtype=F64))
        w = w @ (qm * torch.sign(torch.diagonal(r)))  # Haar-random orthogonal
    return LinearGaussian(w, mean, sigma2.expand(p).clone())


@functools.lru_cache(maxsize=1)
def _digits() -> Tensor:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    return torch.as_tensor(load_digits().data, dtype=F64) / 16.0  # pixels in [0, 1]


@functools.lru_cache(maxsize=8)
def digits_ppca(latent_dim: int, rotation_seed: int = 0) -> LinearGaussian:
    """PPCA fitted to scikit-learn's digits (1797 images, 64 pixels scaled to [0, 1]); cached."""
    return fit_ppca(_digits(), latent_dim, rotation_seed)


# ---------------------------------------------------------------------------------------------
# Registry of log p(x) tasks for the benchmark grid.

LOG_PX_ESTIMATORS = ("iwae", "iwae_jackknife1", "iwae_jackknife2")
_MIN_K = {"iwae": 1, "iwae_jackknife1": 2, "iwae_jackknife2": 3}
_BLOCK_ELEMENTS = 2**21  # float64 elements per block of replicates (~16 MB per temporary)


@dataclass(frozen=True)
class LogPxProblem:
    """A built task: the model, its one fixed data point x, the exact posterior and the encoder."""

    model: LinearGaussian
    x: Tensor
    posterior: Gaussian
    encoder: Gaussian


@dataclass(frozen=True)
class LogPxTask:
    r"""A named log p(x) benchmark task: one model, one fixed x, one Gaussian encoder.

    Fields: ``model`` is "random" (``random_linear_gaussian(latent_dim, observed_dim, seed)``, x
    drawn from the model with the same seed) or "digits" (PPCA on scikit-learn's digits, x the
    first image, a zero; ``seed`` then picks the PPCA rotation); ``encoder`` is "exact",
    "diagonal" (:func:`diagonal_approximation`) or "mismatched" (:func:`mismatched_encoder` with
    ``shift`` and ``scale``). Each task has one fixed x. The heavy parts are built lazily by
    :meth:`problem` and cached.
    """

    name: str
    model: str
    latent_dim: int
    observed_dim: int
    encoder: str
    shift: float = 0.0
    scale: float = 1.0
    seed: int = 0

    def problem(self) -> LogPxProblem:
        return _build(self)


@functools.lru_cache(maxsize=64)
def _build(task: LogPxTask) -> LogPxProblem:
    if task.model == "random":
        model = random_linear_gaussian(task.latent_dim, task.observed_dim, task.seed)
        x = model.sample(1, torch.Generator().manual_seed(task.seed + 1))[0]
    elif task.model == "digits":
        model = digits_ppca(task.latent_dim, task.seed)
        x = _digits()[0]
    else:
        raise ValueError(f"task {task.name!r}: model must be 'random' or 'digits', got {task.model!r}")
    posterior = model.posterior(x)
    if task.encoder == "exact":
        encoder = posterior
    elif task.encoder == "diagonal":
        encoder = diagonal_approximation(posterior)
    elif task.encoder == "mismatched":
        encoder = mismatched_encoder(posterior, task.shift, task.scale)
    else:
        raise ValueError(f"task {task.name!r}: encoder must be exact, diagonal or mismatched, got {task.encoder!r}")
    return LogPxProblem(model, x, posterior, encoder)


def _tasks() -> dict[str, LogPxTask]:
    # D_2(p(z|x) || q) of the encoders (closed form): fa-d2 diagonal 0.050, mismatched 0.433;
    # fa-d8 diagonal inf (strong posterior correlation), mismatched 2.00; fa-digits-d4 diagonal
    # 0.119 (D_4 = inf), mismatched 0.752. Exact encoders: 0.
    models = (("fa-d2", "random", 2, 6), ("fa-d8", "random", 8, 24), ("fa-digits-d4", "digits", 4, 64))
    out = {}
    for prefix, model, d, p in models:
        for enc, shift, scale in (("exact", 0.0, 1.0), ("diagonal", 0.0, 1.0), ("mismatched", 0.5, 1.5)):
            name = f"{prefix}-{enc}"
            out[name] = LogPxTask(name, model, d, p, enc, shift, scale)
    return out


LOG_PX_TASKS: dict[str, LogPxTask] = _tasks()


def _task(task: LogPxTask | str) -> LogPxTask:
    if isinstance(task, LogPxTask):
        return task
    if task not in LOG_PX_TASKS:
        raise ValueError(f"task must be a LogPxTask or one of {', '.join(LOG_PX_TASKS)}; got {task!r}")
    return LOG_PX_TASKS[task]


def log_px_reference(task: LogPxTask | str) -> dict:
    r"""The exact reference of a task: log p(x) in closed form, with the encoder's closed-form gaps.

    Returns:
        {"value": log p(x), "se": 0.0, "method": "closed", "kl_gap": KL(q || p(z|x)) (so that
        E[L_1] = value - kl_gap), "renyi2": D_2(p(z|x) || q) (``inf`` where the integral diverges)}.
    """
    prob = _task(task).problem()
    return {
        "value": float(prob.model.log_marginal(prob.x)),
        "se": 0.0,
        "method": "closed",
        "kl_gap": gaussian_kl(prob.encoder, prob.posterior),
        "renyi2": gaussian_renyi(prob.posterior, prob.encoder, 2.0),
    }


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_estimator(estimator: str, k: int) -> None:
    if estimator not in _MIN_K:
        raise ValueError(f"estimator must be one of {', '.join(LOG_PX_ESTIMATORS)}, got {estimator!r}")
    if not _is_int(k) or k < _MIN_K[estimator]:
        raise ValueError(f"k must be an integer >= {_MIN_K[estimator]} for {estimator}, got {k!r}")


def sample_log_px_estimates(
    task: LogPxTask | str,
    estimator: str,
    k: int,
    replicates: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""Independent replicates of an estimate of log p(x) from k samples z_i ~ q(z|x) each.

    Draws (replicates, k) samples at once (in blocks of replicates bounded to ~16 MB per
    temporary; the block size depends only on k and the model, so the same generator state gives
    the same draws, i.e. common random numbers, for every estimator and dtype). The log weights are
    computed in float64 and cast to ``dtype`` before the estimator, which then runs in that dtype.

    Args:
        task: a :class:`LogPxTask` or a key of :data:`LOG_PX_TASKS`.
        estimator: "iwae" (:func:`iwae_bound`, k >= 1), "iwae_jackknife1" (k >= 2) or
            "iwae_jackknife2" (k >= 3) (:func:`iwae_jackknife`).
        k: samples per estimate. replicates: number of estimates (>= 1).
        generator: source of randomness (fixed seed for reproducibility).
        dtype: float32 or float64.

    Returns:
        (replicates,) tensor of estimates of log p(x).
    """
    prob = _task(task).problem()
    _check_estimator(estimator, k)
    if not _is_int(replicates) or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    k, replicates = int(k), int(replicates)
    # Blocks of replicates for sampling depend only on k and the model, never on the estimator,
    # so one generator state gives every estimator the same draws.
    block = max(1, _BLOCK_ELEMENTS // (k * max(prob.model.observed_dim, prob.model.latent_dim)))
    out = []
    for start in range(0, replicates, block):
        z = prob.encoder.sample((min(block, replicates - start), k), generator)
        log_w = (prob.model.log_joint(prob.x, z) - prob.encoder.log_prob(z)).to(dtype)
        if estimator == "iwae":
            out.append(iwae_bound(log_w, torch.zeros_like(log_w)))
        elif estimator == "iwae_jackknife1":
            out.append(iwae_jackknife(log_w, order=1))
        else:  # (k, k) temporaries per replicate: split the block further
            out.extend(iwae_jackknife(part, order=2) for part in log_w.split(max(1, _BLOCK_ELEMENTS // k**2)))
    return torch.cat(out)


def predicted_bias(task: LogPxTask | str, estimator: str, k: int) -> float:
    r"""Predicted bias E[estimate] - log p(x): for "iwae", -(exp(D_2(p(z|x) || q)) - 1) / (2k).

    That is the leading term of :func:`iwae_bias_expansion`; ``nan`` where D_2 is infinite (the
    weights then have infinite variance and the 1/k law fails) and for the jackknife estimators
    (their leading term depends on higher moments; no prediction is made).
    """
    _check_estimator(estimator, k)
    if estimator != "iwae":
        return math.nan
    return iwae_bias_expansion(k, log_px_reference(task)["renyi2"])
