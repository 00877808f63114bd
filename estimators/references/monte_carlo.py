r"""The Monte Carlo reference of E_q[log q(z)]: stratified draws from the components, each evaluated exactly.

Every aggregate quantity is this one expectation plus closed forms (see :mod:`.api`): with
H(q) = -E_q[log q], mi = E[log q(z|n)] + H(q), kl_agg = -H(q) - E_q[log p] and tc = -H(q) + sum_d H(q_d).
Each draw's log q(z) is the full-N mixture density (:func:`estimators.kernels.joint_lse`; from
``PRUNE_FROM_N`` components the pruned kernel, :mod:`estimators.kernels.pruned`, exact to 1e-12), so the
only noise is the draw of z; two control variates with exactly known per-component means remove most
of it.

Two designs, one estimator:

* all N components as strata (the default, and what ``strata=N`` gives): S draws from every component,
  the standard error that of a stratified mean;
* a sub-sample of m < N components (``strata=m``), drawn without replacement, S draws each, every draw still
  evaluated against all N components: a two-stage sample. Which components were drawn now adds
  between-component variance; the known per-component means of the two controls are also stratum-level
  covariates whose mean over all N is known exactly, so a regression estimator removes most of it, and
  the se is the two-stage one with the finite-population correction (1 - m/N).

``target_se`` picks m and S from a pilot run: see :func:`neg_entropy_mc`.

Why E[log q] and not, say, E[log q - log p]: log q(z) is of the size of the components' own
log-densities, whatever the field, while log p(z) grows like |mu|^2 and var (5e12 at logvar = 30):
quantities formed as differences of such numbers lose every digit (mi as avg_kl - kl_agg did). The
control variates may be huge; they are standardised before the least-squares fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..kernels import joint_lse
from ..kernels.pruned import PrunedMixture
from ..numerics import LOG_2PI, log_standard_normal
from ..validation import as_int
from .executor import SERIAL, check_executor

__all__ = ["neg_entropy_mc", "kl_agg_mc", "MonteCarloEstimate", "evaluate_chunk", "QUERY_CHUNK", "PRUNE_FROM_N",
           "CHUNK_TERMS", "MIN_CHUNK", "MIN_STRATA", "PILOT_STRATA", "PILOT_SAMPLES", "DEFAULT_MAX_TERMS", "TARGET_MARGIN"]

QUERY_CHUNK = 2**16  # draws per kernel call: bounds the float64 feature matrices to a few MB
CHUNK_TERMS = 2**31  # ... and at most this many kernel terms (draws x N) per call: seconds each, at any N
MIN_CHUNK = 1024  # ... but at least this many draws
PRUNE_FROM_N = 8192  # from this N the mixture density is the pruned kernel's (exact to 1e-12; preparing costs ~N)
MIN_STRATA = 256  # fewest strata of a sub-sample: below it the normal approximation of the se under-covers where
# the components' E[log q | n] are heavy-tailed (measured over 300 seeds: mean z^2 1.45-1.76 at m = 64, 1.05-1.08 at 300)
PILOT_STRATA = 256  # the pilot of a target_se run: this many strata (all N when fewer) ...
PILOT_SAMPLES = 4  # ... of this many draws each
DEFAULT_MAX_TERMS = 6e10  # kernel terms (draws x N) of a target_se run: about 2 minutes on 2 cores at D = 10
TARGET_MARGIN = 1.2  # a target_se run plans for a variance this much above the pilot's estimate
_MAX_RUNS = 3  # final runs of a target_se run (a rerun only where a run's se still exceeds the target)


@dataclass(frozen=True)
class MonteCarloEstimate:
    r"""E_q[log q(z)] by Monte Carlo and what it took. Unpacks as ``(value, se)``.

    Attributes:
        value, se: the estimate and its standard error.
        strata: components drawn from (m; N for all of them). samples: draws per stratum (S).
        population: N. target_se, max_terms: the target and budget of a target_se run (else None).
        pilot: ``{"strata", "samples", "value", "se"}`` of a target_se run's pilot (else None).
        runs: final runs (more than 1 only where a run's se missed the target and it was rerun).
    """

    value: float
    se: float
    strata: int
    samples: int
    population: int
    target_se: float | None = None
    max_terms: float | None = None
    pilot: dict | None = None
    runs: int = 1

    def __iter__(self):
        return iter((self.value, self.se))

    @property
    def draws(self) -> int:
        return self.strata * self.samples

    def as_dict(self) -> dict:
        r"""What was used, JSON-serialisable: strata, samples, draws, population, target_se, max_terms, pilot, runs."""
        return {"strata": self.strata, "samples": self.samples, "draws": self.draws, "population": self.population,
                "target_se": self.target_se, "max_terms": self.max_terms, "pilot": self.pilot, "runs": self.runs}


class _DenseMixture:
    r"""log sum_n N(z; mu_n, var_n) by the dense joint kernel (below ``PRUNE_FROM_N`` components); picklable."""

    def __init__(self, mu: Tensor, logvar: Tensor):
        self.mu, self.logvar = mu, logvar

    def __call__(self, z: Tensor) -> Tensor:
        return joint_lse(z, self.mu, self.logvar)


def evaluate_chunk(z: Tensor, density) -> Tensor:
    r"""log sum_n N(z_i; mu_n, var_n) of one chunk of queries (Q, D) under a prepared mixture: the work item
    the Monte Carlo hands its executor (``executor.map(evaluate_chunk, chunks, (density,))``)."""
    with torch.no_grad():
        return density(z)


def _chunk_size(N: int) -> int:
    return QUERY_CHUNK if N * QUERY_CHUNK <= CHUNK_TERMS else max(MIN_CHUNK, CHUNK_TERMS // N)


def _log_mixture(zc: Tensor, muc: Tensor, logvar: Tensor, executor, progress) -> Tensor:
    r"""log sum_n N(zc_i; muc_n, var_n) for every draw, chunk by chunk (the same chunks whatever the executor)."""
    N, total = muc.shape[0], zc.shape[0]
    # large fields: skip the groups of components that provably contribute below 1e-12 (sharp posteriors)
    density = PrunedMixture(muc, logvar) if N >= PRUNE_FROM_N else _DenseMixture(muc, logvar)
    step = _chunk_size(N)
    chunks = [zc[start:start + step] for start in range(0, total, step)]
    out = torch.empty(total, dtype=torch.float64)
    # the first chunk here, so that the pruned kernel's probe has decided its path before the mixture is shipped
    out[:len(chunks[0])] = evaluate_chunk(chunks[0], density)
    done = len(chunks[0])
    if progress is not None:
        progress(done, total)
    batch = max(1, int(getattr(executor, "workers", 1) or 1))
    for first in range(1, len(chunks), batch):
        for values in executor.map(evaluate_chunk, chunks[first:first + batch], (density,)):
            out[done:done + len(values)] = values
            done += len(values)
        if progress is not None:
            progress(done, total)
    return out


def _known_means(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""(N, 2): E[log p(z) | n] and E[log q(z|n) | n], the controls' exact per-component means."""
    D = mu.shape[1]
    return torch.stack([-0.5 * (D * LOG_2PI + (mu * mu + torch.exp(logvar)).sum(1)),
                        -0.5 * (LOG_2PI + logvar + 1.0).sum(1)], dim=1)


def _run(mu: Tensor, logvar: Tensor, m: int, S: int, generator: torch.Generator, executor,
         progress) -> tuple[float, float, dict]:
    r"""One stratified run on m components (all N when m = N) with S draws each: (value, se, variances).

    ``variances``: ``within`` (mean within-stratum variance of one draw's residual) and ``between`` (the
    between-component variance the regression leaves, net of the draws' own noise; 0 when m = N)."""
    N, D = mu.shape
    idx = None if m == N else torch.randperm(N, generator=generator)[:m]  # without replacement
    mu_s, lv_s = (mu, logvar) if idx is None else (mu[idx], logvar[idx])
    eps = torch.randn(m, S, D, generator=generator, dtype=torch.float64)
    z = (mu_s[:, None, :] + torch.exp(0.5 * lv_s)[:, None, :] * eps).reshape(m * S, D)
    centre = mu.mean(0)  # log q is translation invariant: evaluate it on centred points
    log_q = _log_mixture(z - centre, mu - centre, logvar, executor, progress)
    t = (log_q - math.log(N)).reshape(m, S)
    log_p = log_standard_normal(z).reshape(m, S)
    log_own = -0.5 * (LOG_2PI + lv_s).sum(1)[:, None] - 0.5 * (eps * eps).sum(2)  # log q(z_ns | n)
    controls = torch.stack([log_p, log_own], dim=2)  # (m, S, 2)
    known_all = _known_means(mu, logvar)  # (N, 2)
    known = known_all if idx is None else known_all[idx]
    t_dev = (t - t.mean(1, keepdim=True)).reshape(-1).numpy()
    c_dev = (controls - controls.mean(1, keepdim=True)).reshape(-1, 2).numpy()
    dof = m * (S - 1)
    fitted = 0
    beta = np.zeros(2)
    if dof > 20:  # enough within-stratum degrees of freedom for the fit not to bias the se
        scale = np.sqrt((c_dev * c_dev).mean(0))
        scale[~(scale > 0)] = 1.0  # a constant control (e.g. S draws of one shape): nothing to fit
        coef, _, fitted, _ = np.linalg.lstsq(c_dev / scale, t_dev, rcond=None)
        beta = coef / scale
    strata = t.mean(1) - ((controls.mean(1) - known) * torch.from_numpy(beta)).sum(1)  # (m,)
    resid = torch.from_numpy(t_dev - c_dev @ beta).reshape(m, S)
    s2 = (resid * resid).sum(1) / (S - 1)
    correction = dof / (dof - fitted) if dof > fitted else 1.0
    within = float(s2.mean()) * correction
    if idx is None:  # every component a stratum: the stratified mean
        se = math.sqrt(max(float(s2.sum()) * correction / S, 0.0)) / N
        return float(strata.mean()), se, {"within": within, "between": 0.0}
    value, se, var = _regression(strata.numpy(), known.numpy(), known_all.mean(0).numpy(), within / S, N)
    return value, se, dict(var, within=within)


def _regression(y: np.ndarray, x: np.ndarray, x_mean: np.ndarray, noise: float, N: int) -> tuple[float, float, dict]:
    r"""Regression estimator of the population mean of y from m of N units without replacement.

    y (m,): the strata's estimates, each with draw noise of variance ``noise`` (mean over the strata); x (m, p):
    covariates with known population mean ``x_mean``. ybar - b . (xbar - x_mean), b by least squares; its
    variance (1 - f) s_e^2 / m + f noise / m (f = m / N), s_e^2 the residual variance on m - 1 - rank degrees
    of freedom: the first term covers the components drawn (and their draws' noise), the second the noise of
    the draws of the sampled fraction. Returns (value, se, {"between": s_e^2 net of the noise}).
    """
    m = len(y)
    xc = x - x.mean(0)
    scale = np.sqrt((xc * xc).mean(0))
    scale[~(scale > 0)] = 1.0  # a covariate constant over the sample (identical variances): nothing to fit
    coef, _, rank, _ = np.linalg.lstsq(xc / scale, y - y.mean(), rcond=None)
    b = coef / scale
    value = float(y.mean() - b @ (x.mean(0) - x_mean))
    e = y - y.mean() - xc @ b
    s_e2 = float(e @ e) / (m - 1 - rank)
    f = m / N
    se = math.sqrt(max((1.0 - f) * s_e2 / m + f * noise / m, 0.0))
    return value, se, {"between": max(s_e2 - noise, 0.0)}


def _variance(m: int, S: int, N: int, var: dict) -> float:
    r"""Predicted variance of a run of m strata x S draws from a run's variances."""
    return (1.0 - m / N) * var["between"] / m + var["within"] / (m * S)


def _allocate(N: int, var: dict, target: float) -> tuple[int, int]:
    r"""The cheapest (m, S) whose predicted variance, inflated by ``TARGET_MARGIN``, is within target^2.

    For a fixed number of draws m S the variance only grows with S, so S = 2 (the fewest that give a
    within-stratum variance) with as many strata as needed; all N strata with more draws each beyond that."""
    t2 = target * target / TARGET_MARGIN
    b, w = var["between"], var["within"]
    m = math.ceil((b + w / 2.0) / (t2 + b / N)) if (b + w) > 0 else 0
    m = max(m, min(N, MIN_STRATA))
    if m < N:
        return m, 2
    return N, max(2, math.ceil(w / (N * t2)))


def _se_within(N: int, var: dict, max_terms: float) -> float:
    r"""The smallest se a budget of ``max_terms`` kernel terms (draws x N) reaches, predicted from ``var``."""
    draws = int(max_terms // N)
    if draws >= 2 * N:
        return math.sqrt(_variance(N, draws // N, N, var))
    m = max(draws // 2, 1)
    return math.sqrt(_variance(m, 2, N, var))


def _check_strata(strata, N: int) -> int:
    if strata is None:
        return N
    m = as_int("strata", strata, 1)
    low = min(N, MIN_STRATA)
    if not low <= m <= N:
        raise ValueError(f"strata must lie in [{low}, N = {N}] (components drawn from; N: all of them), got {m}")
    return m


def check_target(target_se, max_terms) -> tuple[float | None, float]:
    r"""``(target_se, max_terms)`` as floats; ValueError naming the argument unless positive and finite."""
    out = []
    for name, value in (("target_se", target_se), ("max_terms", max_terms)):
        if value is None and name == "target_se":
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)) or float(value) <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        out.append(float(value))
    return out[0], out[1]


def neg_entropy_mc(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator, progress=None, *,
                   strata: int | None = None, target_se: float | None = None,
                   max_terms: float = DEFAULT_MAX_TERMS, executor=None) -> MonteCarloEstimate:
    r"""E_q[log q(z)] by stratified Monte Carlo with two control variates; unpacks as ``(estimate, se)``.

    S = ``samples`` draws z_ns ~ q(z|n) for each of the strata n (all N components, or m drawn without
    replacement); t_ns = log q(z_ns) over all N components. Controls c1 = log p(z) and c2 = log q(z|n) have
    exactly known means within stratum n, m1_n = -D/2 log 2pi - 1/2 sum_d (mu_nd^2 + var_nd) and
    m2_n = -1/2 sum_d (log 2pi + logvar_nd + 1), so y_n = tbar_n - beta . (cbar_n - m_n) is unbiased for
    E[t | n] for any fixed beta; beta is fitted by least squares on within-stratum deviations (an O(1/(mS))
    effect, below the se). With all N strata the estimate is mean_n y_n with the se of a stratified mean,
    sqrt(sum_n s_n^2 / S) / N, s_n^2 the within-stratum variance of the residual. With m < N strata it is the
    regression estimator ybar - b . (mbar - M) on the stratum-level covariates m_n, whose mean M over all N
    is known (b by least squares over the strata: an O(1/m) effect), with the two-stage se
    sqrt((1 - m/N) s_e^2 / m + (m/N) mean_n s_n^2 / (m S)), s_e^2 the residual variance of the regression.

    ``target_se``: a pilot run (``PILOT_STRATA`` strata, all N when fewer, of ``PILOT_SAMPLES`` draws)
    estimates the within- and between-stratum variances; the final run, on fresh draws of the same
    generator, takes the cheapest (m, S) predicted to reach the target (variance inflated by
    ``TARGET_MARGIN``; S = 2 with m < N strata, or all N with S >= 2), and is run again, planned from its own
    variances, in the rare case its se still exceeds the target. ``samples`` and ``strata`` are then ignored.

    Args:
        mu, logvar: (N, D) float64.
        samples: S >= 2. generator: the draws' source (and of which components, with m < N).
        progress: None, or a callable ``progress(done, total)`` called after each chunk of draws.
        strata: None (all N components) or m in [min(N, ``MIN_STRATA``), N].
        target_se: None, or the standard error wanted (> 0).
        max_terms: the budget of a target_se run: most kernel terms (draws x N) of its final run (the pilot's
            at most ``PILOT_STRATA`` x ``PILOT_SAMPLES`` draws come on top); default ``DEFAULT_MAX_TERMS``.
        executor: where the chunks of draws are evaluated (:mod:`.executor`); None: here, in order. The numbers
            do not depend on it.
    Raises:
        ValueError: a setting out of range, or a target_se the budget cannot reach (the message names the
            target, the se the budget reaches and the budget; raised after the pilot, before the final run).
    """
    N = mu.shape[0]
    samples = as_int("samples", samples, 2)
    m = _check_strata(strata, N)
    target_se, max_terms = check_target(target_se, max_terms)
    executor = check_executor(executor)
    if target_se is None:
        value, se, _ = _run(mu, logvar, m, samples, generator, executor, progress)
        return MonteCarloEstimate(value, se, m, samples, N)
    pilot_m = min(N, PILOT_STRATA)
    value, se, var = _run(mu, logvar, pilot_m, PILOT_SAMPLES, generator, executor, None)
    pilot = {"strata": pilot_m, "samples": PILOT_SAMPLES, "value": value, "se": se}
    for run in range(1, _MAX_RUNS + 1):
        m, S = _allocate(N, var, target_se)
        if m * S * N > max_terms:
            reach = _se_within(N, var, max_terms)
            raise ValueError(f"target_se = {target_se:g} cannot be met within max_terms = {max_terms:.3g} kernel terms "
                             f"(draws x N, N = {N}): that budget reaches se ~ {reach:.3g} (predicted from "
                             f"{'the pilot' if run == 1 else 'the previous run'}: {m} strata x {S} draws, "
                             f"{m * S * N:.3g} terms, would be needed); raise max_terms or the target")
        value, se, var = _run(mu, logvar, m, S, generator, executor, progress)
        if se <= target_se:
            break
    return MonteCarloEstimate(value, se, m, S, N, target_se, max_terms, pilot, run)


def kl_agg_mc(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator, **options) -> tuple[float, float]:
    r"""KL(q(z) || p(z)) = E_q[log q] - E_q[log p]: :func:`neg_entropy_mc` (its keyword ``options`` too) minus the
    closed-form cross-entropy; (value, se)."""
    value, se = neg_entropy_mc(mu, logvar, samples, generator, **options)
    cross = float((-0.5 * (LOG_2PI + mu * mu + torch.exp(logvar)).sum(1)).mean())
    return value - cross, se
