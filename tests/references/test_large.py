"""What makes the references fast at large N: windowed 1-D densities, the fast dedupe, the block bound.

Each against something independent: brute-force sums over the components within the window, torch.unique,
and the information I = E[log q(z|n)] - E[log q(z)] by quadrature, which the certified block bound may never
exceed.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

import estimators.references.api as api
import estimators.references.quadrature as Q
from estimators import exact_references
from estimators.references.brackets import BLOCK_PAIRS, certified_brackets, pairwise_information
from estimators.references.structure import dedupe
from tests.helpers import make_field

F64 = torch.float64


def _torch_dedupe(mu, logvar):
    k = mu.shape[1]
    rows, inverse, counts = torch.unique(torch.cat([mu, logvar], 1), dim=0, return_inverse=True, return_counts=True)
    return rows[:, :k], rows[:, k:], torch.log(counts.to(F64)) - math.log(mu.shape[0]), inverse


@pytest.mark.parametrize("D", [1, 2])
def test_dedupe_matches_torch_unique(D):
    g = torch.Generator().manual_seed(D)
    mu = torch.randint(0, 5, (400, D), generator=g).to(F64) * 0.5  # many ties
    lv = torch.randint(0, 3, (400, D), generator=g).to(F64) - 1.0
    mu[7], lv[7] = -0.0, -1.0
    for got, want in zip(dedupe(mu, lv), _torch_dedupe(mu, lv)):
        assert torch.equal(got, want)


def _brute_window(z, mu, lv, lw, window):
    sd = np.exp(0.5 * lv)
    out = []
    for x in z:
        keep = np.abs(x - mu) <= window * sd
        terms = lw - 0.5 * (np.log(2 * np.pi) + lv + (x - mu) ** 2 / np.exp(lv))
        out.append(logsumexp(terms[keep]) if keep.any() else -np.inf)
    return np.array(out)


def test_windowed_log_density_holds_every_component_within_the_window():
    g = torch.Generator().manual_seed(0)
    n = 3000
    mu = torch.sort(3.0 * torch.randn(n, generator=g, dtype=F64))[0]
    lv = -6.0 + 6.0 * torch.rand(n, generator=g, dtype=F64)
    lw = torch.full((n,), -math.log(n), dtype=F64)
    z = 4.0 * torch.randn(700, generator=g, dtype=F64)
    got = Q._windowed_log_q(z, (mu, lv, lw), 4.0, 64).numpy()
    # the block's sum holds at least the point's own window, and nothing beyond the block's
    own = _brute_window(z.numpy(), mu.numpy(), lv.numpy(), lw.numpy(), 4.0)
    dense = Q._dense_log_q(z, mu[:, None], lv[:, None], lw).numpy()
    assert np.all(got >= own - 1e-12 * (1 + np.abs(own))) and np.all(got <= dense + 1e-12 * (1 + np.abs(dense)))
    # with the broad part's window nothing that matters is left out
    wide = Q._broad_log_q(z, (mu, lv, lw)).numpy()
    assert np.max(np.abs(wide - dense) / (1 + np.abs(dense))) < 1e-13


def test_points_far_from_every_component_fall_back_to_the_dense_sum():
    mu = torch.tensor([-50.0, -49.0, 50.0, 51.0], dtype=F64)
    lv = torch.full((4,), -2.0, dtype=F64)
    lw = torch.full((4,), -math.log(4), dtype=F64)
    z = torch.tensor([-49.5, 0.0, 20.0, 50.5], dtype=F64)  # 0 and 20: beyond 16 sd of every component
    got = Q._broad_log_q(z, (mu, lv, lw))
    dense = Q._dense_log_q(z, mu[:, None], lv[:, None], lw)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, dense, rtol=1e-14, atol=0)


def test_split_quadrature_of_separated_clusters_matches_the_dense_one(monkeypatch):
    g = torch.Generator().manual_seed(3)
    n = 6000
    which = torch.randint(2, (n,), generator=g)
    mu = (torch.randn(n, generator=g, dtype=F64) * 0.3 + 40.0 * which)[:, None]  # a gap of ~130 sd
    lv = (-3.0 + torch.rand(n, generator=g, dtype=F64))[:, None]
    lw = torch.full((n,), -math.log(n), dtype=F64)
    fast = Q.neg_entropy(mu, lv, lw)
    monkeypatch.setattr(Q, "SPLIT_MIN_COMPONENTS", 10**12)
    dense = Q.neg_entropy(mu, lv, lw)
    assert abs(fast[0] - dense[0]) <= 1e-11 * abs(dense[0])


def _information(mu, lv):
    """I = E[log q(z|n)] - E[log q(z)] by quadrature (D <= 2): what the bounds bracket."""
    own = float((-0.5 * (math.log(2 * math.pi) + lv + 1.0).sum(1)).mean())
    value, err = Q.neg_entropy(mu, lv, nodes=16)
    assert err < 1e-7
    return own - value


FIELDS = [(1500, 1, (-6.0, -2.0)), (1500, 1, (-1.0, 1.0)), (800, 2, (-5.0, -1.0)), (800, 2, (-3.0, 0.0))]


@pytest.mark.parametrize("N,D,lv_range", FIELDS)
def test_block_bound_never_exceeds_the_information(N, D, lv_range):
    mu, lv = make_field(N, D, seed=N + D, spread=1.0, logvar=lv_range)
    truth = _information(mu, lv)
    full = pairwise_information(mu, lv)
    for block_pairs in (N * 8, N * 64, N * 300):
        blocks = pairwise_information(mu, lv, pairwise_budget=0, block_pairs=block_pairs)
        assert blocks["lower_method"] == "bhattacharyya_blocks" and blocks["upper_method"] is None
        assert blocks["upper"] == pytest.approx(math.log(N), rel=1e-15)
        assert 0.0 < blocks["lower"] <= truth + 1e-9, (blocks, truth)
        assert blocks["lower"] <= math.log(max(2, block_pairs // N)) + 1e-12  # no more than a block can hold
    assert full["lower"] <= truth + 1e-9 <= full["upper"] + 2e-9


def test_block_bound_of_well_separated_blocks_reaches_their_size():
    # components 30 sd apart: every block's information is log of its size, and the bound says so
    N = 512
    mu = (30.0 * torch.arange(N, dtype=F64))[:, None]
    lv = torch.zeros(N, 1, dtype=F64)
    got = pairwise_information(mu, lv, pairwise_budget=0, block_pairs=N * 64)["lower"]
    assert got == pytest.approx(math.log(64), rel=1e-12)


def test_references_stay_inside_the_block_brackets(monkeypatch):
    monkeypatch.setattr(api, "certified_brackets",
                        functools.partial(certified_brackets, pairwise_budget=0, block_pairs=BLOCK_PAIRS / 1e5))
    mu, lv = make_field(700, 4, seed=9, spread=1.0, logvar=(-4.0, -1.0))
    ref = exact_references(mu, lv, samples=16)  # check_brackets raises if a reference falls outside
    assert ref["mi"]["lower_by"] == "pairwise_bhattacharyya_blocks"
    assert "pairwise_kl" not in ref["mi"]["upper_by"]
    assert "pairwise_bhattacharyya_blocks" in ref["dimwise_kl"]["upper_by"]
    assert ref["mi"]["lower"] <= ref["mi"]["value"] <= ref["mi"]["upper"]
