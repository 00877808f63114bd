r"""The log p(x) benchmark tasks and their estimators, each in a registry.

A task is one linear-Gaussian model, one fixed data point x and one Gaussian encoder q(z|x); its
reference log p(x) is closed form. Three registries, so adding a case is adding an entry:

* :data:`MODELS` -- how a task's model and x are built ("random", "digits");
* :data:`ENCODERS` -- how its encoder is made from the exact posterior ("exact", "diagonal", "mismatched");
* :data:`LOG_PX_ESTIMATORS` -- estimators of log p(x) from k log weights, with their smallest k;
* :data:`LOG_PX_TASKS` -- the named tasks of the benchmark grid.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..digits import digits_images
from ..validation import as_int
from .gaussian import Gaussian, diagonal_approximation, gaussian_kl, gaussian_renyi, mismatched_encoder
from .iwae import iwae_bias_expansion, iwae_bound, iwae_jackknife
from .models import LinearGaussian, digits_ppca, random_linear_gaussian

__all__ = ["LogPxEstimator", "LOG_PX_ESTIMATORS", "MODELS", "ENCODERS", "LogPxTask", "LogPxProblem", "LOG_PX_TASKS",
           "log_px_reference", "sample_log_px_estimates", "predicted_bias"]

_BLOCK_ELEMENTS = 2**21  # float64 elements per block of replicates (~16 MB per temporary)


@dataclass(frozen=True)
class LogPxEstimator:
    r"""An estimator of log p(x) from log weights (..., k): ``estimate(log_w) -> (...)``, defined for k >= min_k.

    ``pairwise``: it holds a (k, k) temporary per estimate (blocks of replicates are split further).
    ``lower_bound``: its expectation lies below log p(x) for every k (Jensen), so its bias is <= 0.
    """

    name: str
    estimate: Callable[[Tensor], Tensor]
    min_k: int
    pairwise: bool = False
    lower_bound: bool = False


LOG_PX_ESTIMATORS: dict[str, LogPxEstimator] = {
    e.name: e for e in (
        LogPxEstimator("iwae", lambda log_w: iwae_bound(log_w, torch.zeros_like(log_w)), 1, lower_bound=True),
        # the order-j jackknife needs k >= j + 1 (Nowozin 2018)
        LogPxEstimator("iwae_jackknife1", lambda log_w: iwae_jackknife(log_w, order=1), 2),
        LogPxEstimator("iwae_jackknife2", lambda log_w: iwae_jackknife(log_w, order=2), 3, pairwise=True),
    )
}


def _random_model(task: "LogPxTask") -> tuple[LinearGaussian, Tensor]:
    """``random_linear_gaussian(latent_dim, observed_dim, seed)``, x drawn from it with seed + 1."""
    model = random_linear_gaussian(task.latent_dim, task.observed_dim, task.seed)
    return model, model.sample(1, torch.Generator().manual_seed(task.seed + 1))[0]


def _digits_model(task: "LogPxTask") -> tuple[LinearGaussian, Tensor]:
    """PPCA on scikit-learn's digits (``seed`` picks the rotation), x the first image (a zero)."""
    return digits_ppca(task.latent_dim, task.seed), digits_images(torch.float64)[0]


MODELS: dict[str, Callable] = {"random": _random_model, "digits": _digits_model}
ENCODERS: dict[str, Callable[[Gaussian, "LogPxTask"], Gaussian]] = {
    "exact": lambda posterior, task: posterior,
    "diagonal": lambda posterior, task: diagonal_approximation(posterior),
    "mismatched": lambda posterior, task: mismatched_encoder(posterior, task.shift, task.scale),
}


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

    ``model`` is a key of :data:`MODELS`, ``encoder`` a key of :data:`ENCODERS` (``shift`` and
    ``scale`` configure "mismatched"); ``seed`` seeds the model. The heavy parts are built lazily by
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
    if task.model not in MODELS:
        raise ValueError(f"task {task.name!r}: model must be one of {', '.join(MODELS)}, got {task.model!r}")
    if task.encoder not in ENCODERS:
        raise ValueError(f"task {task.name!r}: encoder must be one of {', '.join(ENCODERS)}, got {task.encoder!r}")
    model, x = MODELS[task.model](task)
    posterior = model.posterior(x)
    return LogPxProblem(model, x, posterior, ENCODERS[task.encoder](posterior, task))


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


def _estimator(estimator: str, k) -> tuple[LogPxEstimator, int]:
    if estimator not in LOG_PX_ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(LOG_PX_ESTIMATORS)}, got {estimator!r}")
    est = LOG_PX_ESTIMATORS[estimator]
    try:
        k = as_int("k", k, est.min_k)
    except (TypeError, ValueError):
        raise ValueError(f"k must be an integer >= {est.min_k} for {estimator}, got {k!r}") from None
    return est, k


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
        estimator: a key of :data:`LOG_PX_ESTIMATORS` ("iwae", k >= 1; "iwae_jackknife1", k >= 2;
            "iwae_jackknife2", k >= 3).
        k: samples per estimate. replicates: number of estimates (>= 1).
        generator: source of randomness (fixed seed for reproducibility).
        dtype: float32 or float64.

    Returns:
        (replicates,) tensor of estimates of log p(x).
    """
    prob = _task(task).problem()
    est, k = _estimator(estimator, k)
    try:
        replicates = as_int("replicates", replicates, 1)
    except (TypeError, ValueError):
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}") from None
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    # Blocks of replicates for sampling depend only on k and the model, never on the estimator,
    # so one generator state gives every estimator the same draws.
    block = max(1, _BLOCK_ELEMENTS // (k * max(prob.model.observed_dim, prob.model.latent_dim)))
    out = []
    for start in range(0, replicates, block):
        z = prob.encoder.sample((min(block, replicates - start), k), generator)
        log_w = (prob.model.log_joint(prob.x, z) - prob.encoder.log_prob(z)).to(dtype)
        parts = log_w.split(max(1, _BLOCK_ELEMENTS // k**2)) if est.pairwise else (log_w,)
        out.extend(est.estimate(part) for part in parts)
    return torch.cat(out)


def predicted_bias(task: LogPxTask | str, estimator: str, k: int) -> float:
    r"""Predicted bias E[estimate] - log p(x): for "iwae", -(exp(D_2(p(z|x) || q)) - 1) / (2k).

    That is the leading term of :func:`iwae_bias_expansion`; ``nan`` where D_2 is infinite (the
    weights then have infinite variance and the 1/k law fails) and for the jackknife estimators
    (their leading term depends on higher moments; no prediction is made).
    """
    _, k = _estimator(estimator, k)
    if estimator != "iwae":
        return math.nan
    return iwae_bias_expansion(k, log_px_reference(task)["renyi2"])
