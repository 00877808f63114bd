"""Shared test helpers: seeded fields, the one-contract call, and brute-force float64 references.

The brute-force functions are written from the definitions (docs/maths.md) with Python loops and
``math``: they share no code with the package, so a test comparing against them is independent.
Fixtures built from these live in ``tests/conftest.py``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.special import logsumexp

F64 = torch.float64
Z = 4.0  # z-score of the statistical checks: two-sided failure rate ~6e-5 per comparison


# ------------------------------------------------------------------------------------------------
# seeded inputs


def make_field(N: int, D: int, seed: int, dtype=F64, spread: float = 1.5, logvar=(-1.5, 0.5)):
    """(mu, logvar) of N posteriors: mu ~ spread * N(0, I), logvar ~ U(logvar[0], logvar[1]); float64 draws."""
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(N, D, generator=g, dtype=F64)
    lv = logvar[0] + (logvar[1] - logvar[0]) * torch.rand(N, D, generator=g, dtype=F64)
    return mu.to(dtype), lv.to(dtype)


def draw(mu, lv, seed: int):
    """One z ~ N(mu, diag exp(lv)) per row (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(mu.shape, generator=g, dtype=mu.dtype) * torch.exp(0.5 * lv)


def call(fn, name: str, z, field_mu, field_lv, index, *, dataset_size=None, k: int = 4, seed: int = 0, **kw):
    """The one contract: ``fn(z, mu[index], lv[index], N, name, field=(mu, lv), index=index, k, generator)``.

    The same arguments for every estimator (minibatch ones ignore field, index, k and the generator).
    """
    return fn(z, field_mu[index], field_lv[index], dataset_size, name, field=(field_mu, field_lv), index=index, k=k,
              generator=torch.Generator().manual_seed(seed), **kw)


def z_scores(samples, truth):
    """|mean - truth| / se of the mean, along axis 0."""
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return ((samples.mean(0) - truth) / se).abs()


# ------------------------------------------------------------------------------------------------
# brute force: Python loops in float64, weights from the definitions


def log_normal_1d(x: float, m: float, lv: float) -> float:
    return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))


def log_weighted_sum(logs, ws) -> float:
    """log sum_j w_j exp(logs_j), max subtracted; w_j = 0 terms dropped."""
    pairs = [(l + math.log(w)) for l, w in zip(logs, ws) if w > 0]
    m = max(pairs)
    return m + math.log(math.fsum(math.exp(p - m) for p in pairs))


def hand_weights(name: str, B: int, N: int, D: int):
    """(joint weights, marginal weights) of a minibatch estimator as B x B lists, from the definitions."""
    M = B - 1
    strat = (N - M) / (N * M) if M else 0.0
    const = {"naive": 1 / B, "calc_mi": 1 / B, "mws": 1 / (N * B), "tc_no_constant": 1.0}
    W = [[0.0] * B for _ in range(B)]
    for i in range(B):
        for j in range(B):
            if name in const:
                W[i][j] = const[name]
            elif name == "mss":
                W[i][j] = 1 / N if j == i else strat if j == (i + 1) % B else 1 / M
            elif name == "stratified":
                W[i][j] = 1 / N if j == i else (N - 1) / (N * M)
            elif name == "loo":
                W[i][j] = 0.0 if j == i else 1 / M
            elif name == "hfvae":  # probtorch: the own term divided by bias = (N-1)/(B-1), then the mean over B
                W[i][j] = (1 / ((N - 1) / M) if j == i else 1.0) / B
            elif name in ("mss_shipped", "mss_per_dim"):
                W[i][j] = 1 / N if j == 0 else strat if j == 1 else 1 / M
            else:
                raise KeyError(name)
    if name in ("mss_shipped", "mss_per_dim"):
        W[M - 1][0] = strat
    joint = [[w ** D for w in row] for row in W] if name == "mss_per_dim" else W
    return joint, W


def brute_minibatch(name: str, z, mu, lv, N: int):
    """log q^(z_i) and its marginals of a minibatch estimator: (B,), (B, D) float64."""
    z, mu, lv = z.tolist(), mu.tolist(), lv.tolist()
    B, D = len(z), len(z[0])
    Wj, Wd = hand_weights(name, B, N, D)
    Ld = [[[log_normal_1d(z[i][d], mu[j][d], lv[j][d]) for d in range(D)] for j in range(B)] for i in range(B)]
    joint = [log_weighted_sum([sum(Ld[i][j]) for j in range(B)], Wj[i]) for i in range(B)]
    dims = [[log_weighted_sum([Ld[i][j][d] for j in range(B)], Wd[i]) for d in range(D)] for i in range(B)]
    return torch.tensor(joint, dtype=F64), torch.tensor(dims, dtype=F64)


def brute_components(z, mu, lv, comps, log_ws):
    """For each i: log sum_m w_im q(z_i | comps[i][m]) and its marginals, (B,), (B, D) float64."""
    z, mu, lv = z.tolist(), mu.tolist(), lv.tolist()
    D = len(z[0])
    joint, dims = [], []
    for i, zi in enumerate(z):
        Ld = [[log_normal_1d(zi[d], mu[n][d], lv[n][d]) for d in range(D)] for n in comps[i]]
        ws = [math.exp(lw) for lw in log_ws[i]]
        joint.append(log_weighted_sum([sum(row) for row in Ld], ws))
        dims.append([log_weighted_sum([row[d] for row in Ld], ws) for d in range(D)])
    return torch.tensor(joint, dtype=F64), torch.tensor(dims, dtype=F64)


def brute_exact(z, mu, lv):
    """The exact log q(z_i) = log (1/N) sum_n q(z_i|n) and its marginals, by loops."""
    N = mu.shape[0]
    return brute_components(z, mu, lv, [list(range(N))] * z.shape[0], [[-math.log(N)] * N] * z.shape[0])


def iwae_components(N: int, B: int, k: int, proposal: str, index, seed: int):
    """The documented iwae draws (torch.randint of shape (B, k) from a generator seeded ``seed``), with weights."""
    g = torch.Generator().manual_seed(seed)
    if proposal == "uniform":
        return torch.randint(N, (B, k), generator=g).tolist(), [[-math.log(k)] * k] * B
    u = torch.randint(N - 1, (B, k), generator=g).tolist()
    comps = [[int(index[i])] + [v + (v >= int(index[i])) for v in u[i]] for i in range(B)]
    return comps, [[-math.log(N)] + [math.log((N - 1) / (N * k))] * k] * B


def brute_log_normal_rows(z, mu, lv):
    """log q(z_i | own row i) = sum_d log N(z_id; mu_id, var_id), by loops, (B,)."""
    z, mu, lv = z.tolist(), mu.tolist(), lv.tolist()
    return torch.tensor([math.fsum(log_normal_1d(zi[d], mi[d], li[d]) for d in range(len(zi)))
                         for zi, mi, li in zip(z, mu, lv)], dtype=F64)


def brute_log_prior(z):
    """log N(z_i; 0, I), by loops, (B,)."""
    return torch.tensor([math.fsum(log_normal_1d(x, 0.0, 0.0) for x in row) for row in z.tolist()], dtype=F64)


# ------------------------------------------------------------------------------------------------
# numpy Monte Carlo of the field quantities (no package code)


def numpy_log_normal(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """(Q, N, D) per-dimension log-densities by numpy broadcasting."""
    var = np.exp(logvar)
    return -0.5 * (np.log(2 * np.pi) + logvar[None] + (z[:, None, :] - mu[None]) ** 2 / var[None])


def numpy_field_terms(mu, logvar, samples: int, seed: int):
    """Stratified draws z_ns ~ q(z|n), S per component, and per draw (N, S arrays):
    log q(z|n), log q(z) (all N), sum_d log q(z_d), log p(z)."""
    mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    N, D = mu.shape
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((N, samples, D))
    z = (mu[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps).reshape(N * samples, D)
    own = (-0.5 * (np.log(2 * np.pi) + logvar[:, None, :] + eps ** 2)).sum(2)  # (N, S)
    log_q = np.empty(N * samples)
    log_marg = np.empty(N * samples)
    for start in range(0, N * samples, 4096):  # chunks bound the (Q, N, D) temporary
        L = numpy_log_normal(z[start:start + 4096], mu, logvar)
        log_q[start:start + 4096] = logsumexp(L.sum(2), axis=1) - np.log(N)
        log_marg[start:start + 4096] = (logsumexp(L, axis=1) - np.log(N)).sum(1)
    log_p = (-0.5 * (np.log(2 * np.pi) + z ** 2)).sum(1)
    shape = (N, samples)
    return own, log_q.reshape(shape), log_marg.reshape(shape), log_p.reshape(shape)


def stratified_mean(t: np.ndarray) -> tuple[float, float]:
    """Mean over N strata of S draws each and its standard error (within-stratum variances)."""
    N, S = t.shape
    return float(t.mean()), float(math.sqrt(t.var(1, ddof=1).sum() / S) / N)


def scipy_kl_1d(mu: np.ndarray, logvar: np.ndarray) -> float:
    """KL(q || N(0, 1)) of the equal-weight 1-D mixture by scipy.integrate.quad with breakpoints."""
    from scipy import integrate

    mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    var, sd = np.exp(logvar), np.exp(0.5 * logvar)

    def f(z):
        lq = logsumexp(-0.5 * (np.log(2 * np.pi) + logvar + (z - mu) ** 2 / var)) - np.log(len(mu))
        return math.exp(lq) * (lq + 0.5 * np.log(2 * np.pi) + 0.5 * z * z)

    points = np.sort(np.concatenate([mu + k * sd for k in (-3, -1, 0, 1, 3)]))
    with warnings.catch_warnings():  # asking for 1e-13 makes quad warn about roundoff; callers compare at 1e-8
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        value, _ = integrate.quad(f, (mu - 40 * sd).min(), (mu + 40 * sd).max(), points=points, limit=5000,
                                  epsabs=1e-15, epsrel=1e-13)
    return value


class Terminal:
    """A stand-in for stderr on a terminal (progress bars show there): collects what is written."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True
