r"""Structure of a field that gives some references in closed form.

* :func:`is_product_grid` -- q(z) = prod_d q(z_d), so tc = 0 exactly and kl_agg = dimwise_kl;
* :func:`dedupe` -- identical components merged into one with a weight (the quadratures cost per
  distinct component, not per data point).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..validation import as_posteriors

__all__ = ["is_product_grid", "dedupe"]


def dedupe(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Merge identical components: unique (mu, logvar) rows, their log weights (count / N) and each row's unique id.

    The rows come out in lexicographic order (as ``torch.unique(..., dim=0)`` gives them), by a stable numpy
    lexsort: six times faster than torch's at N = 737,280."""
    k = mu.shape[1]
    rows = torch.cat([mu, logvar], 1).detach().cpu().numpy()
    order = np.lexsort(rows.T[::-1])  # the last key is the primary one: column 0 first, then 1, ...
    ordered = rows[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(1)
    uid = np.cumsum(new) - 1
    inverse = np.empty(len(ordered), dtype=np.int64)
    inverse[order] = uid
    unique = torch.from_numpy(ordered[new])
    log_w = torch.log(torch.from_numpy(np.bincount(uid)).to(torch.float64)) - math.log(mu.shape[0])
    return unique[:, :k].contiguous(), unique[:, k:].contiguous(), log_w, torch.from_numpy(inverse)


def is_product_grid(mu, logvar) -> bool:
    r"""True when the field (mu, logvar) is a product grid, so that q(z) = prod_d q(z_d) and tc = 0.

    That is: (a) in every dimension d, logvar[:, d] is a function of mu[:, d] (equal means have
    equal variances), and (b) with L_d distinct values of mu[:, d], each of the prod_d L_d
    combinations of per-dimension values occurs equally often (once, for a proper grid; a field of
    identical rows counts). Under (a) and (b), q(z) = (1/N) sum_n prod_d q(z_d|n) factorises into
    prod_d (1/L_d) sum_k N(z_d; m_dk, v_dk) = prod_d q(z_d). Values are compared exactly (no
    tolerance), so a perturbed or missing row gives False.

    Args:
        mu: (N, D) posterior means.
        logvar: (N, D) posterior log-variances.
    """
    mu, logvar = as_posteriors(mu, logvar)
    N, D = mu.shape
    if N == 0:
        return False
    codes = torch.zeros(N, dtype=torch.int64)
    cells = 1
    for d in range(D):
        values, inverse = torch.unique(mu[:, d], return_inverse=True)
        # (a) one logvar per distinct mean: the per-level min and max of logvar agree
        lv = logvar[:, d]
        lo = torch.full((len(values),), math.inf, dtype=lv.dtype).scatter_reduce(0, inverse, lv, "amin")
        hi = torch.full((len(values),), -math.inf, dtype=lv.dtype).scatter_reduce(0, inverse, lv, "amax")
        if not torch.equal(lo, hi):
            return False
        cells *= len(values)
        if cells > N or N % cells:
            return False
        codes = codes * len(values) + inverse
    # (b) every combination occurs N / cells times
    counts = torch.bincount(codes, minlength=cells)
    return bool((counts == N // cells).all())
