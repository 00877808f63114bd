r"""The one thing every estimator of log q(z_i) receives: a :class:`Batch`.

A batch is B samples z_i ~ q(z|n_i) with their own posteriors (row i of ``mu``, ``logvar`` is
q(z|n_i)), the data-set size N and, where the caller has it, the whole field of N posteriors and the
batch's indices into it. Minibatch estimators read the batch's posteriors only; importance and exact
estimators read the field. Callers build it once, through the validated public functions.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["Batch"]


@dataclass(frozen=True)
class Batch:
    r"""Validated inputs of one estimator call (all tensors of one dtype and device).

    Attributes:
        z: samples, (B, D).
        mu, logvar: the batch's own posteriors, (B, D).
        dataset_size: N, or None where the caller gave none and no field.
        field_mu, field_logvar: the whole field, (N, D), or None.
        index: (B,) long, row of each z_i's own posterior in the field, or None.
    """

    z: Tensor
    mu: Tensor
    logvar: Tensor
    dataset_size: int | None = None
    field_mu: Tensor | None = None
    field_logvar: Tensor | None = None
    index: Tensor | None = None

    @property
    def B(self) -> int:
        return int(self.z.shape[0])

    @property
    def D(self) -> int:
        return int(self.z.shape[1])
