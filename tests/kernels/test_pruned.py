"""The pruned joint kernel: exact to 1e-12 against the dense one, and its group bound holds."""
import math

import numpy as np
import pytest
import torch

from estimators.kernels import joint_lse
from estimators.kernels import native
from estimators.kernels.pruned import PruneStats, box_upper_bound, group_bounds, kd_order, pruned_joint_lse
from estimators.numerics import log_normal

F64 = torch.float64


def _field(kind, N, D, g):
    if kind == "sharp":  # a trained VAE: a few active dimensions with sharp posteriors, the rest near the prior
        mu = 2.0 * torch.randn(N, D, generator=g, dtype=F64)
        lv = torch.full((N, D), -6.0, dtype=F64)
        mu[:, 2:], lv[:, 2:] = 0.02 * torch.randn(N, D - 2, generator=g, dtype=F64), -0.01
    elif kind == "broad":
        mu, lv = 0.3 * torch.randn(N, D, generator=g, dtype=F64), torch.zeros(N, D, dtype=F64)
    elif kind == "heteroscedastic":
        mu, lv = torch.randn(N, D, generator=g, dtype=F64), -6.0 + 8.0 * torch.rand(N, D, generator=g, dtype=F64)
    else:  # clustered
        centres = 4.0 * torch.randn(8, D, generator=g, dtype=F64)
        mu = centres[torch.randint(8, (N,), generator=g)] + 0.1 * torch.randn(N, D, generator=g, dtype=F64)
        lv = torch.full((N, D), -5.0, dtype=F64)
    return mu, lv


@pytest.mark.parametrize("kind", ["sharp", "broad", "heteroscedastic", "clustered"])
def test_equals_the_dense_kernel_to_1e_12(kind):
    g = torch.Generator().manual_seed(3)
    mu, lv = _field(kind, 3000, 6, g)
    idx = torch.randint(3000, (700,), generator=g)
    z = mu[idx] + torch.randn(700, 6, generator=g, dtype=F64) * torch.exp(0.5 * lv[idx])
    log_w = torch.randn(3000, generator=g, dtype=F64)
    stats = PruneStats()
    got = pruned_joint_lse(z, mu, lv, log_w, group_size=16, stats=stats)
    want = joint_lse(z, mu, lv, log_w)
    assert float((got - want).abs().max()) <= 1e-12 * max(1.0, float(want.abs().max()))
    if kind == "broad":
        assert stats.fraction_evaluated >= 1.0  # nothing can be pruned: the dense kernel ran
    if kind in ("clustered", "sharp") and native.get() is not None:
        assert stats.native and stats.fraction_evaluated < 0.25  # most groups skipped


def test_the_group_bound_holds_for_every_member():
    """U_g over a box of queries bounds log N(z; mu_n, var_n) + log w_n for every query and member."""
    g = torch.Generator().manual_seed(4)
    mu, lv = _field("heteroscedastic", 500, 3, g)
    log_w = torch.randn(500, generator=g, dtype=F64)
    perm, starts = kd_order(mu.numpy(), np.ones(3), 20)
    mu, lv, log_w = mu[perm], lv[perm], log_w[perm]
    lo, hi, lv_lo, lv_hi, w_max, _ = group_bounds(mu, lv, log_w, starts)
    ends = np.append(starts[1:], 500)
    z = torch.randn(200, 3, generator=g, dtype=F64) * 2.0
    U = box_upper_bound(z, lo, hi, lv_lo, lv_hi, w_max)  # (200, G)
    L = log_normal(z[:, None], mu[None], lv[None]).sum(2) + log_w[None]  # (200, 500)
    for k, (a, b) in enumerate(zip(starts, ends)):
        assert bool((L[:, a:b].amax(1) <= U[:, k] + 1e-9).all())
    # tight: a query at a member's mean, in a group of one, attains the bound
    one = group_bounds(mu[:1], lv[:1], log_w[:1], np.array([0]))
    at = box_upper_bound(mu[:1], *one[:5])
    assert float(at) == pytest.approx(float(log_normal(mu[:1], mu[:1], lv[:1]).sum() + log_w[0]), abs=1e-12)


def test_the_skipped_mass_is_below_the_tolerance_at_a_loose_one():
    """With rel_tol = 1e-3 the pruned sum is below the dense one by at most a relative 1e-3."""
    g = torch.Generator().manual_seed(5)
    mu, lv = _field("sharp", 4000, 5, g)
    z = mu[:500] + torch.randn(500, 5, generator=g, dtype=F64) * torch.exp(0.5 * lv[:500])
    got = pruned_joint_lse(z, mu, lv, rel_tol=1e-3, group_size=16)
    want = joint_lse(z, mu, lv)
    assert bool((got <= want + 1e-12).all()) and bool((want - got <= 1e-3).all())


def test_kd_order_is_a_permutation_with_small_leaves():
    pts = np.random.default_rng(0).normal(size=(1000, 4))
    perm, starts = kd_order(pts, np.ones(4), 37)
    assert sorted(perm.tolist()) == list(range(1000))
    sizes = np.diff(np.append(starts, 1000))
    assert sizes.max() <= 37 and sizes.min() >= 1


def test_without_the_native_kernel_the_dense_one_runs(monkeypatch):
    monkeypatch.setattr(native, "get", lambda: None)
    g = torch.Generator().manual_seed(6)
    mu, lv = _field("clustered", 500, 3, g)
    z = mu[:50] + 0.01 * torch.randn(50, 3, generator=g, dtype=F64)
    stats = PruneStats()
    torch.testing.assert_close(pruned_joint_lse(z, mu, lv, stats=stats), joint_lse(z, mu, lv), rtol=0, atol=1e-12)
    assert not stats.native and stats.fraction_evaluated == 1.0


def _assert_the_leaves_of_the_numpy_kd_order(pts, scale, leaf):
    """kd_order (the C loop where it runs) makes the numpy order's leaves: the same starts, the same members."""
    from estimators.kernels.pruned import _kd_order_numpy
    want = _kd_order_numpy(pts, scale, leaf)
    got = kd_order(pts, scale, leaf)
    np.testing.assert_array_equal(got[1], want[1])
    bounds = np.append(want[1], pts.shape[0])
    for a, b in zip(bounds[:-1], bounds[1:]):
        assert set(got[0][a:b].tolist()) == set(want[0][a:b].tolist())


def test_the_c_kd_order_makes_the_same_leaves_as_the_numpy_one():
    pts = np.random.default_rng(1).normal(size=(3000, 5)) * np.array([1.0, 5.0, 0.1, 2.0, 1.0])
    _assert_the_leaves_of_the_numpy_kd_order(pts, np.array([1.0, 1.0, 0.05, 1.0, 2.0]), 23)


needs_native = pytest.mark.skipif(native.get() is None, reason="the C kernel is not built here")


@needs_native
def test_the_c_group_boxes_equal_the_torch_ones():
    g = torch.Generator().manual_seed(7)
    mu, lv = _field("heteroscedastic", 2000, 4, g)
    log_w = torch.randn(2000, generator=g, dtype=F64)
    perm, starts = kd_order(mu.numpy(), np.ones(4), 50)
    want = group_bounds(mu[perm], lv[perm], log_w[perm], starts)
    got = native.group_boxes(mu, lv, log_w, torch.as_tensor(perm), torch.as_tensor(starts))
    for a, b in zip(got, want[:5]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_native
def test_the_c_packer_lays_out_each_group_in_padded_vector_runs():
    g = torch.Generator().manual_seed(8)
    N, D = 301, 3
    mu, a, c = (torch.randn(N, D, generator=g, dtype=F64), torch.rand(N, D, generator=g, dtype=F64),
                torch.randn(N, generator=g, dtype=F64))
    perm = torch.randperm(N, generator=g)
    starts = torch.tensor([0, 7, 100, 101])
    panels, consts, offsets = native.pack_panels(mu, a, c, perm, starts)
    W = native.vector_width(F64)
    bounds = torch.cat([starts, torch.tensor([N])])
    for k in range(4):
        size, first = int(bounds[k + 1] - bounds[k]), int(offsets[k])
        assert int(offsets[k + 1]) - first == -(-size // W) * W
        for j in range(int(offsets[k + 1]) - first):
            run, lane = (first + j) // W, (first + j) % W
            if j < size:
                n = int(perm[bounds[k] + j])
                assert torch.equal(panels[run, :D, lane], mu[n]) and torch.equal(panels[run, D:, lane], a[n])
                assert float(consts[first + j]) == float(c[n])
            else:  # padding: zero precision, a constant far below the exp clamp
                assert bool((panels[run, D:, lane] == 0).all()) and float(consts[first + j]) == native.BIAS_FLOOR


def test_flat_dimensions_are_those_where_the_components_hardly_differ():
    from estimators.kernels.pruned import FLAT_SLACK, flat_last
    g = torch.Generator().manual_seed(9)
    mu, lv = _field("sharp", 5000, 6, g)  # dimensions 2..5 inactive
    dims, sharp = flat_last(mu.amin(0), mu.amax(0), lv.amin(0), lv.amax(0))
    assert sharp == 2 and set(dims[:2].tolist()) == {0, 1}
    assert sorted(dims.tolist()) == list(range(6))
    # the flat ones together within the slack; nothing is flat where every dimension is sharp
    wide = torch.full((6,), 10.0, dtype=F64)
    assert flat_last(-wide, wide, torch.full((6,), -6.0, dtype=F64), torch.zeros(6, dtype=F64))[1] == 6
    assert FLAT_SLACK > 0


@needs_native
def test_exact_for_queries_far_outside_the_box_of_a_flat_dimension():
    """Flat dimensions are bounded by the box of all components: a query far outside it stays exact."""
    g = torch.Generator().manual_seed(10)
    mu, lv = _field("sharp", 4000, 5, g)
    z = mu[:300] + torch.randn(300, 5, generator=g, dtype=F64) * torch.exp(0.5 * lv[:300])
    z[:100, 3] += 6.0  # six prior sds outside every component in an inactive dimension
    z[100:150, 4] -= 30.0
    stats = PruneStats()
    got = pruned_joint_lse(z, mu, lv, group_size=16, stats=stats)
    want = joint_lse(z, mu, lv)
    assert stats.native and stats.fraction_evaluated < 0.25
    assert float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())


@needs_native
def test_the_threaded_c_kd_order_makes_the_numpy_leaves(monkeypatch):
    """Above 65,536 values the subtrees split on threads: the leaves are those of the sequential order."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    pts = np.random.default_rng(2).normal(size=(30000, 4)) * np.array([1.0, 3.0, 0.2, 1.0])
    _assert_the_leaves_of_the_numpy_kd_order(pts, np.ones(4), 64)
