r"""Named, seeded, parameterised fields of encoder posteriors: the benchmark's scenarios.

Every scenario is a function ``build(N, D, separation, seed) -> Posteriors`` registered in
:data:`SCENARIOS`; :func:`make_scenario` validates the arguments and calls it. ``separation`` in
[0, 1] runs from collapsed (0: mi = I(n; z) near 0) to well separated (1: mi near log N).

How the synthetic scenarios use the knob. Each draws its shape (centres ``c_n`` of unit scale,
per-dimension or per-point noise profiles) from ``(name, seed)`` alone, then applies
``separation = s``: the posterior standard deviation is ``sigma = sigma_1 ** h(s)`` with h
increasing from 0 to 1 (chosen so that mi rises about linearly, see ``_exponent``), where
``sigma_1`` is 1/20 of the spacing of the centres, and the means are
``mu_n = sqrt(1 - sigma ** 2) * c_n`` ("variance preserving": the spread of q(z) stays about
that of the prior). So at s = 0 every posterior *is* the prior N(0, I) (mi = tc = kl_agg = 0
exactly); where the noise is the same for every point, z / sqrt(1 - sigma^2) = c_n + noise
whose level falls with s, so mi is non-decreasing in s by the data-processing inequality.
Measured mi at N = 2000, s = 0.1, 0.3, 0.5, 0.7, 0.9, 1 (log N = 7.60): collapsed 0.78, 2.3,
3.8, 5.2, 6.5, 7.60; gaussian 0.71, 2.0, 3.3, 4.5, 5.9, 7.60; heteroscedastic (D = 8) 0.76, 2.3,
3.8, 5.2, 6.6, 7.59; clustered rises more slowly (its last nats are within clusters): 0.48, 1.4,
2.2, 3.0, 4.1, 7.60.

Scenarios (defaults N = 2000, D = 6 unless stated):

* ``collapsed`` -- centres iid N(0, I), isotropic noise: q(z) -> N(0, I) as N grows, for every s.
* ``grid`` -- product grid of jittered levels, variance a function of the dimension only, so
  q(z) = prod_d q(z_d) and tc = 0 exactly (see :func:`is_product_grid`).
* ``gaussian`` -- centres from a correlated Gaussian (random correlation matrix): tc > 0.
* ``clustered`` -- centres around 8 cluster centres: mi climbs to about log 8, then to log N.
* ``heteroscedastic`` -- per-point variances over orders of magnitude (logvar about -10..1 at
  s = 1) and inactive dimensions equal to the prior, as in real VAEs (D = 8 by default).
* ``vae-digits`` -- a real field: a beta-VAE trained on scikit-learn's digits (N = 1797,
  D = 8), see :mod:`estimators.vae_digits`.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from ..posteriors import Posteriors

__all__ = ["collapsed", "grid", "gaussian", "clustered", "heteroscedastic", "grid_levels", "heteroscedastic_inactive",
           "scenario_generator"]


# sigma_1 (the noise at s = 1) relative to the typical nearest-neighbour spacing of the centres:
# at 1/20 of the spacing the components barely overlap and mi is within a few hundredths of log N.
SPACING_FRACTION = 0.05


def scenario_generator(scenario: str, seed: int) -> torch.Generator:
    """A generator keyed by (scenario, seed). Not ``manual_seed(seed)`` itself: a user who samples
    z with ``manual_seed(seed)`` would otherwise draw the very normals that made the centres."""
    digest = hashlib.sha256(f"estimators.scenarios/{scenario}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _variance_preserving(c: Tensor, log_std: Tensor) -> Posteriors:
    """mu = sqrt(1 - sigma^2) c, logvar = 2 log sigma (log_std <= 0, broadcast against c)."""
    log_std = torch.as_tensor(log_std, dtype=torch.float64).expand_as(c)
    mu = torch.sqrt(-torch.expm1(2.0 * log_std)) * c
    return Posteriors(mu, (2.0 * log_std).clone())


def _exponent(separation: float, N: int, info_1: float) -> float:
    r"""The power h(s) in sigma = sigma_1 ** h(s): 0 at s = 0, 1 at s = 1, increasing in s.

    Noise log sigma_d = h log sigma_1d carries the Gaussian-channel information
    T = -sum_d log sigma_d = h * info_1 about unit-scale centres (info_1 = -sum_d log sigma_1d).
    For N well-spread centres mi is about -log(exp(-T) + 1/N); h solves that for mi = s log N,
    bent to reach info_1 at s = 1: N exp(-T) = N^(1-s) - s + s N exp(-info_1). So mi rises about
    linearly in s (closely for ``collapsed``; more slowly for clustered or uneven centres).
    When info_1 <= log N (no separation is reachable) h = s.
    """
    if separation == 0.0:
        return 0.0  # exactly: every posterior is the prior
    log_n = math.log(N)
    if info_1 <= log_n:
        return separation
    # log of N exp(-T): a sum of non-negative terms, no cancellation
    a = math.expm1((1.0 - separation) * log_n) + (1.0 - separation)
    terms = [math.log(separation) + log_n - info_1] + ([math.log(a)] if a > 0 else [])
    top = max(terms)
    log_sum = top + math.log(sum(math.exp(t - top) for t in terms))
    return min(1.0, (log_n - log_sum) / info_1)


def _scheduled(c: Tensor, separation: float, log_std_1: Tensor) -> Posteriors:
    """The variance-preserving field of centres c with per-dimension noise sigma_1 ** h(s)."""
    log_std_1 = torch.as_tensor(log_std_1, dtype=torch.float64).expand(c.shape[1])
    h = _exponent(separation, c.shape[0], -float(log_std_1.sum()))
    return _variance_preserving(c, h * log_std_1)


def _spacing(n: float, D: int) -> float:
    """Typical nearest-neighbour distance, per coordinate, of n unit-scale points in D dimensions."""
    return n ** (-1.0 / D)


# ---------------------------------------------------------------------------------------- builders

def collapsed(N: int, D: int, separation: float, seed: int) -> Posteriors:
    c = torch.randn(N, D, generator=scenario_generator("collapsed", seed), dtype=torch.float64)
    return _scheduled(c, separation, math.log(SPACING_FRACTION * _spacing(N, D)))


def grid_levels(N: int, D: int) -> list[int]:
    r"""Levels per dimension of the ``grid`` scenario: a balanced factorisation of N into D factors.

    Prime factors are handed out largest first, each to the dimension with the fewest levels so far,
    so ``prod(grid_levels(N, D)) == N`` exactly (2000 in 6-D: [5, 5, 5, 4, 2, 2]). An N with a
    large prime factor gives one dimension that many levels (a prime N: [N, 1, ..., 1]).
    """
    primes, n, p = [], N, 2
    while p * p <= n:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    if n > 1:
        primes.append(n)
    levels = [1] * D
    for p in sorted(primes, reverse=True):
        levels[levels.index(min(levels))] *= p
    return sorted(levels, reverse=True)


def grid(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = scenario_generator("grid", seed)
    levels = grid_levels(N, D)
    values, min_gap = [], math.inf
    for L in levels:
        # jittered equally spaced levels, standardised to mean 0, variance 1 over the levels
        v = torch.arange(L, dtype=torch.float64) + 0.5 * (torch.rand(L, generator=g, dtype=torch.float64) - 0.5)
        if L > 1:
            v = (v - v.mean()) / v.std(unbiased=False)
            min_gap = min(min_gap, float(v.diff().min()))
        else:
            v = v * 0.0
        values.append(v)
    # row n <-> level combination by mixed radix, rows in a seeded order
    codes = torch.randperm(N, generator=g)
    c = torch.empty(N, D, dtype=torch.float64)
    for d, (L, v) in enumerate(zip(levels, values)):
        c[:, d] = v[codes % L]
        codes = codes // L
    sigma_1 = SPACING_FRACTION * (min_gap if min_gap < math.inf else 1.0)
    # noise a function of the dimension only (so the grid stays a product), varied a little
    return _scheduled(c, separation, math.log(sigma_1) - 0.5 * torch.rand(D, generator=g, dtype=torch.float64))


def _random_correlation(D: int, g: torch.Generator) -> Tensor:
    """A random correlation matrix: normalised G G^T + D/10 I (the ridge keeps it well conditioned)."""
    G = torch.randn(D, D, generator=g, dtype=torch.float64)
    S = G @ G.T + 0.1 * D * torch.eye(D, dtype=torch.float64)
    s = S.diagonal().rsqrt()
    return S * s[:, None] * s[None, :]


def gaussian(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = scenario_generator("gaussian", seed)
    C = _random_correlation(D, g)
    c = torch.randn(N, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(C).T
    # the thinnest direction of the centres has std sqrt(lambda_min)
    sigma_1 = SPACING_FRACTION * _spacing(N, D) * math.sqrt(float(torch.linalg.eigvalsh(C)[0]))
    return _scheduled(c, separation, math.log(sigma_1))


N_CLUSTERS = 8
WITHIN = 0.1  # share of the centres' variance that lies within clusters


def clustered(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = scenario_generator("clustered", seed)
    K = min(N_CLUSTERS, N)
    centres = torch.randn(K, D, generator=g, dtype=torch.float64)
    label = torch.randperm(N, generator=g) % K  # equal cluster sizes, seeded membership
    u = torch.randn(N, D, generator=g, dtype=torch.float64)
    c = math.sqrt(1.0 - WITHIN) * centres[label] + math.sqrt(WITHIN) * u
    return _scheduled(c, separation, math.log(SPACING_FRACTION * math.sqrt(WITHIN) * _spacing(N / K, D)))


def heteroscedastic_inactive(D: int) -> int:
    """Number of inactive dimensions (the last ones) of ``heteroscedastic`` in D dimensions: round(D / 4)."""
    return (D + 2) // 4


def heteroscedastic(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = scenario_generator("heteroscedastic", seed)
    active = D - heteroscedastic_inactive(D)
    # logvar at s = 1: per-dimension level from -8 (most informative) to -1, plus per-point
    # jitter in (-2, 2): overall about -10..1, like the encoder of a trained VAE
    level = torch.linspace(-8.0, -1.0, active, dtype=torch.float64) if active > 1 else torch.full((1,), -8.0, dtype=torch.float64)
    jitter = 4.0 * (torch.rand(N, active, generator=g, dtype=torch.float64) - 0.5)
    c = torch.randn(N, active, generator=g, dtype=torch.float64)
    mu = torch.zeros(N, D, dtype=torch.float64)
    logvar = torch.zeros(N, D, dtype=torch.float64)
    # the mean shrinks with the dimension's typical variance (variance preserving on average)
    h = _exponent(separation, N, -0.5 * float(level.sum()))
    mu[:, :active] = torch.sqrt(-torch.expm1(h * level)) * c
    logvar[:, :active] = h * (level + jitter)
    return Posteriors(mu, logvar)
