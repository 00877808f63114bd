r"""The Monte Carlo reference of E_q[log q(z)]: stratified draws from every component, evaluated exactly.

Every aggregate quantity is this one expectation plus closed forms (see :mod:`.api`): with
H(q) = -E_q[log q], mi = E[log q(z|n)] + H(q), kl_agg = -H(q) - E_q[log p] and tc = -H(q) + sum_d H(q_d).
Each draw's log q(z) is the full-N mixture density (:func:`estimators.kernels.joint_lse`; from
``PRUNE_FROM_N`` components the pruned kernel, :mod:`estimators.kernels.pruned`, exact to 1e-12), so the
only noise is the draw of z; two control variates with exactly known per-component means remove most
of it, and the standard error is that of a stratified mean.

Why E[log q] and not, say, E[log q - log p]: log q(z) is of the size of the components' own
log-densities, whatever the field, while log p(z) grows like |mu|^2 and var (5e12 at logvar = 30):
quantities formed as differences of such numbers lose every digit (mi as avg_kl - kl_agg did). The
control variates may be huge; they are standardised before the least-squares fit.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..kernels import joint_lse
from ..kernels.pruned import PrunedMixture
from ..numerics import LOG_2PI, log_standard_normal

__all__ = ["neg_entropy_mc", "kl_agg_mc", "QUERY_CHUNK", "PRUNE_FROM_N"]

QUERY_CHUNK = 2**16  # draws per kernel call: bounds the float64 feature matrices to a few MB
PRUNE_FROM_N = 8192  # from this N the mixture density is the pruned kernel's (exact to 1e-12; preparing costs ~N)


def neg_entropy_mc(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator,
                   progress=None) -> tuple[float, float]:
    r"""E_q[log q(z)] by stratified Monte Carlo with two control variates; returns (estimate, se).

    S = ``samples`` draws z_ns ~ q(z|n) for every n; t_ns = log q(z_ns) over all N components. Controls
    c1 = log p(z) and c2 = log q(z|n) have exactly known means within stratum n,
    m1_n = -D/2 log 2pi - 1/2 sum_d (mu_nd^2 + var_nd) and m2_n = -1/2 sum_d (log 2pi + logvar_nd + 1), so
    mean_n [tbar_n - beta . (cbar_n - m_n)] is unbiased for any fixed beta; beta is fitted by least squares
    on within-stratum deviations (an O(1/(NS)) effect, below the se). The se of the stratified mean is
    sqrt(sum_n s_n^2 / S) / N with s_n^2 the within-stratum variance of the residual.

    Args:
        mu, logvar: (N, D) float64.
        samples: S >= 2. generator: the draws' source.
        progress: None, or a callable ``progress(done, total)`` called after each chunk of draws.
    """
    N, D = mu.shape
    S = samples
    eps = torch.randn(N, S, D, generator=generator, dtype=torch.float64)
    z = (mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * eps).reshape(N * S, D)
    centre = mu.mean(0)  # log q is translation invariant: evaluate it on centred points
    zc, muc = z - centre, mu - centre
    log_q = torch.empty(N * S, dtype=torch.float64)
    # large fields: skip the groups of components that provably contribute below 1e-12 (sharp posteriors)
    density = PrunedMixture(muc, logvar) if N >= PRUNE_FROM_N else (lambda x: joint_lse(x, muc, logvar))
    with torch.no_grad():
        for start in range(0, N * S, QUERY_CHUNK):
            log_q[start:start + QUERY_CHUNK] = density(zc[start:start + QUERY_CHUNK])
            if progress is not None:
                progress(min(start + QUERY_CHUNK, N * S), N * S)
    t = (log_q - math.log(N)).reshape(N, S)
    log_p = log_standard_normal(z).reshape(N, S)
    log_own = -0.5 * (LOG_2PI + logvar).sum(1)[:, None] - 0.5 * (eps * eps).sum(2)  # log q(z_ns | n)
    controls = torch.stack([log_p, log_own], dim=2)  # (N, S, 2)
    known = torch.stack([-0.5 * (D * LOG_2PI + (mu * mu + torch.exp(logvar)).sum(1)),
                         -0.5 * (LOG_2PI + logvar + 1.0).sum(1)], dim=1)  # (N, 2)
    t_dev = (t - t.mean(1, keepdim=True)).reshape(-1).numpy()
    c_dev = (controls - controls.mean(1, keepdim=True)).reshape(-1, 2).numpy()
    dof = N * (S - 1)
    fitted = 0
    beta = np.zeros(2)
    if dof > 20:  # enough within-stratum degrees of freedom for the fit not to bias the se
        scale = np.sqrt((c_dev * c_dev).mean(0))
        scale[~(scale > 0)] = 1.0  # a constant control (e.g. S draws of one shape): nothing to fit
        coef, _, fitted, _ = np.linalg.lstsq(c_dev / scale, t_dev, rcond=None)
        beta = coef / scale
    strata = t.mean(1) - ((controls.mean(1) - known) * torch.from_numpy(beta)).sum(1)  # (N,)
    resid = torch.from_numpy(t_dev - c_dev @ beta).reshape(N, S)
    s2 = (resid * resid).sum(1) / (S - 1)
    correction = dof / (dof - fitted) if dof > fitted else 1.0
    se = math.sqrt(max(float(s2.sum()) * correction / S, 0.0)) / N
    return float(strata.mean()), se


def kl_agg_mc(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator) -> tuple[float, float]:
    r"""KL(q(z) || p(z)) = E_q[log q] - E_q[log p]: :func:`neg_entropy_mc` minus the closed-form cross-entropy."""
    value, se = neg_entropy_mc(mu, logvar, samples, generator)
    cross = float((-0.5 * (LOG_2PI + mu * mu + torch.exp(logvar)).sum(1)).mean())
    return value - cross, se
