r"""The public entry point :func:`log_aggregate_posterior`: validate once, build the batch, dispatch.

This is the boundary of the log q(z) stage: every argument is checked here (shapes and types always,
values unless :func:`estimators.set_validate_args` turned that off), then the registered
implementation receives a :class:`~estimators.log_qz.batch.Batch` and trusts it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..posteriors import Posteriors
from ..validation import as_float_tensor, as_int, check_finite, validating
from .batch import Batch
from .importance import PROPOSALS
from .registry import EstimatorInfo, get_estimator

__all__ = ["log_aggregate_posterior", "prepare", "FLOAT32_MAX_ABS_LOGVAR", "MAX_ABS_LOGVAR"]


def _check_index(index, B: int, N: int, device) -> Tensor:
    if not isinstance(index, Tensor):
        try:
            index = torch.as_tensor(index)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"index must be a tensor of integer indices, got {type(index).__name__}") from exc
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"index must hold integers (torch.long), got {index.dtype}")
    if index.shape != (B,):
        raise ValueError(f"index must have shape (B,) = ({B},), one own component per row of z, got {tuple(index.shape)}")
    if validating() and B and (int(index.min()) < 0 or int(index.max()) >= N):
        raise ValueError(f"index values must lie in [0, N) = [0, {N}), got min {int(index.min())} and max {int(index.max())}")
    return index.to(device=device, dtype=torch.long)


FLOAT32_MAX_ABS_LOGVAR = 80.0  # exp(88.7) overflows float32: the precision exp(-logvar) must stay finite
MAX_ABS_LOGVAR = 700.0  # and exp(709.8) overflows float64


def _compute_dtype(dtype: torch.dtype, *logvars) -> torch.dtype:
    """``dtype``, or float64 where a float32 logvar is beyond what float32 can exponentiate; a clear
    error beyond float64 (reads the values: only while validation is on)."""
    if not validating():
        return dtype
    largest = max(float(lv.detach().abs().max()) for lv in logvars if lv is not None)
    if largest > MAX_ABS_LOGVAR:
        raise ValueError(f"logvar must lie in [-{MAX_ABS_LOGVAR:g}, {MAX_ABS_LOGVAR:g}] (exp(-logvar) overflows "
                         f"float64 beyond), got |logvar| up to {largest:g}")
    return torch.float64 if torch.finfo(dtype).bits <= 32 and largest > FLOAT32_MAX_ABS_LOGVAR else dtype


def _field_size(field) -> int:
    """N of a field given as a Posteriors or a pair (mu, logvar)."""
    if isinstance(field, Posteriors):
        return field.N
    try:
        return int(field[0].shape[0])
    except (TypeError, IndexError, AttributeError):
        raise TypeError(f"field must be a Posteriors or a pair (mu, logvar) of (N, D) tensors, "
                        f"got {type(field).__name__}") from None


def _field(field, D: int) -> tuple[Tensor, Tensor]:
    """(mu, logvar) of the whole field from a Posteriors (validated at construction) or a pair."""
    if isinstance(field, Posteriors):
        mu, logvar = field.mu, field.logvar
    else:
        try:
            mu, logvar = field
        except (TypeError, ValueError):
            raise TypeError(f"field must be a Posteriors or a pair (mu, logvar) of (N, D) tensors, "
                            f"got {type(field).__name__}") from None
        mu = as_float_tensor("field mu", mu, ndim=2)
        logvar = as_float_tensor("field logvar", logvar, ndim=2)
        if mu.shape != logvar.shape:
            raise ValueError(f"field mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
        check_finite("field mu", mu)
        check_finite("field logvar", logvar)
    if mu.shape[1] != D or mu.shape[0] == 0:
        raise ValueError(f"field must be (N, D) with N >= 1 and D = {D} (that of z), got {tuple(mu.shape)}")
    return mu, logvar


def prepare(z, mu, logvar, dataset_size, estimator, *, field=None, index=None, k=None,
            proposal: str = "uniform") -> tuple[EstimatorInfo, Batch, dict, torch.dtype]:
    r"""Validate the arguments of :func:`log_aggregate_posterior`; return the record, the batch, the
    options for the implementation (all but ``generator`` and ``marginals``) and the result dtype.

    The batch is promoted to float64 when a float32 logvar lies beyond +-:data:`FLOAT32_MAX_ABS_LOGVAR`
    (exp(-logvar) would overflow float32 and give NaN); results are cast back to the result dtype.
    Beyond +-:data:`MAX_ABS_LOGVAR` no dtype can carry it: a ValueError."""
    info = get_estimator(estimator)
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    z = as_float_tensor("z", z, ndim=2)
    mu = as_float_tensor("mu", mu, ndim=2)
    logvar = as_float_tensor("logvar", logvar, ndim=2)
    (B, D) = z.shape
    if mu.shape != z.shape or logvar.shape != z.shape:
        raise ValueError(
            f"mu and logvar must be the batch's own posteriors, one row per row of z (B, D) = {(B, D)}, "
            f"got {tuple(mu.shape)} and {tuple(logvar.shape)}; pass the whole data set's posteriors as field=")
    if B == 0 or D == 0:
        raise ValueError(f"z must hold at least one sample with at least one dimension, got shape {(B, D)}")
    for name, t in (("z", z), ("mu", mu), ("logvar", logvar)):
        check_finite(name, t)
    field_mu = field_logvar = None
    if field is not None and info.needs_field:  # minibatch estimators ignore the field: nothing to check
        field_mu, field_logvar = _field(field, D)
    dtype = torch.promote_types(torch.promote_types(z.dtype, mu.dtype), logvar.dtype)
    if field_mu is not None:
        dtype = torch.promote_types(torch.promote_types(dtype, field_mu.dtype), field_logvar.dtype)
    out_dtype = dtype
    dtype = _compute_dtype(dtype, logvar, field_logvar)  # float32 beyond its range: computed in float64
    if field_mu is not None:
        field_mu, field_logvar = field_mu.to(dtype), field_logvar.to(dtype)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)

    N = None if dataset_size is None else as_int("dataset_size", dataset_size)
    if field is not None:
        size = _field_size(field)
        if N is not None and N != size:
            raise ValueError(f"dataset_size must equal the field's N = {size} (or be None), got {N}")
        N = size
    if N is not None and N < B and not info.needs_field:  # a field may serve more samples than it has components
        raise ValueError(f"dataset_size must be at least the batch size (distinct indices), got N = {N} < B = {B}")
    if N is None and info.needs_dataset_size:
        raise ValueError(f"estimator {info.name!r} needs dataset_size (N, the number of points in the dataset)")
    if B < info.min_batch:
        raise ValueError(f"estimator {info.name!r} needs a batch of at least {info.min_batch} samples "
                         f"(M = B - 1 >= 1), got B = {B}")
    if info.needs_field and field_mu is None:
        raise ValueError(f"estimator {info.name!r} reads the whole data set: pass field= (a Posteriors or "
                         "(mu, logvar) of all N points) and index= (the (B,) row of each z_i in it)")
    if index is not None and field is None:
        raise ValueError("index needs field=, the whole data set's posteriors it indexes into")
    if index is not None and info.needs_field:
        index = _check_index(index, B, N, z.device)
    elif info.needs_field and info.needs_k and proposal == "own":
        raise ValueError("proposal 'own' needs index, the (B,) own component of each z_i in the field")
    if info.needs_k:
        if k is None:
            raise ValueError(f"estimator {info.name!r} needs k, the number of importance samples (k >= 1)")
        k = as_int("k", k, 1)
    batch = Batch(z, mu, logvar, N, field_mu, field_logvar, index)
    return info, batch, {"k": k, "proposal": proposal}, out_dtype


def log_aggregate_posterior(z, mu, logvar, dataset_size=None, estimator: str = "mss", *, field=None, index=None,
                            k=None, proposal: str = "uniform", generator: torch.Generator | None = None,
                            marginals: bool = True) -> tuple[Tensor, Tensor | None]:
    r"""Estimate log q(z_i) and every log q(z_id) for samples z_i ~ q(z|n_i).

    q(z) = (1/N) sum_n Normal(z; mu_n, diag exp(logvar_n)) is the aggregate posterior and q(z_d)
    its marginals. The estimators and their formulas are listed in ``docs/maths.md`` and
    :data:`estimators.ESTIMATORS`; ``"mws"`` and ``"mss"`` follow Chen et al. (2018), ``"iwae"``
    Burda et al. (2016). Differentiable in ``z``, ``mu``, ``logvar`` (and the field); float32 and
    float64; returns the common dtype of the inputs.

    Every estimator takes the same arguments: ``mu``, ``logvar`` are always the batch's own
    posteriors (B, D), row i being the component z_i was drawn from (the batch: B distinct indices
    drawn uniformly without replacement from N). Estimators that read the whole data set
    (``iwae``, ``exact``) also need ``field`` (all N posteriors) and ``index`` (each z_i's row in it;
    ``iwae`` with the proposal ``uniform`` does not use it); the minibatch estimators ignore both.

    Args:
        z: samples, (B, D).
        mu, logvar: the batch's own posterior means and log-variances, (B, D).
        dataset_size: N, the number of points in the dataset (default: the field's N, if given).
            Required by ``mws``, ``mss``, ``stratified`` and the mss variants; must be >= B.
        estimator: a name in :data:`estimators.ESTIMATORS`.
        field: the whole data set's posteriors: a :class:`~estimators.Posteriors` or ``(mu, logvar)``, (N, D).
        index: (B,) long, row of each z_i's own posterior in ``field``.
        k: number of importance samples (``iwae`` only; required there, k >= 1).
        proposal: ``"uniform"`` (k indices iid uniform on 0..N-1, drawn independently of the
            batch) or ``"own"`` (the own component with weight 1/N plus (N-1)/N times the mean
            over k indices drawn uniformly from the N - 1 others); ``iwae`` only.
        generator: torch.Generator for the ``iwae`` draws (``torch.randint`` of shape (B, k)).
        marginals: if False, skip the marginals (about D times the work) and return None for them.

    Returns:
        ``(log_qz, log_qz_dims)``: (B,) and (B, D) tensors (``log_qz_dims`` None if not ``marginals``).

    Raises:
        ValueError: unknown estimator (the message lists the known ones) or proposal; shapes that
            disagree; non-finite values; B below the estimator's minimum (2 for ``mss``,
            ``stratified``, ``loo`` and the mss variants); dataset_size < B or missing where
            required; k missing or < 1; field or index missing where needed, or index out of range.
        TypeError: non-float tensors, non-integer sizes or index.

    Example::

        >>> mu, logvar = torch.randn(256, 10), torch.zeros(256, 10)
        >>> z = mu + torch.randn(256, 10)
        >>> log_qz, log_qz_dims = log_aggregate_posterior(z, mu, logvar, 60000, "mss")
    """
    info, batch, options, out_dtype = prepare(z, mu, logvar, dataset_size, estimator, field=field, index=index, k=k,
                                              proposal=proposal)
    log_qz, dims = info.implementation(batch, generator=generator, marginals=bool(marginals), **options)
    return log_qz.to(out_dtype), (None if dims is None else dims.to(out_dtype))
