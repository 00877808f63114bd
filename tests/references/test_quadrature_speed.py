"""The split evaluation of log q in 1-D quadrature (broad components interpolated, narrow ones pruned) agrees
with the dense evaluation over all components. Timing-independent: only values are checked."""
import math

import numpy as np
import pytest
import torch

import estimators.references.quadrature as Q


def _field(seed: int, n: int, clusters: int):
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(clusters, generator=g, dtype=torch.float64)
    which = torch.randint(clusters, (n,), generator=g)
    mu = centres[which] + torch.randn(n, generator=g, dtype=torch.float64)
    logvar = torch.rand(n, generator=g, dtype=torch.float64) * 30.0 - 20.0
    lw = torch.full((n,), -math.log(n), dtype=torch.float64)
    return mu[:, None], logvar[:, None], lw


@pytest.mark.parametrize("seed,n,clusters", [(0, 100, 1), (1, 2000, 2), (2, 10000, 3), (3, 10000, 1), (4, 2000, 3)])
def test_split_log_density_matches_dense(seed, n, clusters):
    mu, logvar, lw = _field(seed, n, clusters)
    mu = mu - mu.mean(0)
    sd = torch.exp(0.5 * logvar[:, 0])
    lo, hi = float((mu[:, 0] - Q.TAIL * sd).min()), float((mu[:, 0] + Q.TAIL * sd).max())
    split = Q._SplitLogDensity.build(mu, logvar, lw, lo, hi)
    g = torch.Generator().manual_seed(100 + seed)
    near = mu[:, 0] + sd * torch.randn(n, generator=g, dtype=torch.float64) * 3.0  # around every component
    z = torch.cat([near, lo + (hi - lo) * torch.rand(20000, generator=g, dtype=torch.float64),
                   4.0 * torch.randn(20000, generator=g, dtype=torch.float64)])
    fast, dense = split(z), Q._dense_log_q(z, mu, logvar, lw)
    assert torch.isfinite(dense).all()
    # relative error in q: |exp(fast - dense) - 1|
    assert float(((fast - dense).abs() / (1.0 + dense.abs())).max()) <= 1e-13


@pytest.mark.parametrize("seed,n,clusters", [(5, 5000, 1), (6, 6000, 2), (7, 8000, 3)])
def test_neg_entropy_split_matches_dense(seed, n, clusters, monkeypatch):
    mu, logvar, lw = _field(seed, n, clusters)
    fast = Q.neg_entropy(mu, logvar, lw)
    monkeypatch.setattr(Q, "SPLIT_MIN_COMPONENTS", 10**12)
    dense = Q.neg_entropy(mu, logvar, lw)
    assert abs(fast[0] - dense[0]) <= 1e-11 * abs(dense[0])


def test_split_path_matches_scipy_quad_on_small_field(monkeypatch):
    integrate = pytest.importorskip("scipy.integrate")
    from scipy.special import logsumexp
    mu, logvar, lw = _field(9, 40, 2)
    monkeypatch.setattr(Q, "SPLIT_MIN_COMPONENTS", 0)  # force the split path
    value, _ = Q.neg_entropy(mu, logvar, lw)
    m, s = (mu[:, 0] - mu[:, 0].mean()).numpy(), np.exp(0.5 * logvar[:, 0].numpy())

    def f(z):
        lq = logsumexp(-0.5 * ((z - m) / s) ** 2 - np.log(s) - 0.5 * math.log(2 * math.pi)) - math.log(len(m))
        return math.exp(lq) * lq

    edges = Q.resolved_partition(m, s)
    ref = sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))
    assert abs(value - ref) <= 1e-11 * abs(ref)


def test_small_fields_take_the_dense_path(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("split path used")
    monkeypatch.setattr(Q._SplitLogDensity, "build", boom)
    mu, logvar, lw = _field(10, 2048, 2)
    Q.neg_entropy(mu, logvar, lw)  # 2048 <= SPLIT_MIN_COMPONENTS: dense, exactly as before
