r"""The registry of estimators of log q(z_i): one record per estimator name.

Adding an estimator is one function plus one decorator, as with ``torch.distributions.kl.register_kl``::

    @register_estimator("my_estimator", family="minibatch", citation="...", unbiased_inside=False)
    def _my_estimator(z, mu, logvar, *, dataset_size, marginals=True, **unused):
        ...
        return log_qz, log_qz_dims  # (B,), (B, D) or None when marginals is False

Implementations receive inputs already validated by :func:`estimators.log_aggregate_posterior`
(common floating dtype, shapes checked, ``dataset_size`` an int) and every keyword of the call:
``dataset_size``, ``k``, ``proposal``, ``index``, ``generator``, ``marginals``; they ignore the ones
they do not use. Call estimators through :func:`estimators.log_aggregate_posterior`, not directly.

This module imports nothing else from the package; the built-in estimators register themselves
when :mod:`estimators.log_qz` is imported (which ``import estimators`` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["EstimatorInfo", "ESTIMATORS", "FAMILIES", "register_estimator", "get_estimator"]

FAMILIES = ("minibatch", "importance", "exact")


@dataclass(frozen=True)
class EstimatorInfo:
    r"""What a caller needs to know about one estimator of log q(z_i).

    Attributes:
        name: the registry key, e.g. ``"mss"``.
        implementation: ``f(z, mu, logvar, **keywords) -> (log_qz, log_qz_dims)``.
        family: ``"minibatch"`` (uses only the batch's own posteriors, mu and logvar (B, D)),
            ``"importance"`` (draws k components from the whole field) or ``"exact"``.
        citation: where the formula comes from (paper, or repository and function as shipped).
        unbiased_inside: whether exp(log q^(z_i)) is an unbiased estimate of q(z_i).
        published_variant: a replica of a formula as shipped in public code, bug included.
        needs_field: takes the whole field mu, logvar (N, D) (plus ``index`` where needed).
        needs_k: takes the number k of importance samples.
        needs_dataset_size: the formula uses N (for minibatch estimators ``dataset_size`` is then required).
        min_batch: the smallest batch size B for which the formula is defined.
        description: one line for reports.
    """

    name: str
    implementation: Callable
    family: str
    citation: str
    unbiased_inside: bool
    published_variant: bool = False
    needs_field: bool = False
    needs_k: bool = False
    needs_dataset_size: bool = False
    min_batch: int = 1
    description: str = ""


ESTIMATORS: dict[str, EstimatorInfo] = {}


def register_estimator(name: str, *, family: str, citation: str, unbiased_inside: bool,
                       published_variant: bool = False, needs_k: bool = False,
                       needs_dataset_size: bool = False, min_batch: int = 1,
                       description: str = "") -> Callable[[Callable], Callable]:
    r"""Decorator registering ``implementation`` under ``name`` in :data:`ESTIMATORS`.

    ``needs_field`` follows from the family (every non-minibatch estimator takes the whole field).

    Args:
        name: registry key; must be new.
        family: one of :data:`FAMILIES`.
        citation, unbiased_inside, published_variant, needs_k, needs_dataset_size, min_batch,
            description: see :class:`EstimatorInfo`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def decorator(implementation: Callable) -> Callable:
        if name in ESTIMATORS:
            raise ValueError(f"an estimator named {name!r} is already registered")
        ESTIMATORS[name] = EstimatorInfo(
            name=name, implementation=implementation, family=family, citation=citation,
            unbiased_inside=unbiased_inside, published_variant=published_variant,
            needs_field=family != "minibatch", needs_k=needs_k,
            needs_dataset_size=needs_dataset_size, min_batch=min_batch,
            description=description or (implementation.__doc__ or "").strip().split("\n")[0],
        )
        return implementation

    return decorator


def get_estimator(name) -> EstimatorInfo:
    """The record of ``name``, or a ``ValueError`` listing the known names."""
    info = ESTIMATORS.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}")
    return info
