r"""The registry of estimators of log q(z_i): one record per estimator name.

Every implementation honours one contract: it receives a validated :class:`~estimators.log_qz.batch.Batch`
(z, the batch's own posteriors, the data-set size and, where given, the whole field and the batch's
indices) and the options of the call, and returns ``(log_qz (B,), log_qz_dims (B, D) or None)``::

    @register_estimator("my_estimator", family="importance", citation="...", unbiased_inside=True)
    def _my_estimator(batch, *, k, proposal, generator, marginals):
        ...

Minibatch estimators are data, not code: :func:`register_minibatch` takes a function giving their
log weights (a (B, B) matrix or one constant, for the joint and for the marginals) and builds the
implementation, the naive broadcast baseline of the benchmarks and the audit from the same weights.
Callers go through :func:`estimators.log_aggregate_posterior` or :func:`estimators.decompose`, which
validate once and never branch on the family.

This module imports nothing else from the package; the built-in estimators register themselves when
:mod:`estimators.log_qz` is imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["EstimatorInfo", "LogWeights", "ESTIMATORS", "FAMILIES", "QUANTITIES", "register_estimator",
           "register_minibatch", "get_estimator"]

FAMILIES = ("minibatch", "importance", "exact")
QUANTITIES = ("mi", "kl_agg", "tc", "dimwise_kl")  # what an estimate of log q(z) and its marginals yields


@dataclass(frozen=True)
class LogWeights:
    r"""The log weights a minibatch estimator adds to L_ij (joint) and to L_ijd (marginals).

    Each is a (B, B) tensor (row i: the weights of sample z_i over the batch's components, -inf for
    a zero weight) or a float constant (the same log weight everywhere, i.e. an offset of the logsumexp).
    """

    joint: object
    marginal: object


@dataclass(frozen=True)
class EstimatorInfo:
    r"""What a caller needs to know about one estimator of log q(z_i).

    Attributes:
        name: the registry key, e.g. ``"mss"``.
        implementation: ``f(batch, *, k, proposal, generator, marginals) -> (log_qz, log_qz_dims)``.
        family: ``"minibatch"`` (uses only the batch's own posteriors), ``"importance"`` (draws k
            components from the whole field) or ``"exact"`` (sums over the whole field).
        citation: where the formula comes from (paper, or repository and function as shipped).
        unbiased_inside: whether exp(log q^(z_i)) is an unbiased estimate of q(z_i).
        published_variant: a replica of a formula as shipped in public code, bug included.
        needs_k: takes the number k of importance samples.
        needs_dataset_size: the formula uses N.
        min_batch: the smallest batch size B for which the formula is defined.
        description: one line for reports.
        weights: minibatch family only: ``weights(B, N, D, dtype, device) -> LogWeights``.
        quantities: the quantities the estimator defines (``calc_mi`` is an estimator of mi only).
        analytic_entropy: mi uses the closed-form E[log q(z|n_i)] = -H(q(z|n_i)) in place of the
            sampled log q(z_i|n_i) (He et al. 2019's ``calc_mi``).
        mi_bound: ``"lower"`` or ``"upper"`` where the estimator's mi is a known bound on I(n; z)
            in expectation (``naive``: InfoNCE with the encoder as critic; ``loo``: the
            leave-one-out upper bound, Poole et al. 2019), else ``""``.
    """

    name: str
    implementation: Callable
    family: str
    citation: str
    unbiased_inside: bool
    published_variant: bool = False
    needs_k: bool = False
    needs_dataset_size: bool = False
    min_batch: int = 1
    description: str = ""
    weights: Callable | None = None
    quantities: tuple[str, ...] = QUANTITIES
    analytic_entropy: bool = False
    mi_bound: str = ""

    @property
    def needs_field(self) -> bool:
        """Whether the estimator reads the whole field (N, D), not just the batch's posteriors."""
        return self.family != "minibatch"


ESTIMATORS: dict[str, EstimatorInfo] = {}


def register_estimator(name: str, *, family: str, citation: str, unbiased_inside: bool,
                       published_variant: bool = False, needs_k: bool = False,
                       needs_dataset_size: bool = False, min_batch: int = 1, description: str = "",
                       weights: Callable | None = None, quantities: tuple[str, ...] = QUANTITIES,
                       analytic_entropy: bool = False, mi_bound: str = "") -> Callable[[Callable], Callable]:
    r"""Decorator registering ``implementation`` under ``name`` in :data:`ESTIMATORS` (see :class:`EstimatorInfo`)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not quantities or any(q not in QUANTITIES for q in quantities):
        raise ValueError(f"quantities must be a non-empty subset of {QUANTITIES}, got {quantities!r}")
    if mi_bound not in ("", "lower", "upper"):
        raise ValueError(f"mi_bound must be '', 'lower' or 'upper', got {mi_bound!r}")

    def decorator(implementation: Callable) -> Callable:
        if name in ESTIMATORS:
            raise ValueError(f"an estimator named {name!r} is already registered")
        ESTIMATORS[name] = EstimatorInfo(
            name=name, implementation=implementation, family=family, citation=citation,
            unbiased_inside=unbiased_inside, published_variant=published_variant, needs_k=needs_k,
            needs_dataset_size=needs_dataset_size, min_batch=min_batch,
            description=description or (implementation.__doc__ or "").strip().split("\n")[0], weights=weights,
            quantities=tuple(quantities), analytic_entropy=analytic_entropy, mi_bound=mi_bound,
        )
        return implementation

    return decorator


def register_minibatch(name: str, *, implementation: Callable, **record) -> Callable[[Callable], Callable]:
    r"""Decorator registering a minibatch estimator by its log-weight function.

    ``implementation(batch, log_weights, *, marginals)`` is the shared weighted logsumexp; the
    decorated function is ``weights(B, N, D, dtype, device) -> LogWeights`` and its docstring the
    estimator's description.
    """

    def decorator(weights: Callable) -> Callable:
        def run(batch, *, marginals, **unused):
            w = weights(batch.B, batch.dataset_size, batch.D, batch.z.dtype, batch.z.device)
            return implementation(batch, w, marginals=marginals)

        run.__doc__ = weights.__doc__
        register_estimator(name, family="minibatch", weights=weights, **record)(run)
        return weights

    return decorator


def get_estimator(name) -> EstimatorInfo:
    """The record of ``name``, or a ``ValueError`` listing the known names."""
    info = ESTIMATORS.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}")
    return info
