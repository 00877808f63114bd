r"""Shared, seeded, cached data factories and helpers of the asv suite.

Everything a benchmark measures is built here from a fixed seed, so two commits time the same
inputs. Factories are cached per process (asv runs every benchmark in a fresh fork, so a cache
only saves repeated work inside one ``setup``; references shared across benchmarks go through
``setup_cache`` instead).

Slow cases (a few seconds or GBs each) are skipped unless ``ASV_SLOW=1`` is set: their ``setup``
raises ``NotImplementedError``, which asv reports as skipped (the scipy convention).

THE naive baseline is the Q x N x D broadcast form the published code uses (e.g.
rtqichen/beta-tcvae ``vae_quant.py``): every per-dimension log-density held at once, the log
weights added, then ``torch.logsumexp``. It is generic: :func:`naive_weighted` takes any
:class:`~estimators.log_qz.LogWeights`, :func:`naive_estimator` those of any registered minibatch
estimator (``ESTIMATORS[name].weights``), and the plain mixture baselines of the kernels are the
same function with the uniform weight -log N. Its time and memory next to the kernels' is the
speed-up a report shows.

Every estimator is called through the one contract of :func:`estimators.log_aggregate_posterior`
(:func:`contract_call`): the batch's own posteriors ``field[index]``, plus ``field=`` and ``index=``.
"""
from __future__ import annotations

import functools
import math
import os

import torch

__all__ = [
    "SLOW", "THREADS", "SEED", "DATASET_SIZE", "skip_unless_slow", "configure_torch",
    "field", "queries", "minibatch", "contract_call", "naive_log_normal", "naive_weighted", "naive_estimator",
    "naive_joint", "naive_marginals",
]

SLOW = os.environ.get("ASV_SLOW", "0") not in ("", "0")
# One thread by default: on a shared 2-core machine two OpenMP threads spin against other
# processes and a call's time varies 5-10x (measured); ASV_THREADS=2 on a quiet machine.
THREADS = int(os.environ.get("ASV_THREADS", "1"))
SEED = 1234
DATASET_SIZE = 10_000  # N of the data set a minibatch is drawn from (field estimators hold all of it)
LOG_2PI = math.log(2.0 * math.pi)  # the baseline's own constant: it must not share code with the package


def skip_unless_slow(condition: bool = True, why: str = "slow case") -> None:
    """Skip the current benchmark (asv convention: NotImplementedError in setup) unless ASV_SLOW=1."""
    if condition and not SLOW:
        raise NotImplementedError(f"{why}: set ASV_SLOW=1 to run it")


def configure_torch() -> None:
    """Fixed thread count and full-precision matmuls, so timings are comparable across commits.

    Call it first in ``setup``: OMP_NUM_THREADS reaches the native kernel's own OpenMP runtime
    only if that library is not loaded yet (asv forks each benchmark from a server that never
    loads it).
    """
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)
    torch.set_float32_matmul_precision("highest")


def _dtype(name) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name] if isinstance(name, str) else name


@functools.lru_cache(maxsize=8)
def _field64(N: int, D: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g, dtype=torch.float64)
    logvar = torch.rand(N, D, generator=g, dtype=torch.float64) * 4 - 3  # sd from 0.22 to 1.6
    return mu, logvar


def field(N: int, D: int, dtype="float32", seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A field of N diagonal-Gaussian posteriors in D dimensions: mu ~ N(0, I), logvar ~ U(-3, 1).

    Returns:
        ``(mu, logvar)``, each (N, D) in ``dtype`` (the same values, rounded, for either dtype).
    """
    mu, logvar = _field64(N, D, seed)
    dt = _dtype(dtype)
    return mu.to(dt), logvar.to(dt)


def queries(Q: int, N: int, D: int, dtype="float32", seed: int = SEED):
    r"""Query points z_i ~ q(z | n_i) for the first Q components of :func:`field` (N, D), plus the field.

    Returns:
        ``(z, mu, logvar)`` with z (Q, D) and mu, logvar (N, D).
    """
    mu, logvar = field(max(N, Q), D, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    eps = torch.randn(Q, D, generator=g, dtype=torch.float64).to(mu.dtype)
    z = mu[:Q] + eps * torch.exp(0.5 * logvar[:Q])
    return z, mu[:N], logvar[:N]


def minibatch(B: int, D: int, dtype="float32", N: int = DATASET_SIZE, seed: int = SEED):
    r"""A minibatch of B distinct indices (uniform without replacement) of a field of N, and its samples.

    Returns:
        ``(z, mu_b, logvar_b, index, mu, logvar)``: z, mu_b, logvar_b (B, D) are the batch's samples and
        posteriors (what minibatch estimators take), ``index`` (B,) the batch's rows of the whole field
        ``mu, logvar`` (N, D) (what field estimators take).
    """
    mu, logvar = field(N, D, dtype, seed)
    g = torch.Generator().manual_seed(seed + 2)
    index = torch.randperm(N, generator=g)[:B]
    eps = torch.randn(B, D, generator=g, dtype=torch.float64).to(mu.dtype)
    mu_b, logvar_b = mu[index], logvar[index]
    z = mu_b + eps * torch.exp(0.5 * logvar_b)
    return z, mu_b, logvar_b, index, mu, logvar


# ---------------------------------------------------------------------------------------------
# the one contract


def contract_call(fn, estimator: str, z, field, index, *, k=None, seed: int = 0, **options):
    r"""``fn(z, mu[index], logvar[index], None, estimator, field=field, index=index, k=k, generator=...)``.

    ``fn`` is :func:`estimators.log_aggregate_posterior` or :func:`estimators.decompose`; ``field`` a
    :class:`~estimators.Posteriors` (validated once, at construction) or a pair ``(mu, logvar)``.
    Every estimator gets the same arguments (the minibatch ones ignore ``field``, ``index``, ``k`` and
    the generator; N is the field's); the generator is seeded afresh, so repeated calls draw alike.
    """
    mu, logvar = (field.mu, field.logvar) if hasattr(field, "mu") else field
    generator = torch.Generator(device=z.device).manual_seed(seed)
    return fn(z, mu[index], logvar[index], None, estimator, field=field, index=index, k=k, generator=generator,
              **options)


# ---------------------------------------------------------------------------------------------
# THE naive broadcast baseline (what the published code does)


def naive_log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The full (Q, N, D) tensor of per-dimension log-densities log N(z_id; mu_nd, var_nd)."""
    diff = z[:, None, :] - mu[None, :, :]
    return -0.5 * (LOG_2PI + logvar[None] + diff * diff * torch.exp(-logvar)[None])


def _lse_weighted(L: torch.Tensor, w) -> torch.Tensor:
    """logsumexp over axis 1 of L + w: w a (Q, N) tensor (broadcast over any trailing axis) or a float,
    which comes out of the logsumexp unchanged (LSE(x + c) = LSE(x) + c: no extra pass over L)."""
    if isinstance(w, torch.Tensor):
        return torch.logsumexp(L + w.reshape(w.shape + (1,) * (L.dim() - 2)), dim=1)
    return torch.logsumexp(L, dim=1) + float(w)


def naive_weighted(z, mu, logvar, weights, marginals: bool = True):
    r"""log sum_n W_in q(z_i | n) and every marginal through the Q x N x D broadcast.

    ``weights`` has ``joint`` and ``marginal`` (a :class:`~estimators.log_qz.LogWeights`): each a (Q, N)
    log-weight tensor or a float. The joint is the logsumexp of the sum over d plus the joint weights,
    the marginals that of the (Q, N, D) tensor plus the marginal weights.

    Returns:
        ``(log_qz (Q,), log_qz_dims (Q, D) or None)``.
    """
    L = naive_log_normal(z, mu, logvar)
    log_qz = _lse_weighted(L.sum(2), weights.joint)
    return log_qz, (_lse_weighted(L, weights.marginal) if marginals else None)


def naive_estimator(estimator: str, z, mu, logvar, dataset_size: int, marginals: bool = True):
    r"""The minibatch estimator ``estimator`` through the B x B x D broadcast, from its registered weights.

    ``mu``, ``logvar`` are the batch's own posteriors (B, D); the weights are
    ``ESTIMATORS[estimator].weights(B, N, D, dtype, device)``, so every registered minibatch estimator
    (and any added later) has its baseline with no table to keep in step.
    """
    from estimators.log_qz import ESTIMATORS

    info = ESTIMATORS[estimator]
    if info.weights is None:
        raise ValueError(f"estimator {estimator!r} has no minibatch weights (family {info.family!r}): no broadcast baseline")
    B, D = z.shape
    return naive_weighted(z, mu, logvar, info.weights(B, dataset_size, D, z.dtype, z.device), marginals)


def _uniform(N: int):
    """The log weights of the plain mixture over N components: -log N for the joint and the marginals."""
    from estimators.log_qz import LogWeights

    return LogWeights(-math.log(N), -math.log(N))


def naive_joint(z, mu, logvar) -> torch.Tensor:
    """log q(z_i) = logsumexp_n sum_d L_ind - log N by the Q x N x D broadcast."""
    return naive_weighted(z, mu, logvar, _uniform(mu.shape[0]), marginals=False)[0]


def naive_marginals(z, mu, logvar) -> torch.Tensor:
    """log q(z_id) = logsumexp_n L_ind - log N by the Q x N x D broadcast, (Q, D)."""
    return _lse_weighted(naive_log_normal(z, mu, logvar), _uniform(mu.shape[0]).marginal)
