r"""Speed and peak memory of every estimator of log q(z_i) and log q(z_id), float32.

One call of :func:`estimators.log_aggregate_posterior` (joint and marginals, which is what total
correlation needs) on a minibatch of B samples from a field of N = 10000 posteriors:

* minibatch estimators take the batch's own posteriors (B, D) and ``dataset_size`` = N;
* ``iwae`` (k = B importance samples, the cost of a minibatch estimator; it gathers a B x k x D
  tensor) and ``exact`` take the whole field (N, D) and the batch's ``index``;
* ``broadcast_mws`` is the baseline: MWS as the published code computes it, through the
  B x B x D tensor (see ``common.naive_minibatch``).

Cases with B * (B or N) * D above 7e8 kernel terms (seconds per call) run only with ASV_SLOW=1;
the broadcast baseline and ``iwae`` follow the memory limits of ``bench_kernels`` (B x B x D above
7e7 elements: ASV_SLOW=1 only; above 2e8: never).
"""
from __future__ import annotations

import torch

from .bench_kernels import NAIVE_MAX, NAIVE_QUICK
from .common import DATASET_SIZE, configure_torch, minibatch, naive_minibatch, skip_unless_slow

BASELINE = "broadcast_mws"
BROADCASTING = (BASELINE, "iwae")  # hold a B x B x D (B x k x D) tensor: the memory limits of bench_kernels
QUICK_TERMS = 7e8  # kernel terms (B x columns x D) run by default


def _estimator_names() -> list[str]:
    try:
        from estimators.registry import ESTIMATORS
        import estimators.log_qz  # noqa: F401  (registers the built-in estimators)
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
    from estimators.log_qz import log_aggregate_posterior
    from estimators.registry import ESTIMATORS

    info = ESTIMATORS.get(estimator)
    field_based = info is not None and info.needs_field
    columns = DATASET_SIZE if estimator == "exact" else B
    skip_unless_slow(float(B) * columns * D > QUICK_TERMS, f"{estimator} at B={B}, D={D} takes seconds")

    leaves = []
    if field_based:
        mu_in, logvar_in = mu, logvar
    else:
        mu_in, logvar_in = mu_b, logvar_b
    if requires_grad:
        z, mu_in, logvar_in = (t.clone().requires_grad_(True) for t in (z, mu_in, logvar_in))
        leaves = [z, mu_in, logvar_in]

    if estimator == BASELINE:
        return (lambda: naive_minibatch(z, mu_in, logvar_in, DATASET_SIZE)), leaves
    if field_based:
        k = B if info.needs_k else None
        seed = 0

        def fn():
            g = torch.Generator().manual_seed(seed)
            return log_aggregate_posterior(z, mu_in, logvar_in, None, estimator, k=k, index=index, generator=g)
    else:
        def fn():
            return log_aggregate_posterior(z, mu_in, logvar_in, DATASET_SIZE, estimator)
    return fn, leaves


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
