r"""The registry of direct estimators: those that do not go through log q(z) (:data:`DIRECT_ESTIMATORS`).

Every record says which quantities the estimator gives and, for each, whether it is a ``"lower"`` bound,
an ``"upper"`` bound or an ``"estimate"``; its family (``"moment"`` or ``"density_ratio"``), parameters,
citation, and whether it reads the whole field (``reads_field``: the density ratio samples q(z) from all
N posteriors) or only the posteriors it is given (the moment estimators: a batch is taken as the data
set). Every implementation is called the same way::

    info.implementation(mu, logvar, *, seed, batch_size, steps) -> {quantity: float}

with ``mu``, ``logvar`` the posteriors it may see ((B, D) of a batch, or the whole field when
``reads_field``), ``seed`` its own randomness, ``batch_size`` and ``steps`` the budget where it has one.
A bound is a bound of the quantity of the posteriors given: for a batch, of the batch's own aggregate
posterior, which estimates the field's with a finite-batch error of either sign.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .density_ratio import DEFAULTS, density_ratio_tc
from .moments import gaussian_tc_of_means, moment_dimwise_kl, moment_kl, moment_tc

__all__ = ["DirectEstimatorInfo", "DIRECT_ESTIMATORS", "DIRECT_FAMILIES", "KINDS"]

DIRECT_FAMILIES = ("moment", "density_ratio")
KINDS = ("lower", "upper", "estimate")


@dataclass(frozen=True)
class DirectEstimatorInfo:
    r"""One direct estimator.

    Attributes:
        name: registry key. implementation: see the module docstring.
        family: ``"moment"`` or ``"density_ratio"``.
        kinds: {quantity: "lower" | "upper" | "estimate"}, in the order of its CSV rows.
        citation: where it comes from. description: one line for reports.
        params: its parameters and their defaults (documentation; the benchmark sets ``batch_size``, ``steps``).
        reads_field: samples the whole field (else it sees only the batch it is given).
        min_batch: ``min_batch(D)``, the smallest batch it is defined for.
        needs_steps: its budget includes training steps (the benchmark's ``k`` column holds them).
    """

    name: str
    implementation: Callable
    family: str
    kinds: dict
    citation: str
    description: str
    params: dict = field(default_factory=dict)
    reads_field: bool = False
    min_batch: Callable[[int], int] = lambda D: 2
    needs_steps: bool = False

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(self.kinds)

    def __post_init__(self):
        if self.family not in DIRECT_FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {DIRECT_FAMILIES}, got {self.family!r}")
        bad = [k for k in self.kinds.values() if k not in KINDS]
        if bad:
            raise ValueError(f"{self.name}: kinds must be among {KINDS}, got {bad}")


def _density_ratio(mu, logvar, *, seed, batch_size, steps):
    out = density_ratio_tc(mu, logvar, seed=seed, batch_size=batch_size or DEFAULTS["batch_size"],
                           steps=steps or DEFAULTS["steps"])
    return {"tc": out.tc, "tc_se": out.se}


def _one(quantity, fn):
    def implementation(mu, logvar, *, seed, batch_size, steps):
        return {quantity: float(fn(mu, logvar))}

    return implementation


_RECORDS = (
    DirectEstimatorInfo(
        "density_ratio", _density_ratio, "density_ratio", {"tc": "estimate"},
        "Kim & Mnih 2018, Disentangling by Factorising (FactorVAE), Sec. 3 and Algorithm 1",
        "mean discriminator logit on fresh samples of q(z); discriminator q(z) vs dimension-permuted samples",
        params=dict(DEFAULTS), reads_field=True, needs_steps=True),
    DirectEstimatorInfo(
        "gaussian_tc_means", _one("tc", lambda mu, logvar: gaussian_tc_of_means(mu)), "moment", {"tc": "estimate"},
        "the Gaussian total correlation of the encoder means (e.g. disentanglement_lib, "
        "unsupervised_metrics.gaussian_total_correlation)",
        "1/2 (sum log diag C - log det C), C = Cov[mu]: posterior variances ignored", min_batch=lambda D: D + 1),
    DirectEstimatorInfo(
        "moment_kl", _one("kl_agg", moment_kl), "moment", {"kl_agg": "lower"},
        "moment matching (the Pythagorean identity of the Gaussian family)",
        "KL(q_G || p), q_G = Normal(E[mu], E[Sigma] + Cov[mu]): a lower bound on kl_agg"),
    DirectEstimatorInfo(
        "moment_dimwise_kl", _one("dimwise_kl", moment_dimwise_kl), "moment", {"dimwise_kl": "lower"},
        "moment matching, per dimension",
        "sum_d KL(Normal(m_d, S_dd) || Normal(0, 1)): a lower bound on each dimension's KL and on dimwise_kl"),
    DirectEstimatorInfo(
        "moment_tc", _one("tc", moment_tc), "moment", {"tc": "estimate"},
        "moment matching", "total correlation of the moment-matched Gaussian q_G (its linear dependence only)"),
)

DIRECT_ESTIMATORS: dict[str, DirectEstimatorInfo] = {r.name: r for r in _RECORDS}
