r"""The exact log q(z_i): the logsumexp over all N components of the field, minus log N.

Not a minibatch estimator (it reads the whole field, N kernel terms per sample); it is the gold
standard the benchmark measures the others against, and differentiable like them.
"""
from __future__ import annotations

import math

from .. import kernels
from .batch import Batch
from .registry import register_estimator


@register_estimator("exact", family="exact", unbiased_inside=True,
                    citation="the full mixture: LSE over all N components - log N (streamed kernels)")
def _exact(batch: Batch, *, marginals, **unused):
    r"""Exact: log (1/N) sum_n q(z_i|n), and likewise for each marginal."""
    log_n = math.log(batch.field_mu.shape[0])
    log_qz = kernels.joint_lse(batch.z, batch.field_mu, batch.field_logvar) - log_n
    dims = kernels.marginal_lse(batch.z, batch.field_mu, batch.field_logvar) - log_n if marginals else None
    return log_qz, dims
