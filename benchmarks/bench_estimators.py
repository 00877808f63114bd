r"""Speed and peak memory of every estimator of log q(z_i) and log q(z_id), float32.

One call of :func:`estimators.log_aggregate_posterior` (joint and marginals, which is what total
correlation needs) on a minibatch of B samples from a field of N = 10000 posteriors, every estimator
through the one contract (``common.contract_call``): the batch's own posteriors ``field[index]``, the
whole field as ``field=`` and the batch's ``index``; the minibatch estimators read only the batch
(N = the field's), ``iwae`` (k = B importance samples, the cost of a minibatch estimator; it gathers
a B x k x D tensor) and ``exact`` the field. ``broadcast_mws`` is the baseline: MWS as the published
code computes it, through the B x B x D tensor (``common.naive_estimator``, from the registered weights).

Cases with B * (B or N) * D above 7e8 kernel terms (seconds per call) run only with ASV_SLOW=1;
the broadcast baseline and ``iwae`` follow the memory limits of ``bench_kernels`` (B x B x D above
7e7 elements: ASV_SLOW=1 only; above 2e8: never).
"""
from __future__ import annotations

import torch

from .bench_kernels import NAIVE_MAX, NAIVE_QUICK
from .common import DATASET_SIZE, configure_torch, contract_call, minibatch, naive_estimator, skip_unless_slow

BASELINE = "broadcast_mws"
BROADCASTING = (BASELINE, "iwae")  # hold a B x B x D (B x k x D) tensor: the memory limits of bench_kernels
QUICK_TERMS = 7e8  # kernel terms (B x columns x D) run by default


def _estimator_names() -> list[str]:
    try:
        from estimators.log_qz import ESTIMATORS
    except ImportError:  # a commit before the estimators existed: benchmark the baseline only
        return [BASELINE]
    return list(ESTIMATORS) + [BASELINE]


ESTIMATOR_NAMES = _estimator_names()


def make_call(estimator: str, B: int, D: int, *, requires_grad: bool = False):
    r"""Inputs for ``estimator`` at (B, D) and a closure running one estimate; skips slow cases.

    Returns:
        ``(fn, leaves)``: ``fn()`` returns ``(log_qz, log_qz_dims)``; ``leaves`` are the tensors that
        require grad (empty unless ``requires_grad``).
    """
    z, mu_b, logvar_b, index, mu, logvar = minibatch(B, D, "float32")
    if estimator in BROADCASTING:
        size = float(B) * B * D
        if size > NAIVE_MAX:
            raise NotImplementedError(f"{estimator} at B={B}, D={D} holds a B x B x D tensor of {4 * size / 1e9:.1f} GB")
        skip_unless_slow(size > NAIVE_QUICK, f"{estimator} holds a B x B x D tensor of GBs")
    from estimators import Posteriors, log_aggregate_posterior

    columns = DATASET_SIZE if estimator == "exact" else B
    skip_unless_slow(float(B) * columns * D > QUICK_TERMS, f"{estimator} at B={B}, D={D} takes seconds")

    if estimator == BASELINE:  # the batch's own posteriors, as the published code takes them
        leaves = [t.clone().requires_grad_(True) for t in (z, mu_b, logvar_b)] if requires_grad else []
        zz, mm, ll = leaves or (z, mu_b, logvar_b)
        return (lambda: naive_estimator("mws", zz, mm, ll, DATASET_SIZE)), leaves
    if requires_grad:  # gradients reach the field through both the batch rows field[index] and field=
        leaves = [t.clone().requires_grad_(True) for t in (z, mu, logvar)]
        z_in, field = leaves[0], (leaves[1], leaves[2])
    else:  # validated once here, not in every call
        leaves, z_in, field = [], z, Posteriors(mu, logvar)
    return (lambda: contract_call(log_aggregate_posterior, estimator, z_in, field, index, k=B)), leaves


class Estimator:
    r"""log q(z_i) and all D marginals log q(z_id) of a batch of B: one estimator call."""

    params = (ESTIMATOR_NAMES, [256, 1024, 4096], [10, 64])
    param_names = ["estimator", "B", "D"]
    timeout = 600

    def setup(self, estimator, B, D):
        configure_torch()
        self.fn, _ = make_call(estimator, B, D)

    def time_log_qz(self, estimator, B, D):
        self.fn()

    def peakmem_log_qz(self, estimator, B, D):
        self.fn()


class EstimatorGradient:
    r"""Forward and backward of the total-correlation terms (a training loss), B = 1024, D = 10."""

    params = (ESTIMATOR_NAMES,)
    param_names = ["estimator"]
    B, D = 1024, 10

    def setup(self, estimator):
        configure_torch()
        self.fn, self.leaves = make_call(estimator, self.B, self.D, requires_grad=True)

    def _step(self):
        log_qz, log_qz_dims = self.fn()
        (log_qz - log_qz_dims.sum(1)).mean().backward()
        for t in self.leaves:
            t.grad = None

    def time_tc_forward_backward(self, estimator):
        self._step()

    def peakmem_tc_forward_backward(self, estimator):
        self._step()
