r"""Sampled estimates of the MIG: the beta-TCVAE authors' evaluation code (a replica) and a paired estimator.

Both estimate each entropy from z drawn from the posteriors, with log q(z_j) (or log q(z_j | v_k = v)) evaluated
*exactly* at each draw -- a log-sum over every component of the (sub-)population, streamed by the per-dimension
kernel (:func:`estimators.kernels.marginal_lse`; never an n_samples x N tensor beyond one block) -- so the
entropies and I(z_j; v_k) = H(z_j) - sum_v p(v) H(z_j | v_k = v) are unbiased; the MIG is not (a top-two gap of
noisy values, and in the replica a clamp at 0).

* :func:`mig_beta_tcvae` -- a replica of ``mutual_info_metric_shapes`` / ``estimate_entropies`` /
  ``compute_metric_shapes`` of github.com/rtqichen/beta-tcvae (``disentanglement_metrics.py``,
  ``metric_helpers/mi_metric.py``; Chen et al. 2018): one z per data point; each entropy (the marginal, and the
  conditional for each value of each factor) from its own random subset of ``n_samples`` of the (sub-)population's
  draws; conditionals averaged with weights 1/|V_k|; the I's sorted, clamped at 0, divided by log |V_k|; top-1 minus
  top-2, averaged over the factors. On dSprites the published metric averages over scale, orientation, pos_x and
  pos_y (shape is left out: ``factor_entropies = [6, 40, 32, 32]``), with n_samples = 10,000 per entropy.
* :func:`mig_sampled` -- the same definition estimated as the MIG defines it: one uniform subset of n_samples
  points and one draw each, paired per draw, I_jk = mean_s [log q(z_sj | v_k(n_s)) - log q(z_sj)] (with a standard
  error from the per-draw spread), the conditional weights and H(v_k) of the empirical factor distribution (equal
  to 1/|V_k| and log |V_k| on a full grid), and no clamp (each I stays unbiased; clamping a noisy estimate of a
  value near 0 biases it up). Cost: n_samples (N + sum_k N_{v_k(n)}) terms per latent (about 1.6 n_samples N on
  dSprites with its five factors) against the replica's n_samples (1 + K) N (5 n_samples N with its four).

Published steps the replica keeps that differ from the definition: the clamp (the definition's I are >= 0, so
the clamp changes the estimate only); 1/|V_k| weights and log |V_k| (wrong for a factor that is not uniform);
a subset per entropy (unbiased, but where the subsets are small parts of their populations, as on dSprites, I
gets the variance of a difference of two nearly independent estimates of ~H each, not that of I; where a
population is smaller than n_samples its conditional uses all its draws, shared with the marginal's). Its entropy estimates are unbiased: each subset point is uniform over the population and its
draw is from its own posterior, so E[-log q(z_j)] = H(z_j).
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..kernels import marginal_lse
from ..validation import as_int
from .exact import mig_from_information
from .factors import FactorField, check_factors, select_factors

__all__ = ["mig_beta_tcvae", "mig_sampled", "log_marginal_density", "QUERY_CHUNK"]

QUERY_CHUNK = 4096  # draws per kernel call (the kernel streams the components in blocks of bounded memory)
_DTYPES = (torch.float32, torch.float64)


def log_marginal_density(z: Tensor, mu: Tensor, logvar: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""log q(z_sj) = log (1/n) sum_i N(z_sj; mu_ij, exp(logvar_ij)) for every draw s and dimension j, (S, D) float64.

    The per-dimension mixture log-sums over all n components, streamed (:func:`estimators.kernels.marginal_lse`,
    computed in ``dtype``: the direct (z - mu)^2 form is accurate in float32), in chunks of QUERY_CHUNK draws.
    S x n x D one-dimensional terms in all.
    """
    n = mu.shape[0]
    m, lv = mu.to(dtype), logvar.to(dtype)
    out = torch.empty(z.shape, dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, z.shape[0], QUERY_CHUNK):
            out[s:s + QUERY_CHUNK] = marginal_lse(z[s:s + QUERY_CHUNK].to(dtype), m, lv).to(torch.float64)
    return out - math.log(n)


def _common(mu, logvar, factors, factor_names, factor_sizes, factors_in_mig, n_samples, generator, dtype):
    field = factors if isinstance(factors, FactorField) else check_factors(
        mu, logvar, factors, factor_names=factor_names, factor_sizes=factor_sizes)
    index = select_factors(field, factors_in_mig)
    try:
        n_samples = as_int("n_samples", n_samples, minimum=1)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return field, index, n_samples


def _result(field: FactorField, index, H, H_se, cond, mi, extra: dict, n_samples, terms, start) -> dict:
    out = {"factor_names": [field.names[k] for k in index], "entropy": H, "entropy_se": H_se,
           "conditional_entropy": cond, "mi": mi}
    out.update(extra)
    out.update(n_samples=n_samples, terms=terms, seconds=time.perf_counter() - start)
    return out


def mig_beta_tcvae(mu, logvar, factors, *, n_samples: int = 10_000, factor_names=None, factor_sizes=None,
                   factors_in_mig=None, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> dict:
    r"""Replica of the beta-TCVAE authors' MIG (Chen et al. 2018; github.com/rtqichen/beta-tcvae), bugs included.

    The published steps (``disentanglement_metrics.py``: ``mutual_info_metric_shapes``, ``estimate_entropies``;
    ``metric_helpers/mi_metric.py``: ``compute_metric_shapes``), for any factors:

    1. one draw z_n ~ q(z|n) for every data point: ``eps = torch.randn((N, D), generator=generator)``;
    2. H(z_j) = mean over a random subset (``torch.randperm(N, generator=generator)[:n_samples]``) of the draws of
       log N - logsumexp_n log q(z_j|n), over all N components;
    3. for each factor k in ``factors_in_mig`` (in that order) and each value v = 0 .. |V_k| - 1: the same on the
       population {n : v_k(n) = v} (rows ascending; its own ``torch.randperm`` subset of its draws), and
       H(z_j | v_k) = sum_v H(z_j | v_k = v) / |V_k|;
    4. I = H(z_j) - H(z_j | v_k), sorted descending over j, clamped at 0, divided by log |V_k|; MIG = the mean over
       the factors of top-1 minus top-2.

    The published dSprites metric is ``factors_in_mig=("scale", "orientation", "pos_x", "pos_y")`` (shape left out)
    with n_samples = 10,000. The steps assume a full factor grid: a value that never occurs is an error.

    Args:
        mu, logvar: (N, D) posteriors; factors: (N, K) integer factor values (see
            :func:`estimators.mig.factors.check_factors` for these and factor_names, factor_sizes), or a
            :class:`estimators.mig.factors.FactorField` already checked (then the others are not read).
        n_samples: draws per entropy (a (sub-)population smaller than that uses all its draws).
        factors_in_mig: names or indices of the factors entering (default all); only their conditionals are
            estimated.
        generator: the torch.Generator of every draw (None: torch's global generator).
        dtype: precision of the kernel's log-sums (the published code ran in float32).

    Returns:
        dict: ``factor_names`` (those in the MIG), ``entropy`` (D,) and ``entropy_se``, ``conditional_entropy``
        (D, K') and ``conditional_entropy_se``, ``mi`` (D, K') before the clamp, ``normalized_gap`` (K') and
        ``top_latent`` (K'), ``mig``, ``n_samples``, ``terms`` (1-D kernel terms evaluated), ``seconds``.
    """
    start = time.perf_counter()
    field, index, n_samples = _common(mu, logvar, factors, factor_names, factor_sizes, factors_in_mig, n_samples,
                                      generator, dtype)
    mu, logvar = field.mu, field.logvar
    N, D = mu.shape
    z = mu + torch.randn((N, D), generator=generator, dtype=torch.float64) * torch.exp(0.5 * logvar)
    terms = 0

    def estimate(rows: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal terms
        take = rows[torch.randperm(len(rows), generator=generator)[:n_samples]]
        log_q = log_marginal_density(z[take], mu[rows], logvar[rows], dtype)
        terms += len(take) * len(rows) * D
        se = log_q.std(0) / math.sqrt(len(take)) if len(take) > 1 else torch.full((D,), math.nan)
        return -log_q.mean(0), se

    H, H_se = estimate(torch.arange(N))
    cond = torch.zeros(D, len(index), dtype=torch.float64)
    cond_var = torch.zeros(D, len(index), dtype=torch.float64)
    for c, k in enumerate(index):
        size = field.sizes[k]
        for v in range(size):
            rows = field.populations[k][v]
            if len(rows) == 0:
                raise ValueError(f"factors: value {v} of factor {field.names[k]!r} never occurs; the published "
                                 f"steps assume a full factor grid (use mig_sampled)")
            h, se = estimate(rows)
            cond[:, c] += h / size
            cond_var[:, c] += (se / size) ** 2
    mi = H[:, None] - cond
    log_sizes = torch.tensor([math.log(field.sizes[k]) for k in index], dtype=torch.float64)
    ranked = torch.sort(mi, dim=0, descending=True).values.clamp(min=0) / log_sizes[None]
    gap = ranked[0] - ranked[1]
    extra = {"conditional_entropy_se": cond_var.sqrt(), "normalized_gap": gap,
             "top_latent": torch.argmax(mi, 0).tolist(), "mig": float(gap.mean())}
    return _result(field, index, H, H_se, cond, mi, extra, n_samples, terms, start)


def mig_sampled(mu, logvar, factors, *, n_samples: int = 10_000, factor_names=None, factor_sizes=None,
                factors_in_mig=None, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float64) -> dict:
    r"""The MIG from n_samples paired draws: unbiased I(z_j; v_k) for every latent and factor, no clamp.

    Draws (in this order from ``generator``): a uniform subset ``torch.randperm(N)[:n_samples]`` of the points,
    then ``eps = torch.randn((S, D))``, z_s = mu_{n_s} + sigma_{n_s} eps_s. Each draw gives log q(z_sj) over all N
    components and, for every factor k, log q(z_sj | v_k = v_k(n_s)) over the population of its own value, so

        I_jk ~ mean_s [log q(z_sj | v_k(n_s)) - log q(z_sj)],   se = sd_s / sqrt(S),

    an unbiased estimate (E over the point and its draw: -H(z_j | v_k) + H(z_j)), with the empirical p(v) weights
    implied by the uniform subset. gap_k = I_(1)k - I_(2)k over j, divided by H(v_k) (the empirical entropy);
    MIG = the mean over ``factors_in_mig``. Only the top-two selection biases it (E max >= max E).

    Args: as :func:`mig_beta_tcvae` (n_samples: the number of paired draws, at most N).

    Returns:
        dict: ``factor_names`` (those in the MIG), ``entropy`` (D,) H(z_j) and ``entropy_se``,
        ``conditional_entropy`` (D, K') sum_v p(v) H(z_j | v_k = v), ``mi`` (D, K') and ``mi_se``, the parts of
        :func:`estimators.mig.exact.mig_from_information` (``normalized_gap``, ``top_latent``, ``mig``, ...),
        ``n_samples``, ``terms``, ``seconds``.
    """
    start = time.perf_counter()
    field, index, n_samples = _common(mu, logvar, factors, factor_names, factor_sizes, factors_in_mig, n_samples,
                                      generator, dtype)
    mu, logvar = field.mu, field.logvar
    N, D = mu.shape
    rows = torch.randperm(N, generator=generator)[:n_samples]
    S = len(rows)
    z = mu[rows] + torch.randn((S, D), generator=generator, dtype=torch.float64) * torch.exp(0.5 * logvar[rows])
    log_q = log_marginal_density(z, mu, logvar, dtype)
    terms = S * N * D
    cond = torch.empty(D, len(index), dtype=torch.float64)
    mi = torch.empty(D, len(index), dtype=torch.float64)
    mi_se = torch.empty(D, len(index), dtype=torch.float64)
    for c, k in enumerate(index):
        values = field.factors[rows, k]
        log_c = torch.empty(S, D, dtype=torch.float64)
        for v in torch.unique(values).tolist():
            sel = values == v
            pop = field.populations[k][v]
            log_c[sel] = log_marginal_density(z[sel], mu[pop], logvar[pop], dtype)
            terms += int(sel.sum()) * len(pop) * D
        diff = log_c - log_q
        cond[:, c] = -log_c.mean(0)
        mi[:, c] = diff.mean(0)
        mi_se[:, c] = diff.std(0) / math.sqrt(S) if S > 1 else math.nan
    se = log_q.std(0) / math.sqrt(S) if S > 1 else torch.full((D,), math.nan)
    parts = mig_from_information(mi, torch.zeros_like(mi), [field.entropies[k] for k in index],
                                 tuple(range(len(index))))
    extra = {"mi_se": mi_se, "normalized_gap": torch.tensor(parts["normalized_gap"], dtype=torch.float64),
             "top_latent": parts["top_latent"], "mig": parts["mig"]}
    return _result(field, index, -log_q.mean(0), se, cond, mi, extra, n_samples, terms, start)
