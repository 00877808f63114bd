r"""The pruned joint reduction: out_i = logsumexp_n (log N(z_i; mu_n, diag var_n) + log w_n), skipping
groups of components that provably cannot matter.

Components are grouped by a k-d split of their means (recursive median bisection along the dimension
whose spread, in units of the median posterior sd, is largest; groups of at most ``group_size``), and
the groups into a tree: runs of ``FANOUT`` consecutive groups, runs of ``FANOUT`` of those, and so on
up to at most ``FANOUT`` units at the top (the k-d order keeps consecutive groups near each other). For
a unit g (a group or a run) with means in the box [lo_gd, hi_gd], log-variances in [a_gd, b_gd],
largest log weight w_g and n_g members, every member satisfies, for a query z,

    log N(z; mu_n, var_n) + log w_n <= U_g(z) = w_g - 1/2 sum_d (log 2 pi + min_{l in [a_gd, b_gd]} (l + r_d^2 e^{-l}))

with r_d the distance from z_d to [lo_gd, hi_gd] (0 inside): l + r^2 e^{-l} is convex in l, with its
minimum at l = log r^2, so the inner minimum is at clamp(log r_d^2, a_gd, b_gd) (the C loop takes
log r_d^2 from below, by at most 0.016, so that it vectorises: U_g only grows). For each query a greedy
descent (the unit with the largest U_g at every level) finds a promising group, evaluated exactly; its
largest term M_i is a lower bound on the query's largest term (raised to the running maximum of the
terms evaluated so far: a larger lower bound, so the argument below holds at every step). Then, from the
top, every unit with U_g(z_i) + log n_g < M_i + log(rel_tol / K) (K: the number of units of all levels)
is skipped with everything under it, so the skipped mass is at most K (rel_tol / K) exp(M_i) <= rel_tol
times the whole sum: out_i is exact to ``rel_tol`` in the log (1e-12 by default, below float64's
precision of a long sum). The rest is evaluated exactly and merged online. Flat dimensions (see
:func:`flat_last`: inactive ones, where every component is nearly the prior) take in every U_g the term of
the box of all components, once per query, instead of the unit's own: a smaller term (that box contains
every unit's), so U_g stays a bound, and the bounds cost only the sharp dimensions.

A probe of ``PROBE`` spread-out queries runs first; where they evaluate more than ``WORTH_PRUNING`` of the
terms (broad posteriors: nothing can be pruned) the dense kernel runs instead, so the pruned path costs at
most the preparation and the probe more than the dense one there.

The loop is the C kernel of :mod:`.native` (float64); without it the dense :func:`.joint.joint_lse`
runs (exact, unpruned). Forward only: the references it serves need no gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..numerics import LOG_2PI
from . import native
from .joint import joint_lse

__all__ = ["pruned_joint_lse", "PrunedMixture", "PruneStats", "kd_order", "group_bounds", "box_upper_bound", "flat_last",
           "FANOUT"]

FANOUT = 32  # units per unit of the next coarser level of the tree
PROBE = 64  # queries tried first: the pruned loop runs only where it skips enough
MAX_GROUP = 1024  # the C kernel's block: a group's padded terms fit one row of its buffer
FLAT_SLACK = 2.0  # the flat dimensions together loosen a bound by at most half this, in nats
WORTH_PRUNING = 0.25  # largest fraction of the terms it may evaluate (its terms cost about 3x the dense ones)


@dataclass
class PruneStats:
    r"""What a pruned call did: ``evaluated`` kernel terms (bounds excluded) out of ``dense`` (Q N)."""

    evaluated: int = 0
    dense: int = 0
    groups: int = 0
    native: bool = False

    @property
    def fraction_evaluated(self) -> float:
        return self.evaluated / self.dense if self.dense else 1.0


def kd_order(points: np.ndarray, scale: np.ndarray, leaf: int) -> tuple[np.ndarray, np.ndarray]:
    r"""A k-d ordering of ``points`` (n, D): (permutation, start offsets of its leaves of <= ``leaf`` points).

    Recursive median bisection along the dimension of largest spread / ``scale``; the leaves come out
    in depth-first order, so consecutive leaves are near each other. The C kernel's loop where it can
    run (float64), else this one (the same splits; ties may be ordered differently)."""
    if points.dtype == np.float64:
        got = native.kd_order(torch.from_numpy(np.ascontiguousarray(points)),
                              torch.from_numpy(np.asarray(scale, dtype=np.float64)), leaf)
        if got is not None:
            return got[0].numpy(), got[1].numpy()
    return _kd_order_numpy(points, scale, leaf)


def _kd_order_numpy(points: np.ndarray, scale: np.ndarray, leaf: int) -> tuple[np.ndarray, np.ndarray]:
    n = points.shape[0]
    order, starts, done = [], [], 0
    stack = [np.arange(n)]
    while stack:
        idx = stack.pop()
        if idx.size <= leaf:
            order.append(idx)
            starts.append(done)
            done += idx.size
            continue
        p = points[idx]
        d = int(np.argmax((p.max(0) - p.min(0)) / scale))
        half = idx.size // 2
        part = np.argpartition(p[:, d], half)
        stack.append(idx[part[half:]])
        stack.append(idx[part[:half]])
    return np.concatenate(order), np.asarray(starts, dtype=np.int64)


def _segment_reduce(x: Tensor, seg: Tensor, count: int, how: str) -> Tensor:
    init = math.inf if how == "amin" else -math.inf
    out = torch.full((count,) + tuple(x.shape[1:]), init, dtype=x.dtype)
    index = seg.view(-1, *([1] * (x.ndim - 1))).expand_as(x)
    return out.scatter_reduce(0, index, x, reduce=how, include_self=True)


def group_bounds(mu: Tensor, logvar: Tensor, log_w: Tensor, starts: np.ndarray) -> tuple[Tensor, ...]:
    r"""Per group of consecutive rows (``starts``): (lo, hi, lvlo, lvhi, wmax, logn); the torch form of
    :func:`.native.group_boxes`, which reads the rows in place through the k-d permutation."""
    N = mu.shape[0]
    sizes = torch.as_tensor(np.diff(np.append(starts, N)))
    seg = torch.repeat_interleave(torch.arange(len(starts)), sizes)
    G = len(starts)
    return (_segment_reduce(mu, seg, G, "amin"), _segment_reduce(mu, seg, G, "amax"),
            _segment_reduce(logvar, seg, G, "amin"), _segment_reduce(logvar, seg, G, "amax"),
            _segment_reduce(log_w, seg, G, "amax"), sizes.to(mu.dtype).log())


def _merge_levels(bounds: tuple[Tensor, ...], starts: np.ndarray) -> tuple[Tensor, ...]:
    """Bounds of runs of consecutive groups (``starts`` into the groups): boxes and ranges merged."""
    G = bounds[0].shape[0]
    sizes = torch.as_tensor(np.diff(np.append(starts, G)))
    seg = torch.repeat_interleave(torch.arange(len(starts)), sizes)
    S = len(starts)
    lo, hi, lvlo, lvhi, wmax, logn = bounds
    return (_segment_reduce(lo, seg, S, "amin"), _segment_reduce(hi, seg, S, "amax"),
            _segment_reduce(lvlo, seg, S, "amin"), _segment_reduce(lvhi, seg, S, "amax"),
            _segment_reduce(wmax, seg, S, "amax"),
            torch.zeros(S, dtype=logn.dtype).index_add_(0, seg, logn.exp()).log())


def box_upper_bound(z: Tensor, lo, hi, lvlo, lvhi, wmax) -> Tensor:
    r"""U_g(z_i) for queries z (Q, D) and boxes (G, D): (Q, G); the torch form of the C kernel's bound."""
    r = (lo[None] - z[:, None]).clamp_min(0.0) + (z[:, None] - hi[None]).clamp_min(0.0)
    r2 = r * r
    lv = torch.log(r2).clamp(min=lvlo[None], max=lvhi[None])  # log 0 = -inf: clamped to the low end
    return wmax[None] - 0.5 * (z.shape[1] * LOG_2PI + (lv + r2 * torch.exp(-lv)).sum(2))


def flat_last(lo: Tensor, hi: Tensor, lvlo: Tensor, lvhi: Tensor) -> tuple[Tensor, int]:
    r"""(dims, sharp): the dimensions ordered sharp first, and how many are sharp, from the box of all
    components (lo, hi, lvlo, lvhi, each (D,)).

    A unit's term of dimension d exceeds the whole box's by at most (hi - lo)^2 e^{-lvlo} + (lvhi - lvlo)
    for a query inside that box; the dimensions where this is smallest (inactive ones: means near 0,
    variances near 1 for every component), as many as keep its sum within :data:`FLAT_SLACK`, are bounded
    once per query by the whole box, so the units' bounds cost only the sharp dimensions. Any split keeps
    the result exact (the whole box bounds every unit); it only decides how much is pruned."""
    slack = (hi - lo) ** 2 * torch.exp(-lvlo) + (lvhi - lvlo)
    order = torch.argsort(slack, descending=True, stable=True)
    flat_total = slack[order].flip(0).cumsum(0)  # the sum over the k flattest, k = 1 .. D
    flat = int((flat_total <= FLAT_SLACK).sum())
    return order, slack.shape[0] - flat


def _level(starts: np.ndarray, bounds: tuple[Tensor, ...], end: int) -> tuple[Tensor, ...]:
    """One level as the C kernel reads it (:data:`.native.PRUNE_FIELDS`): boxes (D, count), transposed."""
    lo, hi, lvlo, lvhi, wmax, logn = bounds
    return (torch.as_tensor(np.append(starts, end)).contiguous(),
            *(t.T.contiguous() for t in (lo, hi, lvlo, lvhi, torch.exp(-lvlo), torch.exp(-lvhi))),
            wmax.contiguous(), logn.contiguous())


def _tree(starts: np.ndarray, bounds: tuple[Tensor, ...], N: int) -> list[tuple[Tensor, ...]]:
    """The levels over the groups (``starts`` into the N components, their ``bounds``), coarsest first."""
    levels = [_level(starts, bounds, N)]
    count = len(starts)
    while count > FANOUT:
        runs = np.arange(0, count, FANOUT, dtype=np.int64)
        bounds = _merge_levels(bounds, runs)
        levels.append(_level(runs, bounds, count))
        count = len(runs)
    return levels[::-1]


class PrunedMixture:
    r"""A mixture prepared for pruned logsumexps: components sorted into groups once, queried many times.

    ``PrunedMixture(mu, logvar, log_weights)(z)`` is :func:`pruned_joint_lse` (z, mu, logvar, log_weights);
    preparing costs a k-d sort of the N means and a packing of the groups (under a second at N = 737,280),
    so callers with many chunks of queries (the references' Monte Carlo) prepare once.
    """

    def __init__(self, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None, *, rel_tol: float = 1e-12,
                 group_size: int = 64):
        if not 1 <= group_size <= MAX_GROUP:
            raise ValueError(f"group_size must be between 1 and {MAX_GROUP} components, got {group_size}")
        self.mu, self.logvar = mu.detach(), logvar.detach()
        self.log_weights = None if log_weights is None else log_weights.detach()
        N = mu.shape[0]
        self.N = N
        self.ready = native.get() is not None and mu.dtype == torch.float64
        if not self.ready:
            return
        log_w = torch.zeros(N, dtype=torch.float64) if log_weights is None else self.log_weights.to(torch.float64)
        # the split heuristic's units (any positive scale keeps the result exact): the median posterior sd,
        # from a strided subsample of at most 65,536 rows, which costs nothing at any N
        sub = self.logvar[::max(1, N // 65536)]
        self.scale = np.maximum(torch.exp(0.5 * sub.median(0).values.to(torch.float64)).numpy(), 1e-300)
        perm, starts = kd_order(self.mu.numpy(), self.scale, group_size)
        p, st = torch.as_tensor(perm), torch.as_tensor(starts)
        # the C loops read the rows in place through the permutation: no sorted copies
        boxes = native.group_boxes(self.mu, self.logvar, log_w, p, st)
        logn = torch.as_tensor(np.diff(np.append(starts, N))).to(torch.float64).log()
        G = len(starts)
        self.levels = _tree(starts, (*boxes, logn), N)
        whole = _merge_levels((*boxes, logn), np.array([0]))
        self.whole = _level(np.array([0]), whole, G)
        self.dims, self.sharp = flat_last(*(t[0] for t in whole[:4]))
        c = -0.5 * (self.logvar + LOG_2PI).sum(1) + log_w
        self.panels, self.consts, self.offsets = native.pack_panels(self.mu, 0.5 * torch.exp(-self.logvar), c, p, st)
        # the most siblings bounded at once: the top level, or the children of one coarse unit
        self.max_fanout = max([self.levels[0][0].shape[0] - 1]
                              + [int(np.diff(level[0].numpy()).max()) for level in self.levels[:-1]])
        self.log_cut = math.log(rel_tol / sum(level[0].shape[0] - 1 for level in self.levels))
        self.G = G
        self.worth_pruning: bool | None = None  # decided by the first probe

    def _run(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return native.pruned_joint_lse(z.contiguous(), self.panels, self.consts, self.offsets, self.levels,
                                       self.whole, self.dims, self.sharp, self.max_fanout, self.log_cut)

    def __call__(self, z: Tensor, stats: PruneStats | None = None) -> Tensor:
        Q = z.shape[0]
        if stats is not None:
            stats.dense += Q * self.N
        if self.ready and self.worth_pruning is None:
            # a probe of spread-out queries: where pruning skips too little, the dense kernel is faster
            probe = torch.as_tensor(np.linspace(0, Q - 1, min(Q, PROBE)).astype(np.int64))
            _, evaluated = self._run(z.detach()[probe])
            self.worth_pruning = float(evaluated.double().mean()) <= WORTH_PRUNING * self.N
        if not self.ready or not self.worth_pruning:
            if stats is not None:
                stats.evaluated += Q * self.N
            return joint_lse(z, self.mu, self.logvar, self.log_weights)
        q_perm, _ = kd_order(z.detach().numpy(), self.scale, 256)  # nearby queries visit the same groups
        qp = torch.as_tensor(q_perm)
        got, evaluated = self._run(z.detach()[qp])
        out = torch.empty(Q, dtype=torch.float64)
        out[qp] = got
        if stats is not None:
            stats.evaluated += int(evaluated.sum())
            stats.groups = self.G
            stats.native = True
        return out


def pruned_joint_lse(z: Tensor, mu: Tensor, logvar: Tensor, log_weights: Tensor | None = None, *,
                     rel_tol: float = 1e-12, group_size: int = 64, stats: PruneStats | None = None) -> Tensor:
    r"""out_i = logsumexp_n (log N(z_i; mu_n, diag exp(logvar_n)) + log w_n), (Q,), exact to ``rel_tol``.

    Unvalidated internal: float64 CPU tensors z (Q, D), mu and logvar (N, D), optional finite
    ``log_weights`` (N,). ``stats``, if given, receives the number of kernel terms evaluated. For many
    calls on one mixture, prepare it once: :class:`PrunedMixture`.
    """
    return PrunedMixture(mu, logvar, log_weights, rel_tol=rel_tol, group_size=group_size)(z, stats)
