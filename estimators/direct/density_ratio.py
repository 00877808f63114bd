r"""Density-ratio TC (Kim & Mnih 2018, FactorVAE): a discriminator between q(z) and prod_d q(z_d).

A classifier D(z) trained to tell samples of q(z) (label 1) from samples of prod_d q(z_d) (label 0) with
the logistic loss has, at its optimum, logit(D(z)) = log q(z) - log prod_d q(z_d) (equal class sizes), so

    tc = E_{q(z)}[log q(z) - sum_d log q(z_d)] ~ mean of the logit on fresh samples of q(z).

Samples of q(z) are z_i ~ q(z|n_i) for n_i uniform on 1..N; samples of prod_d q(z_d) are such samples with
each dimension permuted independently across the batch (as FactorVAE does). The estimate is only as good as
the classifier: a finite budget (``steps``, ``batch_size``, ``lr``) and capacity (``width``, ``depth``)
bias it, typically downwards, and the density-ratio trick is known to fail when the divergence is large
(the classes become separable, the logistic loss saturates and the logits stop tracking the log ratio).
See docs/maths.md, "Density-ratio and moment-based estimators", and the study ``results/density_ratio.csv``.

The discriminator is an MLP (``depth`` hidden layers of ``width`` ReLU units) trained with Adam (a cosine
decay of the rate to 0; on one thread, restored after: the net is too small to gain from more); the inputs
are standardised per dimension by the field's moments (an invertible per-dimension map, which leaves tc
unchanged). Randomness comes from ``seed`` only: the weights are initialised inside
``torch.random.fork_rng`` and the samples drawn from an explicit generator, so the global RNG state is
left untouched and the same seed gives the same estimate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..validation import as_int, as_posteriors

__all__ = ["density_ratio_tc", "DensityRatioResult", "permute_dims", "DEFAULTS"]

DEFAULTS = {"steps": 300, "width": 64, "depth": 2, "batch_size": 256, "lr": 5e-3, "eval_samples": 4096}


@dataclass(frozen=True)
class DensityRatioResult:
    r"""The estimate ``tc`` (mean logit on ``eval_samples`` fresh samples of q(z)), its se over those samples
    (the evaluation noise only, not the training's), the final training loss (log 2 = chance) and the
    seconds taken (training and evaluation)."""

    tc: float
    se: float
    final_loss: float
    seconds: float
    steps: int
    width: int
    batch_size: int


def permute_dims(z: Tensor, generator: torch.Generator) -> Tensor:
    r"""Each column of ``z`` (B, D) permuted independently across the batch: samples of prod_d q(z_d) when
    the rows are samples of q(z) (Kim & Mnih 2018, Algorithm 1)."""
    B, D = z.shape
    keys = torch.rand(B, D, generator=generator, dtype=torch.float64)
    return torch.gather(z, 0, keys.argsort(0))


def _sample(mu: Tensor, sd: Tensor, count: int, g: torch.Generator) -> Tensor:
    n = torch.randint(mu.shape[0], (count,), generator=g)
    return mu[n] + sd[n] * torch.randn(count, mu.shape[1], generator=g, dtype=mu.dtype)


def _mlp(D: int, width: int, depth: int) -> nn.Module:
    layers, size = [], D
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


def density_ratio_tc(mu, logvar, *, steps: int = DEFAULTS["steps"], width: int = DEFAULTS["width"],
                     depth: int = DEFAULTS["depth"], batch_size: int = DEFAULTS["batch_size"],
                     lr: float = DEFAULTS["lr"], eval_samples: int = DEFAULTS["eval_samples"],
                     seed: int = 0) -> DensityRatioResult:
    r"""The FactorVAE density-ratio estimate of tc = KL(q(z) || prod_d q(z_d)) of a field of posteriors.

    Args:
        mu, logvar: (N, D) posteriors q(z|n) (the whole data set, or the part the estimate may see), D >= 2.
        steps: Adam steps (>= 1), each on ``batch_size`` samples of q(z) and ``batch_size`` of prod_d q(z_d).
        width, depth: the discriminator's hidden layers (depth >= 1 layers of width >= 1 ReLU units).
        batch_size: samples per class per step (>= 2: a permutation needs two rows).
        lr: Adam's learning rate (> 0).
        eval_samples: fresh samples of q(z) on which the logit is averaged (>= 2).
        seed: the one source of randomness (weights, samples, permutations).
    Returns:
        :class:`DensityRatioResult`.
    Raises:
        ValueError / TypeError: naming the argument (shapes, non-finite values, D < 2, a setting out of range).

    Example::

        >>> out = density_ratio_tc(torch.randn(500, 3), torch.full((500, 3), -1.0), steps=200)
        >>> out.tc, out.se
    """
    mu, logvar = as_posteriors(mu, logvar)
    N, D = mu.shape
    if N < 1:
        raise ValueError("mu and logvar must hold at least one posterior (N >= 1)")
    if D < 2:
        raise ValueError(f"total correlation needs at least 2 latent dimensions, got D = {D}")
    steps = as_int("steps", steps, 1)
    width = as_int("width", width, 1)
    depth = as_int("depth", depth, 1)
    batch_size = as_int("batch_size", batch_size, 2)
    eval_samples = as_int("eval_samples", eval_samples, 2)
    seed = as_int("seed", seed, 0)
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    start = time.perf_counter()
    mu = mu.detach().to(torch.float32)
    logvar = logvar.detach().to(torch.float32)
    sd = torch.exp(0.5 * logvar)
    # standardise by the moments of q(z): per-dimension affine maps leave tc unchanged
    centre = mu.mean(0)
    scale = torch.sqrt(((mu - centre) ** 2).mean(0) + (sd * sd).mean(0)).clamp_min(1e-30)
    mu_s, sd_s = (mu - centre) / scale, sd / scale
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _mlp(D, width, depth)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP gains nothing from more threads, and loses much on a shared machine
    try:
        return _train_and_evaluate(net, mu_s, sd_s, g, steps, batch_size, float(lr), eval_samples, start, width)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(net, mu_s, sd_s, g, steps, batch_size, lr, eval_samples, start, width) -> DensityRatioResult:
    r"""Adam with a cosine-decayed rate on the logistic loss, then the mean logit on fresh samples of q(z)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    # cosine decay to 0: the last iterates average out the steps' noise (a constant rate leaves it in the logits)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / steps)))
    labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    loss_fn = nn.BCEWithLogitsLoss()
    loss = torch.tensor(math.nan)
    with torch.enable_grad():
        for _ in range(steps):
            joint = _sample(mu_s, sd_s, batch_size, g)
            product = permute_dims(_sample(mu_s, sd_s, batch_size, g), g)
            logits = net(torch.cat([joint, product])).squeeze(1)
            loss = loss_fn(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            decay.step()
    with torch.no_grad():
        logit = net(_sample(mu_s, sd_s, eval_samples, g)).squeeze(1).to(torch.float64)
    return DensityRatioResult(tc=float(logit.mean()), se=float(logit.std()) / math.sqrt(eval_samples),
                              final_loss=float(loss.detach()), seconds=time.perf_counter() - start, steps=steps,
                              width=width, batch_size=batch_size)
