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
import operator
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from . import vae_digits
from ._checks import as_float_tensor, check_finite, check_same_shape
from .posteriors import Posteriors

__all__ = ["Scenario", "SCENARIOS", "make_scenario", "is_product_grid", "grid_levels"]

DTYPE = torch.float64

# sigma_1 (the noise at s = 1) relative to the typical nearest-neighbour spacing of the centres:
# at 1/20 of the spacing the components barely overlap and mi is within a few hundredths of log N.
SPACING_FRACTION = 0.05


@dataclass(frozen=True)
class Scenario:
    r"""A registered posterior field.

    Args:
        name: registry key, also the ``name`` of the returned :class:`Posteriors`.
        description: one line for reports.
        build: ``build(N, D, separation, seed) -> Posteriors`` (arguments already validated).
        default_N, default_D: sizes used when :func:`make_scenario` gets ``None``.
        known_tc_zero: the field is a product grid at every separation: tc = 0 exactly.
        prior_at_zero: at separation 0 every posterior equals the prior N(0, I), so mi, kl_agg,
            tc, dimwise_kl and avg_kl are all 0 exactly.
        real: posteriors of a trained model rather than a synthetic construction.
        max_N: largest N the scenario can produce (``None``: unbounded).
    """

    name: str
    description: str
    build: Callable[[int, int, float, int], Posteriors]
    default_N: int
    default_D: int
    known_tc_zero: bool = False
    prior_at_zero: bool = True
    real: bool = False
    max_N: int | None = None


def _generator(scenario: str, seed: int) -> torch.Generator:
    """A generator keyed by (scenario, seed). Not ``manual_seed(seed)`` itself: a user who samples
    z with ``manual_seed(seed)`` would otherwise draw the very normals that made the centres."""
    digest = hashlib.sha256(f"estimators.scenarios/{scenario}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _variance_preserving(c: Tensor, log_std: Tensor) -> Posteriors:
    """mu = sqrt(1 - sigma^2) c, logvar = 2 log sigma (log_std <= 0, broadcast against c)."""
    log_std = torch.as_tensor(log_std, dtype=DTYPE).expand_as(c)
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
    log_std_1 = torch.as_tensor(log_std_1, dtype=DTYPE).expand(c.shape[1])
    h = _exponent(separation, c.shape[0], -float(log_std_1.sum()))
    return _variance_preserving(c, h * log_std_1)


def _spacing(n: float, D: int) -> float:
    """Typical nearest-neighbour distance, per coordinate, of n unit-scale points in D dimensions."""
    return n ** (-1.0 / D)


# ---------------------------------------------------------------------------------------- builders

def _collapsed(N: int, D: int, separation: float, seed: int) -> Posteriors:
    c = torch.randn(N, D, generator=_generator("collapsed", seed), dtype=DTYPE)
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


def _grid(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = _generator("grid", seed)
    levels = grid_levels(N, D)
    values, min_gap = [], math.inf
    for L in levels:
        # jittered equally spaced levels, standardised to mean 0, variance 1 over the levels
        v = torch.arange(L, dtype=DTYPE) + 0.5 * (torch.rand(L, generator=g, dtype=DTYPE) - 0.5)
        if L > 1:
            v = (v - v.mean()) / v.std(unbiased=False)
            min_gap = min(min_gap, float(v.diff().min()))
        else:
            v = v * 0.0
        values.append(v)
    # row n <-> level combination by mixed radix, rows in a seeded order
    codes = torch.randperm(N, generator=g)
    c = torch.empty(N, D, dtype=DTYPE)
    for d, (L, v) in enumerate(zip(levels, values)):
        c[:, d] = v[codes % L]
        codes = codes // L
    sigma_1 = SPACING_FRACTION * (min_gap if min_gap < math.inf else 1.0)
    # noise a function of the dimension only (so the grid stays a product), varied a little
    return _scheduled(c, separation, math.log(sigma_1) - 0.5 * torch.rand(D, generator=g, dtype=DTYPE))


def _random_correlation(D: int, g: torch.Generator) -> Tensor:
    """A random correlation matrix: normalised G G^T + D/10 I (the ridge keeps it well conditioned)."""
    G = torch.randn(D, D, generator=g, dtype=DTYPE)
    S = G @ G.T + 0.1 * D * torch.eye(D, dtype=DTYPE)
    s = S.diagonal().rsqrt()
    return S * s[:, None] * s[None, :]


def _gaussian(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = _generator("gaussian", seed)
    C = _random_correlation(D, g)
    c = torch.randn(N, D, generator=g, dtype=DTYPE) @ torch.linalg.cholesky(C).T
    # the thinnest direction of the centres has std sqrt(lambda_min)
    sigma_1 = SPACING_FRACTION * _spacing(N, D) * math.sqrt(float(torch.linalg.eigvalsh(C)[0]))
    return _scheduled(c, separation, math.log(sigma_1))


N_CLUSTERS = 8
WITHIN = 0.1  # share of the centres' variance that lies within clusters


def _clustered(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = _generator("clustered", seed)
    K = min(N_CLUSTERS, N)
    centres = torch.randn(K, D, generator=g, dtype=DTYPE)
    label = torch.randperm(N, generator=g) % K  # equal cluster sizes, seeded membership
    u = torch.randn(N, D, generator=g, dtype=DTYPE)
    c = math.sqrt(1.0 - WITHIN) * centres[label] + math.sqrt(WITHIN) * u
    return _scheduled(c, separation, math.log(SPACING_FRACTION * math.sqrt(WITHIN) * _spacing(N / K, D)))


def heteroscedastic_inactive(D: int) -> int:
    """Number of inactive dimensions (the last ones) of ``heteroscedastic`` in D dimensions: round(D / 4)."""
    return (D + 2) // 4


def _heteroscedastic(N: int, D: int, separation: float, seed: int) -> Posteriors:
    g = _generator("heteroscedastic", seed)
    active = D - heteroscedastic_inactive(D)
    # logvar at s = 1: per-dimension level from -8 (most informative) to -1, plus per-point
    # jitter in (-2, 2): overall about -10..1, like the encoder of a trained VAE
    level = torch.linspace(-8.0, -1.0, active, dtype=DTYPE) if active > 1 else torch.full((1,), -8.0, dtype=DTYPE)
    jitter = 4.0 * (torch.rand(N, active, generator=g, dtype=DTYPE) - 0.5)
    c = torch.randn(N, active, generator=g, dtype=DTYPE)
    mu = torch.zeros(N, D, dtype=DTYPE)
    logvar = torch.zeros(N, D, dtype=DTYPE)
    # the mean shrinks with the dimension's typical variance (variance preserving on average)
    h = _exponent(separation, N, -0.5 * float(level.sum()))
    mu[:, :active] = torch.sqrt(-torch.expm1(h * level)) * c
    logvar[:, :active] = h * (level + jitter)
    return Posteriors(mu, logvar)


def _vae_digits(N: int, D: int, separation: float, seed: int) -> Posteriors:
    field = vae_digits.digits_posteriors(vae_digits.recipe_for(D, separation, seed))
    if N < field.N:  # deterministic subsample, kept in data order
        index = torch.randperm(field.N, generator=_generator("vae-digits", seed))[:N].sort().values
        field = field.subset(index)
    return field


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("collapsed", "centres iid N(0, I) with isotropic noise; every posterior is the prior at "
                 "separation 0", _collapsed, 2000, 6),
        Scenario("grid", "product grid of jittered means, per-dimension variance: tc = 0 exactly",
                 _grid, 2000, 6, known_tc_zero=True),
        Scenario("gaussian", "means from a randomly correlated Gaussian, shared isotropic variance: tc > 0",
                 _gaussian, 2000, 6),
        Scenario("clustered", f"means around {N_CLUSTERS} cluster centres, shared isotropic variance",
                 _clustered, 2000, 6),
        Scenario("heteroscedastic", "per-point variances over orders of magnitude (logvar about -10..1), "
                 "inactive dimensions equal to the prior", _heteroscedastic, 2000, 8),
        Scenario("vae-digits", "posteriors of a beta-VAE trained on scikit-learn's digits; separation sets "
                 "beta (4 at 0 .. 1/16 at 1), seed the training seed", _vae_digits,
                 vae_digits.DIGITS_N, 8, prior_at_zero=False, real=True, max_N=vae_digits.DIGITS_N),
    ]
}


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def make_scenario(name: str, *, N: int | None = None, D: int | None = None, separation: float = 0.5,
                  seed: int = 0) -> Posteriors:
    r"""Build the posterior field of scenario ``name``.

    Args:
        name: a key of :data:`SCENARIOS`.
        N: number of posteriors (default: the scenario's ``default_N``). ``vae-digits`` takes at
            most 1797 and subsamples deterministically (seeded by ``seed``) when N is smaller.
        D: latent dimension (default: the scenario's ``default_D``); for ``vae-digits`` the latent
            size of the trained VAE (a new D trains and caches a new model).
        separation: in [0, 1]; 0 collapsed (mi near 0), 1 well separated (mi near log N).
        seed: non-negative int; the same arguments always give the same field.

    Returns:
        A float64 :class:`Posteriors` of shape (N, D) whose ``name`` is the scenario name.

    Example::

        >>> field = make_scenario("grid", N=64, D=3, separation=0.8)
        >>> field.N, field.D, is_product_grid(field.mu, field.logvar)
        (64, 3, True)
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    N = scenario.default_N if N is None else _check_int("N", N, 1)
    D = scenario.default_D if D is None else _check_int("D", D, 1)
    if scenario.max_N is not None and N > scenario.max_N:
        raise ValueError(f"N must be <= {scenario.max_N} for scenario {name!r}, got {N}")
    if isinstance(separation, bool) or not isinstance(separation, (int, float)):
        raise TypeError(f"separation must be a float in [0, 1], got {type(separation).__name__}")
    separation = float(separation)
    if not 0.0 <= separation <= 1.0:  # also rejects NaN
        raise ValueError(f"separation must be in [0, 1], got {separation}")
    seed = _check_int("seed", seed, 0)
    field = scenario.build(N, D, separation, seed)
    return Posteriors(field.mu, field.logvar, name)


def is_product_grid(mu, logvar) -> bool:
    r"""True when the field (mu, logvar) is a product grid, so that q(z) = prod_d q(z_d) and tc = 0.

    That is: (a) in every dimension d, logvar[:, d] is a function of mu[:, d] (equal means have
    equal variances), and (b) with L_d distinct values of mu[:, d], each of the prod_d L_d
    combinations of per-dimension values occurs equally often (once, for a proper grid; a field of
    identical rows counts). Under (a) and (b), q(z) = (1/N) sum_n prod_d q(z_d|n) factorises into
    prod_d (1/L_d) sum_k N(z_d; m_dk, v_dk) = prod_d q(z_d). Values are compared exactly (no
    tolerance), so a perturbed or missing row gives False.

    Args:
        mu: (N, D) posterior means.
        logvar: (N, D) posterior log-variances.
    """
    mu = as_float_tensor("mu", mu, ndim=2)
    logvar = as_float_tensor("logvar", logvar, ndim=2)
    check_same_shape("mu", mu, "logvar", logvar)
    check_finite("mu", mu)
    check_finite("logvar", logvar)
    N, D = mu.shape
    if N == 0:
        return False
    codes = torch.zeros(N, dtype=torch.int64)
    cells = 1
    for d in range(D):
        values, inverse = torch.unique(mu[:, d], return_inverse=True)
        # (a) one logvar per distinct mean: the per-level min and max of logvar agree
        lv = logvar[:, d]
        lo = torch.full((len(values),), math.inf, dtype=lv.dtype).scatter_reduce(0, inverse, lv, "amin")
        hi = torch.full((len(values),), -math.inf, dtype=lv.dtype).scatter_reduce(0, inverse, lv, "amax")
        if not torch.equal(lo, hi):
            return False
        cells *= len(values)
        if cells > N or N % cells:
            return False
        codes = codes * len(values) + inverse
    # (b) every combination occurs N / cells times
    counts = torch.bincount(codes, minlength=cells)
    return bool((counts == N // cells).all())
