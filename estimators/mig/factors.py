r"""The inputs of the MIG computations, checked once: a field of posteriors and its discrete ground-truth factors.

A field of N diagonal-Gaussian posteriors (mu, logvar) (N, D) comes with K factors v_k(n) in {0 .. |V_k| - 1},
an (N, K) integer array (dSprites: shape, scale, orientation, pos_x, pos_y). :func:`check_factors` validates
them and returns a :class:`FactorField`, which also holds each factor's populations {n : v_k(n) = v} (one stable
sort per factor) and its empirical distribution p(v) and entropy H(v_k) = -sum_v p(v) log p(v) (log |V_k| for a
uniform factor, as on a full factor grid).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..validation import as_posteriors

__all__ = ["FactorField", "check_factors", "select_factors"]


@dataclass(frozen=True)
class FactorField:
    r"""A validated field with factors (built by :func:`check_factors`; nothing here is checked again).

    Attributes:
        mu, logvar: (N, D) float64 posterior means and log-variances.
        factors: (N, K) int64 factor values, 0 <= factors[:, k] < sizes[k].
        names: the K factor names.
        sizes: the K numbers of values |V_k| (given, or the largest value + 1).
        populations: populations[k][v] -- the rows n with v_k(n) = v, ascending (empty where v never occurs).
        probabilities: probabilities[k] -- p(v_k = v), (|V_k|,) float64, the empirical distribution.
        entropies: the K factor entropies H(v_k) in nats (of the empirical distribution).
    """

    mu: Tensor
    logvar: Tensor
    factors: Tensor
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    populations: tuple[tuple[Tensor, ...], ...]
    probabilities: tuple[Tensor, ...]
    entropies: tuple[float, ...]

    @property
    def N(self) -> int:
        return int(self.mu.shape[0])

    @property
    def D(self) -> int:
        return int(self.mu.shape[1])

    @property
    def K(self) -> int:
        return int(self.factors.shape[1])


def _as_factor_array(factors) -> Tensor:
    if isinstance(factors, Tensor):
        t = factors.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(factors))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"factors must be an (N, K) array of integers, got {type(factors).__name__}") from exc
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise ValueError(f"factors must be an (N, K) array of integers (factor values 0 .. |V_k| - 1), got dtype "
                         f"{t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"factors must be 2-dimensional (N, K), one column per factor, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def check_factors(mu, logvar, factors, *, factor_names=None, factor_sizes=None) -> FactorField:
    r"""Validate a field of posteriors and its factors for the MIG computations.

    Args:
        mu, logvar: (N, D) posterior means and log-variances, finite, D >= 2 (the MIG compares the two
            latents most informative about each factor).
        factors: (N, K) integer factor values, K >= 1.
        factor_names: K distinct strings (default ``factor0``, ``factor1``, ...).
        factor_sizes: K integers |V_k| >= 2 with every value of factor k in [0, |V_k|) (default: the largest
            value + 1).

    Returns:
        :class:`FactorField`, float64.

    Raises:
        ValueError: naming the argument: a wrong shape or dtype, NaN or infinite posteriors, N of ``factors``
            different from N of ``mu``, a factor value out of range, a factor taking a single value (H(v_k) = 0:
            its MIG term is undefined), names or sizes of the wrong length or kind.
    """
    try:
        mu, logvar = as_posteriors(mu, logvar)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    N, D = mu.shape
    if N == 0:
        raise ValueError("mu and logvar must hold at least one posterior (N >= 1), got N = 0")
    if D < 2:
        raise ValueError(f"mu and logvar must have at least 2 latent dimensions (the MIG is a gap between the two "
                         f"latents most informative about a factor), got D = {D}")
    f = _as_factor_array(factors)
    if f.shape[0] != N:
        raise ValueError(f"factors must have one row per posterior: N = {N} rows (as mu), got {f.shape[0]}")
    K = f.shape[1]
    if K == 0:
        raise ValueError("factors must have at least one column (K >= 1 factors), got shape (N, 0)")
    if bool((f < 0).any()):
        k = int((f < 0).any(0).nonzero()[0])
        raise ValueError(f"factors must be >= 0 (values 0 .. |V_k| - 1); column {k} holds {int(f[:, k].min())}")
    if factor_sizes is None:
        sizes = tuple(int(s) + 1 for s in f.amax(0))
    else:
        sizes = _sizes(factor_sizes, K)
        for k, size in enumerate(sizes):
            top = int(f[:, k].max())
            if top >= size:
                raise ValueError(f"factors column {k} holds the value {top}, out of range for factor_sizes[{k}] = "
                                 f"{size} (values must lie in 0 .. {size - 1})")
    names = _names(factor_names, K)
    populations, probabilities, entropies = [], [], []
    for k in range(K):
        counts = torch.bincount(f[:, k], minlength=sizes[k])
        if int((counts > 0).sum()) < 2:
            raise ValueError(f"factors column {k} ({names[k]!r}) takes a single value: H(v_k) = 0 and its MIG term "
                             f"(I_(1) - I_(2)) / H(v_k) is undefined; leave that factor out")
        order = torch.argsort(f[:, k], stable=True)  # ascending rows within each value
        populations.append(tuple(torch.split(order, counts.tolist())))
        p = counts.to(torch.float64) / N
        probabilities.append(p)
        nz = p[p > 0]
        entropies.append(float(-(nz * torch.log(nz)).sum()))
    return FactorField(mu.to(torch.float64), logvar.to(torch.float64), f, names, sizes, tuple(populations),
                       tuple(probabilities), tuple(entropies))


def _sizes(factor_sizes, K: int) -> tuple[int, ...]:
    values = list(factor_sizes.tolist() if isinstance(factor_sizes, (Tensor, np.ndarray)) else factor_sizes)
    if len(values) != K:
        raise ValueError(f"factor_sizes must hold K = {K} integers (one per factors column), got {len(values)}")
    out = []
    for k, s in enumerate(values):
        if isinstance(s, bool) or not float(s).is_integer() or s < 2:
            raise ValueError(f"factor_sizes must be integers >= 2, got factor_sizes[{k}] = {s!r}")
        out.append(int(s))
    return tuple(out)


def _names(factor_names, K: int) -> tuple[str, ...]:
    if factor_names is None:
        return tuple(f"factor{k}" for k in range(K))
    values = [str(x) for x in (factor_names.tolist() if isinstance(factor_names, np.ndarray) else factor_names)] \
        if not isinstance(factor_names, str) else None
    if values is None or len(values) != K:
        raise ValueError(f"factor_names must be K = {K} strings (one per factors column), got {factor_names!r}")
    if len(set(values)) != K or any(not v for v in values):
        raise ValueError(f"factor_names must be distinct non-empty strings, got {values}")
    return tuple(values)


def select_factors(field: FactorField, factors_in_mig) -> tuple[int, ...]:
    r"""Indices of the factors the MIG averages over: all (None), or names / column indices of ``field``.

    Raises:
        ValueError: naming ``factors_in_mig``: an unknown name, an index out of range, a repeat, or none.
    """
    if factors_in_mig is None:
        return tuple(range(field.K))
    if isinstance(factors_in_mig, (str, int)):
        factors_in_mig = [factors_in_mig]
    out = []
    for item in factors_in_mig:
        if isinstance(item, str):
            if item not in field.names:
                raise ValueError(f"factors_in_mig: unknown factor {item!r}; factors are {list(field.names)}")
            out.append(field.names.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= int(item) < field.K:
            out.append(int(item))
        else:
            raise ValueError(f"factors_in_mig must hold factor names or column indices 0 .. {field.K - 1}, "
                             f"got {item!r}")
    if not out or len(set(out)) != len(out):
        raise ValueError(f"factors_in_mig must name at least one factor, each once, got {list(factors_in_mig)}")
    return tuple(out)

