"""Shared cases of the kernel tests: seeded fields and an independent brute-force float64 loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

PATHS = [pytest.param(True, id="native"), pytest.param(False, id="torch")]
DTYPES = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]


def brute_force(z, mu, logvar, log_weights=None, log_weight_matrix=None):
    """log sum_n w_n N(z; mu_n, var_n), joint (Q,) and per dimension (Q, D), by a loop over n.

    numpy float64, one component at a time with np.logaddexp; ``log_weights`` (N,) and
    ``log_weight_matrix`` (Q, N) are added to every term (-inf allowed).
    """
    z, mu, logvar = (np.asarray(torch.as_tensor(t).detach(), dtype=np.float64) for t in (z, mu, logvar))
    Q, N = len(z), len(mu)
    lw = np.zeros(N) if log_weights is None else np.asarray(torch.as_tensor(log_weights), dtype=np.float64)
    W = np.zeros((Q, N)) if log_weight_matrix is None else np.asarray(torch.as_tensor(log_weight_matrix),
                                                                        dtype=np.float64)
    joint = np.full(Q, -np.inf)
    dims = np.full(z.shape, -np.inf)
    with np.errstate(invalid="ignore"):  # -inf + -inf terms
        for n in range(N):
            per_dim = -0.5 * (math.log(2 * math.pi) + logvar[n] + (z - mu[n]) ** 2 / np.exp(logvar[n]))
            w = lw[n] + W[:, n]
            joint = np.logaddexp(joint, per_dim.sum(1) + w)
            dims = np.logaddexp(dims, per_dim + w[:, None])
    return joint, dims


def field(N, D, Q, seed, logvar_range=(-3.0, 1.0), spread=2.0, dtype=torch.float64):
    """N components (mu ~ spread * N(0, I), logvar ~ U(range)) and Q points drawn from them."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g, dtype=torch.float64) * spread
    lo, hi = logvar_range
    logvar = lo + (hi - lo) * torch.rand(N, D, generator=g, dtype=torch.float64)
    idx = torch.randint(N, (Q,), generator=g)
    z = mu[idx] + torch.randn(Q, D, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar[idx])
    return z.to(dtype), mu.to(dtype), logvar.to(dtype)


def weight_matrix(Q, N, seed, dtype=torch.float64):
    """A (Q, N) log-weight matrix with -inf entries (zero weights): the diagonal and a strided pattern."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(Q, N, generator=g, dtype=torch.float64) * 2 - 3
    k = min(Q, N)
    W[torch.arange(k), torch.arange(k)] = -math.inf  # as leave-one-out uses
    W[::3, 1::4] = -math.inf
    return W.to(dtype)


def tolerance(want, dtype):
    """Absolute tolerance: 1e-10 in float64; in float32 about 1e-5 relative to the value, at least 1e-4."""
    if dtype == torch.float64:
        return 1e-10 * np.maximum(1.0, np.abs(want))
    return np.maximum(1e-4, 1e-5 * np.abs(want))


def assert_close(got, want, dtype):
    got = got.detach().double().numpy()
    assert np.all(np.isfinite(got)), "non-finite output"
    err = np.abs(got - want)
    tol = tolerance(want, dtype)
    assert np.all(err <= tol), f"max error {err.max():.3g} (where tol {tol.flat[err.argmax()]:.3g})"
