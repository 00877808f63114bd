r"""Certified brackets around every reference: deterministic bounds that catch what a standard error cannot.

A reference with a small se can still be wrong (a bug, a quadrature that missed a component, a Monte Carlo
that never saw a tail); a deterministic bound cannot be fooled that way. Every quantity of
:func:`estimators.references.exact_references` gets ``lower`` <= value <= ``upper`` from these bounds
(docs/maths.md, "Certified brackets"):

* pairwise-distance bounds on the entropy of a mixture (Kolchinsky & Tracey 2017): for
  q = sum_i w_i q_i, with I_D = -sum_i w_i log sum_j w_j exp(-D(q_i || q_j)),

      sum_i w_i H(q_i) + I_BC  <=  H(q)  <=  sum_i w_i H(q_i) + I_KL,

  D = the Bhattacharyya distance below, the KL divergence above. I = H(q) - sum_i w_i H(q_i) is the mixture's
  information (mi for the aggregate posterior), so I_BC <= mi <= I_KL; both are closed forms over pairs of
  diagonal Gaussians (:func:`pairwise_information`), and pinch together for well-separated components
  (both -> log N);
* the moment-matched Gaussian (:mod:`estimators.direct.moments`): kl_agg >= KL(q_G || p), i.e.
  mi <= 1/2 (log det S - mean_n sum_d logvar_nd), and per dimension;
* the trivial ones: 0 <= mi <= min(log N, avg_kl), tc >= 0 (so kl_agg >= dimwise_kl).

Which bound is tightest is recorded (``lower_by``, ``upper_by``). The pairs cost N^2 (distinct components:
duplicates are merged with weights first). The KL form and the relaxed Bhattacharyya form run through the
streamed joint kernel (:func:`estimators.kernels.joint_lse`, fused C where it is built), never holding an
N x N matrix; the exact Bhattacharyya form is blocked elementwise, used while N^2 D is within
``EXACT_BHATTACHARYYA_BUDGET``, above it a relaxation D' <= D_B that has the kernel's form (still a
certified lower bound, looser on heteroscedastic fields).

Above ``PAIRWISE_BUDGET`` (N^2 D) no bound costs N^2. The lower bound becomes the block bound: split the
components into blocks k of weight W_k (leaves of a k-d split of their log-variances, so that a block's
variances are alike and the relaxation is nearly exact; at most ``BLOCK_PAIRS`` / N components each); q is
the mixture sum_k W_k q_k of the blocks' mixtures, and with k the block of n, I(n; z) = I(k; z) + sum_k W_k
I_k >= sum_k W_k I_k, each I_k >= its own relaxed Bhattacharyya bound (cost N x block size). It cannot exceed
the log of the block size. The pairwise KL upper bound is left out there (the other upper bounds remain).

:func:`check_brackets` raises :class:`BracketError` when a reference lies outside its bracket by more than
``Z_BRACKET`` of its standard errors (plus float rounding and the quadrature's error): loudly, never silent.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..direct.moments import moment_kl, moment_mi_upper
from ..kernels import joint_lse
from ..kernels.pruned import kd_order
from ..numerics import LOG_2PI, exp_clamp
from .structure import dedupe

__all__ = ["pairwise_information", "pairwise_entropy_bounds", "certified_brackets", "check_brackets",
           "BracketError", "Z_BRACKET", "EXACT_BHATTACHARYYA_BUDGET", "BRACKET_ROUNDING", "PAIRWISE_BUDGET",
           "BLOCK_PAIRS"]

Z_BRACKET = 4.0  # a reference more than 4 se outside its bracket is an error (about 1 in 30,000 by chance)
BRACKET_ROUNDING = 1e-9  # relative float slack of a bound (and of a closed-form or quadrature reference)
EXACT_BHATTACHARYYA_BUDGET = 5 * 10**8  # pair-dimension terms N^2 D of the exact elementwise form: seconds
PAIRWISE_BUDGET = 10**10  # pair-dimension terms N^2 D of the all-pairs bounds (about 10 s here); above: blocks
BLOCK_PAIRS = 2**32  # pairs N x (block size) of the block bound: about 10 s at D = 10
_BLOCK_ELEMENTS = 2**18  # elements of one (rows, cols) float64 block of the elementwise form
_CLAMP = exp_clamp(torch.float64)


class BracketError(RuntimeError):
    r"""A reference outside its certified bracket by more than ``Z_BRACKET`` se: the reference (or a bound)
    is wrong. Not bad input: a bug to report."""


def _kl_information(mu: Tensor, logvar: Tensor, log_w: Tensor) -> float:
    r"""I_KL = -sum_i w_i log sum_j w_j exp(-KL(q_i || q_j)), through the joint kernel.

    -KL(q_i || q_j) = E_{q_i}[log q_j] + H(q_i), and E_{q_i}[log q_j] = -1/2 sum_d ((mu_i - mu_j)^2 + v_i) / v_j
    - 1/2 sum_d (logvar_j + log 2 pi) is a Gaussian log-density in 2D dimensions: the point (mu_i, sqrt v_i)
    under the component (mu_j, 0) of variances (v_j, v_j), plus the constant 1/2 sum_d (logvar_j + log 2 pi)
    per j (folded into the log weights). Direct (z - mu)^2 form in the C kernel: no cancellation.
    """
    z = torch.cat([mu, torch.exp(0.5 * logvar)], 1)
    centres = torch.cat([mu, torch.zeros_like(mu)], 1)
    lv = torch.cat([logvar, logvar], 1)
    extra = log_w + 0.5 * (logvar + LOG_2PI).sum(1)
    lse = joint_lse(z, centres, lv, extra)  # log sum_j w_j exp(E_{q_i} log q_j)
    own_entropy = 0.5 * (LOG_2PI + 1.0 + logvar).sum(1)
    return float(-(torch.exp(log_w) * (lse + own_entropy)).sum())


def _bhattacharyya_exact(mu: Tensor, logvar: Tensor, log_w: Tensor) -> float:
    r"""I_BC = -sum_i w_i log sum_j w_j exp(-D_B(q_i, q_j)), elementwise in (rows, cols) blocks, one dimension
    at a time (never N x N x D), with an online logsumexp over column blocks.

    D_B = sum_d [(mu_i - mu_j)^2 / (4 s) + 1/2 log(s / 2) - 1/4 (logvar_i + logvar_j)], s = v_i + v_j.
    """
    N, D = mu.shape
    var = torch.exp(logvar)
    row_const = 0.25 * logvar.sum(1)  # + 1/4 sum_d logvar_i: a row constant of -D_B
    col_const = 0.25 * logvar.sum(1) + log_w  # + 1/4 sum_d logvar_j + log w_j
    cols = min(N, max(1, _BLOCK_ELEMENTS // 64)) if N * 64 > _BLOCK_ELEMENTS else N
    rows = max(1, min(N, _BLOCK_ELEMENTS // cols))
    lse = torch.empty(N, dtype=torch.float64)
    for r0 in range(0, N, rows):
        r1 = min(N, r0 + rows)
        run_max = run_sum = None
        for c0 in range(0, N, cols):
            c1 = min(N, c0 + cols)
            acc = row_const[r0:r1, None] + col_const[None, c0:c1]
            for d in range(D):
                s = var[r0:r1, d, None] + var[None, c0:c1, d]
                diff = mu[r0:r1, d, None] - mu[None, c0:c1, d]
                acc -= diff * diff / (4.0 * s) + 0.5 * torch.log(0.5 * s)
            m = acc.amax(1, keepdim=True)
            if run_max is not None:
                new = torch.maximum(run_max, m)
                run_sum = run_sum * torch.exp(run_max - new)
                m = new
            s_ = acc.sub_(m).clamp_(min=_CLAMP).exp_().sum(1, keepdim=True)
            run_sum = s_ if run_sum is None else run_sum + s_
            run_max = m
        lse[r0:r1] = (run_max + torch.log(run_sum)).squeeze(1)
    return float(-(torch.exp(log_w) * lse).sum())


def _bhattacharyya_relaxed(mu: Tensor, logvar: Tensor, log_w: Tensor) -> float:
    r"""I_D' with D'(i, j) = sum_d (mu_i - mu_j)^2 / (4 (v_j + V_d)) <= D_B(q_i, q_j), V_d = max_n v_nd.

    (s = v_i + v_j <= V_d + v_j, and the log term of D_B is >= 0 by the AM-GM inequality.) exp(-D') is an
    unnormalised Gaussian in mu_i of variance 2 (v_j + V_d): the joint kernel's form. Equal to I_BC when
    each dimension's variance is shared by all components (then v_j + V_d = 2 v_d = s and the log term is 0).
    """
    var = torch.exp(logvar)
    wide = 2.0 * (var + var.amax(0))
    lv = torch.log(wide)
    extra = log_w + 0.5 * (lv + LOG_2PI).sum(1)  # undo the Gaussian's normaliser
    lse = joint_lse(mu, mu, lv, extra)
    return float(-(torch.exp(log_w) * lse).sum())


def _block_information(mu: Tensor, logvar: Tensor, log_w: Tensor, block_pairs: float) -> float:
    r"""The block bound sum_k W_k I_BC'(block k) <= I (module docstring): blocks are the leaves of a k-d split of
    the log-variances of at most ``block_pairs`` / N components, each bounded by its relaxed Bhattacharyya form
    (its own variances: nearly exact there), with its weights normalised."""
    n, d = mu.shape
    size = max(2, int(block_pairs // n))
    order, starts = kd_order(logvar.numpy(), np.ones(d), size)
    order = torch.as_tensor(order)
    total = 0.0
    for s, e in zip(starts.tolist(), starts[1:].tolist() + [n]):
        rows = order[s:e]
        w = log_w[rows]
        W = torch.logsumexp(w, 0)
        if e - s < 2:
            continue  # one component: no information
        mu_b, lv_b = mu[rows], logvar[rows]
        total += float(torch.exp(W)) * _bhattacharyya_relaxed(mu_b - mu_b.mean(0), lv_b, w - W)
    return total


def pairwise_information(mu, logvar, log_weights=None, *,
                         exact_budget: float = EXACT_BHATTACHARYYA_BUDGET,
                         pairwise_budget: float = PAIRWISE_BUDGET, block_pairs: float = BLOCK_PAIRS) -> dict:
    r"""Kolchinsky-Tracey bounds on the information I = H(q) - sum_i w_i H(q_i) of a diagonal-Gaussian mixture.

    For q = sum_i w_i Normal(mu_i, diag exp(logvar_i)): I_BC <= I <= I_KL with
    I_D = -sum_i w_i log sum_j w_j exp(-D(q_i || q_j)), D the Bhattacharyya distance (lower) and the KL
    divergence (upper). For the aggregate posterior (w = 1/N) I is the index-code mutual information mi.
    Both lie in [0, -log min w] (= [0, log N]); both are 0 for one component and tend to log N as the
    components separate. Identical components are merged first (exactly: the bounds depend on the mixture
    only). float64 throughout.

    Args:
        mu, logvar: (N, D) components.
        log_weights: optional (N,) log mixture weights (normalised to sum 1); default uniform.
        exact_budget: most N^2 D terms for the exact (elementwise) Bhattacharyya form; above it the relaxed
            form of the joint kernel (a looser certified lower bound).
        pairwise_budget: most N^2 D terms of any all-pairs bound; above it the block lower bound (module
            docstring) and no pairwise upper bound (``upper`` is then the cap -log min w).
        block_pairs: the block bound's cost, N x (block size).
    Returns:
        ``{"lower", "upper", "lower_method", "upper_method"}`` with lower_method "bhattacharyya",
        "bhattacharyya_relaxed" or "bhattacharyya_blocks", upper_method "kl" or None (no pairwise bound).
    Raises:
        ValueError: shapes differ or are not (N, D) with N, D >= 1, non-finite values, or bad weights.
    """
    mu = torch.as_tensor(mu)
    logvar = torch.as_tensor(logvar)
    if mu.dim() != 2 or mu.shape != logvar.shape or mu.shape[0] < 1 or mu.shape[1] < 1:
        raise ValueError(f"mu and logvar must both be (N, D) with N, D >= 1, got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    mu, logvar = mu.detach().to(torch.float64), logvar.detach().to(torch.float64)
    for name, t in (("mu", mu), ("logvar", logvar)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds non-finite values")
    N = mu.shape[0]
    if log_weights is None:
        log_w = torch.full((N,), -math.log(N), dtype=torch.float64)
    else:
        log_w = torch.as_tensor(log_weights, dtype=torch.float64).detach()
        if log_w.shape != (N,) or bool(torch.isnan(log_w).any()) or bool((log_w == math.inf).any()):
            raise ValueError(f"log_weights must be (N,) = ({N},) without NaN or +inf, got shape {tuple(log_w.shape)}")
        log_w = log_w - torch.logsumexp(log_w, 0)
    mu_u, lv_u, log_wu = _merge(mu, logvar, log_w)
    if mu_u.shape[0] == 1:
        return {"lower": 0.0, "upper": 0.0, "lower_method": "bhattacharyya", "upper_method": "kl"}
    n, d = mu_u.shape
    mu_c = mu_u - mu_u.mean(0)  # translation invariant; centring keeps the differences exact
    cap = float(-log_wu.min())  # D(q_i || q_i) = 0: the inner sum is at least w_i
    if n * n * d > pairwise_budget:  # no N^2 bound at this size
        lower = _block_information(mu_c, lv_u, log_wu, block_pairs)
        return {"lower": min(max(lower, 0.0), cap), "upper": cap, "lower_method": "bhattacharyya_blocks",
                "upper_method": None}
    upper = _kl_information(mu_c, lv_u, log_wu)
    if bool((lv_u == lv_u[0]).all()):  # each dimension's variance shared: the relaxed form is D_B itself
        lower, method = _bhattacharyya_relaxed(mu_c, lv_u, log_wu), "bhattacharyya"
    elif n * n * d <= exact_budget:
        lower, method = _bhattacharyya_exact(mu_c, lv_u, log_wu), "bhattacharyya"
    else:
        lower, method = _bhattacharyya_relaxed(mu_c, lv_u, log_wu), "bhattacharyya_relaxed"
    return {"lower": min(max(lower, 0.0), cap), "upper": min(max(upper, 0.0), cap), "lower_method": method,
            "upper_method": "kl"}


def _merge(mu: Tensor, logvar: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Identical components merged, their weights summed (log-sum-exp)."""
    if len(np.unique(mu[:, 0].numpy())) == mu.shape[0]:  # distinct first coordinates: no two rows alike (fast)
        return mu, logvar, log_w
    mu_u, lv_u, _, inverse = dedupe(mu, logvar)
    if mu_u.shape[0] == mu.shape[0]:
        return mu, logvar, log_w
    merged = torch.full((mu_u.shape[0],), -math.inf, dtype=torch.float64)
    merged = merged.scatter_reduce(0, inverse, log_w, "amax")
    sums = torch.zeros(mu_u.shape[0], dtype=torch.float64).index_add_(0, inverse, torch.exp(log_w - merged[inverse]))
    return mu_u, lv_u, merged + torch.log(sums)


def pairwise_entropy_bounds(mu, logvar, log_weights=None, **kwargs) -> tuple[float, float]:
    r"""(lower, upper) on the differential entropy H(q) of a diagonal-Gaussian mixture (Kolchinsky & Tracey
    2017): sum_i w_i H(q_i) + the bounds of :func:`pairwise_information`."""
    info = pairwise_information(mu, logvar, log_weights, **kwargs)
    logvar = torch.as_tensor(logvar, dtype=torch.float64)
    N = logvar.shape[0]
    w = torch.full((N,), 1.0 / N, dtype=torch.float64) if log_weights is None else \
        torch.softmax(torch.as_tensor(log_weights, dtype=torch.float64), 0)
    own = float((w * 0.5 * (LOG_2PI + 1.0 + logvar).sum(1)).sum())
    return own + info["lower"], own + info["upper"]


def _pairwise_kl(info: dict) -> dict:
    r"""The pairwise KL upper bound as a candidate, where it was computed."""
    return {"pairwise_kl": info["upper"]} if info.get("upper_method") == "kl" else {}


def _tightest(candidates: dict[str, float], pick) -> tuple[float, str]:
    name = pick(candidates, key=candidates.__getitem__)
    return float(candidates[name]), name


def certified_brackets(mu: Tensor, logvar: Tensor, *, marginal_gap: float, avg_kl: float,
                       quadrature_error: float = 0.0, exact_budget: float = EXACT_BHATTACHARYYA_BUDGET,
                       pairwise_budget: float = PAIRWISE_BUDGET, block_pairs: float = BLOCK_PAIRS) -> dict:
    r"""Brackets of mi, kl_agg, tc, dimwise_kl and avg_kl of a field (float64 (N, D) tensors).

    Args:
        marginal_gap: own - hd = E[log q(z|n)] - sum_d E[log q(z_d)] = avg_kl - dimwise_kl, the reference's
            (quadrature) value; tc = marginal_gap - mi.
        avg_kl: the closed form.
        quadrature_error: the quadratures' error estimate; the bounds that use ``marginal_gap`` are widened by
            it (plus rounding).
        exact_budget, pairwise_budget, block_pairs: as :func:`pairwise_information` for the joint bounds (each
            dimension's 1-D bounds get a D-th of each).
    Returns:
        ``{quantity: {"lower", "upper", "lower_by", "upper_by"}}``. See the module docstring and
        docs/maths.md, "Certified brackets", for each bound.
    """
    N, D = mu.shape
    tol = 10.0 * quadrature_error + 1e-12 * (1.0 + abs(marginal_gap))  # the quadrature's error, and rounding
    joint = pairwise_information(mu, logvar, exact_budget=exact_budget, pairwise_budget=pairwise_budget,
                                 block_pairs=block_pairs)
    mi_lo, mi_lo_by = _tightest({"zero": 0.0, f"pairwise_{joint['lower_method']}": joint["lower"]}, max)
    mi_hi, mi_hi_by = _tightest({"log_N": math.log(N), "avg_kl": avg_kl, **_pairwise_kl(joint),
                                 "moment": float(moment_mi_upper(mu, logvar)),
                                 "tc_nonnegative": marginal_gap + tol}, min)
    out = {"avg_kl": {"lower": avg_kl, "upper": avg_kl, "lower_by": "closed", "upper_by": "closed"},
           "mi": {"lower": mi_lo, "upper": mi_hi, "lower_by": mi_lo_by, "upper_by": mi_hi_by},
           "kl_agg": {"lower": avg_kl - mi_hi, "upper": avg_kl - mi_lo, "lower_by": mi_hi_by, "upper_by": mi_lo_by}}
    if mi_hi_by == "moment":  # avg_kl - (avg_kl - moment_kl): the bound itself, without the round trip
        out["kl_agg"]["lower"] = max(out["kl_agg"]["lower"], float(moment_kl(mu, logvar)))
    out["tc"] = {"lower": max(0.0, marginal_gap - mi_hi - tol), "upper": marginal_gap - mi_lo + tol,
                 "lower_by": "zero" if marginal_gap - mi_hi - tol <= 0 else mi_hi_by, "upper_by": mi_lo_by}
    # dimwise_kl: sum_d KL_d with KL_d = avg_kl_d - I_d, I_d the information of marginal d, bracketed by the 1-D
    # pairwise bounds, 0, log N_d, avg_kl_d and the 1-D moment bound; independent of the quadrature.
    moment_d = moment_mi_upper(mu, logvar, per_dim=True)
    avg_kl_d = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).mean(0)
    lo_sum = hi_sum = 0.0
    lo_by, hi_by = set(), set()
    for d in range(D):
        one = pairwise_information(mu[:, d:d + 1], logvar[:, d:d + 1], exact_budget=exact_budget / max(D, 1),
                                   pairwise_budget=pairwise_budget / max(D, 1), block_pairs=block_pairs / max(D, 1))
        i_lo, by_lo = _tightest({"zero": 0.0, f"pairwise_{one['lower_method']}": one["lower"]}, max)
        i_hi, by_hi = _tightest({"log_N": math.log(N), "avg_kl": float(avg_kl_d[d]), **_pairwise_kl(one),
                                 "moment": float(moment_d[d])}, min)
        lo_sum += float(avg_kl_d[d]) - i_hi
        hi_sum += float(avg_kl_d[d]) - i_lo
        lo_by.add(by_hi)
        hi_by.add(by_lo)
    out["dimwise_kl"] = {"lower": lo_sum, "upper": hi_sum, "lower_by": "+".join(sorted(lo_by)),
                         "upper_by": "+".join(sorted(hi_by))}
    return out


def check_brackets(result: dict, quantities=("avg_kl", "kl_agg", "mi", "tc", "dimwise_kl"),
                   z: float = Z_BRACKET) -> None:
    r"""Raise :class:`BracketError` if a reference lies outside its bracket by more than ``z`` se.

    ``result`` is what :func:`estimators.references.exact_references` returns (each quantity's entry with
    ``value``, ``se``, ``lower``, ``upper``). The slack is z se plus float rounding, ``BRACKET_ROUNDING``
    (1 + |value| + |avg_kl|), plus ten times the quadrature's error estimate.
    """
    scale = abs(result["avg_kl"]["value"]) if "avg_kl" in result else 0.0
    qerr = float(result.get("quadrature_error", 0.0))
    bad = []
    for q in quantities:
        e = result[q]
        value, se, lo, hi = e["value"], e["se"], e["lower"], e["upper"]
        slack = z * se + BRACKET_ROUNDING * (1.0 + abs(value) + scale) + 10.0 * qerr
        if not (lo - slack <= value <= hi + slack):
            off = (lo - value) if value < lo else (value - hi)
            sigmas = f"{off / se:.1f} se" if se > 0 else "se 0"
            bad.append(f"{q} = {value:.10g} (se {se:.3g}, {e.get('method', '?')}) lies outside its certified bracket "
                       f"[{lo:.10g}, {hi:.10g}] (lower by {e.get('lower_by', '?')}, upper by "
                       f"{e.get('upper_by', '?')}) by {off:.3g} ({sigmas}; allowed {z:g} se + rounding)")
    if bad:
        raise BracketError("REFERENCE OUTSIDE ITS CERTIFIED BRACKET (a bug in the reference or in a bound): "
                           + "; ".join(bad))
