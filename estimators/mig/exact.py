r"""Exact references of the mutual information gap (MIG) of a field of posteriors with known factors.

For latent j and factor k, with q(z_j) = mean_n q(z_j|n) and q(z_j | v_k = v) the same mean over the population
{n : v_k(n) = v}, I(z_j; v_k) = H(z_j) - sum_v p(v) H(z_j | v_k = v). Every entropy is that of a 1-D Gaussian
mixture, computed by the adaptive quadrature of the references (:func:`estimators.references.quadrature.neg_entropy`,
identical components merged first) with its error estimate. Then (Chen et al. 2018, "Isolating Sources of
Disentanglement in VAEs", section 5)

    MIG = 1/K sum_k (I_(1)k - I_(2)k) / H(v_k),

I_(1)k >= I_(2)k the two largest I(z_j; v_k) over j and H(v_k) the entropy of the factor's empirical distribution
(log |V_k| for a uniform factor).

Error bounds. Each entropy carries the quadrature's estimate e of its error (the sum over the accepted cells of the
difference of the n- and n/2-point rules: an overestimate of the finer rule's error) plus float rounding, so
|I_jk error| <= e_j + sum_v p(v) e_jkv =: eps_jk. The largest and second largest of a vector are 1-Lipschitz in the
max norm (everywhere, ties included), so |gap_k error| <= 2 max_j eps_jk and |MIG error| <= 1/K sum_k 2 max_j
eps_jk / H(v_k). What is not continuous is *which* latent is on top: where the top two are within their error bounds
of each other, the reported ``top_latent`` may be the wrong one (``top_certain`` False) -- the gap is then close to 0
and its bound still holds.
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..numerics import neg_entropy_normal
from ..references.quadrature import neg_entropy
from ..references.structure import dedupe
from .factors import FactorField, check_factors, select_factors

__all__ = ["mig_references", "mixture_entropy", "mig_from_information"]

ROUNDING = 1e-12  # relative float rounding of a quadrature's sum over cells, added to its error estimate


def mixture_entropy(mu: Tensor, logvar: Tensor, *, nodes: int = 32) -> tuple[float, float]:
    r"""H of the equal-weight 1-D Gaussian mixture (1/n) sum_i N(mu_i, exp(logvar_i)), with an error bound.

    Identical components are merged (with their weights) before the quadrature; a single distinct component is
    closed form. Args: mu, logvar (n,) float64. Returns (entropy, error bound) in nats.
    """
    m, lv, log_w, _ = dedupe(mu.reshape(-1, 1), logvar.reshape(-1, 1))
    if m.shape[0] == 1:
        return -float(neg_entropy_normal(lv[0])), 0.0
    value, error = neg_entropy(m, lv, log_w, nodes=nodes)
    return -value, error + ROUNDING * abs(value)


def mig_from_information(mi: Tensor, mi_error: Tensor, factor_entropies, index: tuple[int, ...]) -> dict:
    r"""The MIG and its parts from an information matrix I (D, K) with error bounds eps (D, K).

    Args:
        mi, mi_error: (D, K) float64 I(z_j; v_k) and bounds on their errors (zeros for no bound).
        factor_entropies: the K entropies H(v_k).
        index: the factors the MIG averages over.

    Returns:
        dict: ``top_latent``, ``second_latent`` (K lists of ints), ``gap`` (I_(1) - I_(2)), ``normalized_gap``
        (gap / H(v_k)), ``gap_error`` (2 max_j eps_jk), ``normalized_gap_error``, ``top_certain`` (K bools:
        I_(1) - eps exceeds every other I + eps), ``mig``, ``mig_error``.
    """
    order = torch.argsort(mi, dim=0, descending=True, stable=True)
    top, second = order[0], order[1]
    cols = torch.arange(mi.shape[1])
    first_v, second_v = mi[top, cols], mi[second, cols]
    gap = first_v - second_v
    gap_error = 2.0 * mi_error.amax(0)
    h = torch.tensor(list(factor_entropies), dtype=torch.float64)
    others = (mi + mi_error).scatter(0, top[None], -math.inf).amax(0)
    certain = (first_v - mi_error[top, cols]) > others
    sel = list(index)
    return {
        "top_latent": top.tolist(), "second_latent": second.tolist(),
        "gap": gap.tolist(), "normalized_gap": (gap / h).tolist(),
        "gap_error": gap_error.tolist(), "normalized_gap_error": (gap_error / h).tolist(),
        "top_certain": certain.tolist(),
        "mig": float((gap / h)[sel].mean()), "mig_error": float((gap_error / h)[sel].mean()),
    }


def mig_references(mu, logvar, factors, *, factor_names=None, factor_sizes=None, factors_in_mig=None,
                   quadrature_nodes: int = 32) -> dict:
    r"""Exact I(z_j; v_k) for every latent and factor, and the exact MIG, each with an error bound.

    Every entropy is a 1-D mixture entropy by adaptive quadrature: H(z_j) over all N posteriors and
    H(z_j | v_k = v) over each population {n : v_k(n) = v}, D (1 + sum_k |V_k|) quadratures in all (see the
    module notes for the definitions and the error bounds).

    Args:
        mu, logvar: (N, D) posterior means and log-variances (D >= 2).
        factors: (N, K) integer factor values, or a :class:`estimators.mig.factors.FactorField` already checked
            (then mu, logvar, factor_names and factor_sizes are not read).
        factor_names: K names (default ``factor0`` ...).
        factor_sizes: K sizes |V_k| (default: largest value + 1); values that never occur get p(v) = 0.
        factors_in_mig: names or column indices of the factors the MIG averages over (default: all). The
            beta-TCVAE authors' dSprites metric leaves ``shape`` out (see :func:`estimators.mig.mig_beta_tcvae`).
        quadrature_nodes: Gauss-Legendre nodes per quadrature cell.

    Returns:
        dict with ``N``, ``D``, ``K``, ``factor_names``, ``factor_sizes``, ``factors_in_mig`` (names),
        ``factor_probabilities`` (K lists p(v)), ``factor_entropy`` (K floats), ``entropy`` (D,) H(z_j) and
        ``entropy_error`` (D,), ``conditional_entropies`` (K tensors (D, |V_k|) of H(z_j | v_k = v), NaN where
        p(v) = 0) and ``conditional_entropies_error``, ``conditional_entropy`` (D, K) sum_v p(v) H(z_j | v_k = v)
        and its ``conditional_entropy_error``, ``mi`` (D, K) I(z_j; v_k) and ``mi_error`` (D, K), the MIG parts of
        :func:`mig_from_information` (``top_latent``, ``gap``, ``normalized_gap``, ``top_certain``, ``mig``,
        ``mig_error``, ...), ``quadratures`` (how many), ``quadrature_nodes`` and ``seconds``.

    Raises:
        ValueError: bad inputs, naming the argument (:func:`estimators.mig.factors.check_factors`).
    """
    start = time.perf_counter()
    field = factors if isinstance(factors, FactorField) else check_factors(
        mu, logvar, factors, factor_names=factor_names, factor_sizes=factor_sizes)
    nodes = int(quadrature_nodes)
    if nodes < 2:
        raise ValueError(f"quadrature_nodes must be >= 2, got {quadrature_nodes}")
    index = select_factors(field, factors_in_mig)
    D, K = field.D, field.K
    H = torch.empty(D, dtype=torch.float64)
    H_err = torch.empty(D, dtype=torch.float64)
    cond = [torch.full((D, s), math.nan, dtype=torch.float64) for s in field.sizes]
    cond_err = [torch.full((D, s), math.nan, dtype=torch.float64) for s in field.sizes]
    count = 0
    for j in range(D):
        H[j], H_err[j] = mixture_entropy(field.mu[:, j], field.logvar[:, j], nodes=nodes)
        count += 1
        for k in range(K):
            for v, rows in enumerate(field.populations[k]):
                if len(rows) == 0:
                    continue
                cond[k][j, v], cond_err[k][j, v] = mixture_entropy(field.mu[rows, j], field.logvar[rows, j],
                                                                   nodes=nodes)
                count += 1
    mean_cond = torch.empty(D, K, dtype=torch.float64)
    mean_cond_err = torch.empty(D, K, dtype=torch.float64)
    for k in range(K):
        p = field.probabilities[k]
        seen = p > 0
        mean_cond[:, k] = (cond[k][:, seen] * p[seen]).sum(1)
        mean_cond_err[:, k] = (cond_err[k][:, seen] * p[seen]).sum(1)
    mi = H[:, None] - mean_cond
    mi_error = H_err[:, None] + mean_cond_err
    out = {
        "N": field.N, "D": D, "K": K, "factor_names": list(field.names), "factor_sizes": list(field.sizes),
        "factors_in_mig": [field.names[k] for k in index],
        "factor_probabilities": [p.tolist() for p in field.probabilities],
        "factor_entropy": list(field.entropies),
        "entropy": H, "entropy_error": H_err,
        "conditional_entropies": cond, "conditional_entropies_error": cond_err,
        "conditional_entropy": mean_cond, "conditional_entropy_error": mean_cond_err,
        "mi": mi, "mi_error": mi_error,
    }
    out.update(mig_from_information(mi, mi_error, field.entropies, index))
    out.update(quadratures=count, quadrature_nodes=nodes, seconds=time.perf_counter() - start)
    return out
