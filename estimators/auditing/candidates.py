r"""What a user's function may compute: every registered minibatch estimator and the known mutations.

A :class:`Candidate` is a formula with its words, its bug (None for a correct estimator) and the
estimator to use instead. Its values on a fixture are computed in float64 from the fixture's
inputs: per-sample log q^(z_i) and sum_d log q^(z_id), and the four quantities.

* Registered estimators: every minibatch entry of :data:`estimators.ESTIMATORS` (the correct ones
  and the published variants, bugs included); the importance and exact families read the whole data
  set, which a ``(z, mu, logvar, dataset_size)`` function cannot see.
* Mutations: the bugs found in copies of the published code that no replica covers yet -- a
  correct weight matrix applied once per dimension (the joint gets D log W), the own weight put in
  column 0 instead of on the diagonal, the weight matrix transposed, and the logsumexp taken over
  the wrong axis of the pairwise matrix (over the samples i instead of the components j).

Everything else (a dropped or extra constant, a missing dataset size) is an offset of one of
these, found by :mod:`.matching`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .. import kernels
from ..decompose import decompose
from ..log_qz import ESTIMATORS
from ..log_qz.weights import cached_log_weights
from ..numerics import log_normal, log_standard_normal, logsumexp
from .fixtures import Fixture

__all__ = ["Candidate", "candidates", "evaluate", "BUGS", "CORRECT_FIX"]

# What is wrong with each registered published variant, and what to use instead.
BUGS = {
    "mss_shipped": ("the MSS weight matrix is filled with the wrong stride: W.view(-1)[::M+1] steps a whole row "
                    "(M + 1 = B), so the own weight 1/N lands in column 0 of every row instead of on the diagonal, "
                    "and the stratum weight in column 1", "mss"),
    "mss_per_dim": ("the (shipped) log weight matrix is added to every dimension's log-density before the sum over d, "
                    "so the joint receives D log W_ij instead of log W_ij", "mss"),
    "tc_no_constant": ("no normalising constant at all: TC is the mws TC minus (D - 1) log(N B)", "mss"),
    "hfvae": ("the own term is divided by (N - 1)/(B - 1) and the mean is taken over B: log q(z) and every "
              "log q(z_d) are off by log(N (B - 1) / (B (N - 1))), so mi and tc are too high and dimwise_kl "
              "too low", "stratified"),
}
CORRECT_FIX = "mss"  # the estimator recommended for a loss where nothing better is named


@dataclass(frozen=True)
class Candidate:
    r"""A formula a user's function may compute.

    Attributes:
        name: the registry name, or ``<base>:<mutation>`` for a mutation.
        words: what it computes, in a sentence.
        formula: log q^(z_i) (and the marginals) as a formula (None where ``words`` already gives it).
        bug: what is wrong with it, or None for a correct estimator.
        fix: the registered estimator to use instead (None where it is correct).
        registered: an entry of :data:`estimators.ESTIMATORS`.
        quantities: the quantities it defines.
        values: ``f(fixture) -> dict`` of float64 tensors: ``log_qz`` and ``log_prod_qz`` (B,),
            ``log_dims`` (B, D), scalars ``mi``, ``kl_agg``, ``tc``, ``dimwise_kl``.
    """

    name: str
    words: str
    formula: str
    bug: str | None
    fix: str | None
    registered: bool
    quantities: tuple[str, ...]
    values: Callable[[Fixture], dict]


def _f64(fx: Fixture) -> tuple[Tensor, Tensor, Tensor]:
    return fx.z.to(torch.float64), fx.mu.to(torch.float64), fx.logvar.to(torch.float64)


def _quantities(z, mu, logvar, log_qz, log_qz_dims) -> dict:
    own = log_normal(z, mu, logvar).sum(1)
    prior = log_standard_normal(z)
    prod = log_qz_dims.sum(1)
    return {"log_qz": log_qz, "log_prod_qz": prod, "log_dims": log_qz_dims, "mi": (own - log_qz).mean(),
            "kl_agg": (log_qz - prior).mean(),
            "tc": (log_qz - prod).mean(), "dimwise_kl": (prod - prior).mean()}


def _registered(name: str) -> Callable[[Fixture], dict]:
    def values(fx: Fixture) -> dict:
        z, mu, logvar = _f64(fx)
        with torch.no_grad():
            t = decompose(z, mu, logvar, fx.N, name)
        out = _quantities(z, mu, logvar, t["log_qz"], t["log_qz_dims"])
        out["mi"] = t["mi"]  # calc_mi's analytic own term
        return out

    return values


def _weighted(joint_weights: Callable, marginal_weights: Callable) -> Callable[[Fixture], dict]:
    r"""Values of LSE_j (L_ij + joint W_ij) and LSE_j (L_ijd + marginal W_ij); weights(fx) -> (B, B)."""
    def values(fx: Fixture) -> dict:
        z, mu, logvar = _f64(fx)
        with torch.no_grad():
            log_qz = kernels.joint_lse(z, mu, logvar, bias=joint_weights(fx))
            dims = kernels.marginal_lse(z, mu, logvar, bias=marginal_weights(fx))
        return _quantities(z, mu, logvar, log_qz, dims)

    return values


def _wrong_axis(log_weight: Callable[[Fixture], float]) -> Callable[[Fixture], dict]:
    r"""Values of LSE_i (L_ij) + c: the pairwise matrix reduced over the samples, not the components."""
    def values(fx: Fixture) -> dict:
        z, mu, logvar = _f64(fx)
        with torch.no_grad():
            c = log_weight(fx)
            log_qz = logsumexp(kernels.log_normal_matrix(z, mu, logvar), 0) + c
            per_dim = (kernels.log_normal_matrix(z[:, d:d + 1], mu[:, d:d + 1], logvar[:, d:d + 1]) for d in range(fx.D))
            dims = torch.stack([logsumexp(L, 0) for L in per_dim], 1) + c
        return _quantities(z, mu, logvar, log_qz, dims)

    return values


def _matrix(kind: str) -> Callable[[Fixture], Tensor]:
    return lambda fx: cached_log_weights(kind, fx.B, fx.N, torch.float64)


def _own_in_column_0(kind: str) -> Callable[[Fixture], Tensor]:
    r"""Row i of the matrix of ``kind`` rotated so that its own entry (i, i) sits in column 0."""
    def weights(fx: Fixture) -> Tensor:
        W = cached_log_weights(kind, fx.B, fx.N, torch.float64)
        cols = (torch.arange(fx.B)[None, :] + torch.arange(fx.B)[:, None]) % fx.B  # out[i, j] = W[i, (i + j) % B]
        return torch.gather(W, 1, cols)

    return weights


def _constant(value: Callable[[Fixture], float]) -> Callable[[Fixture], Tensor]:
    return lambda fx: torch.full((fx.B, fx.B), value(fx), dtype=torch.float64)


def _mws(fx: Fixture) -> float:
    return -math.log(fx.N * fx.B)


def _naive(fx: Fixture) -> float:
    return -math.log(fx.B)


def _times_d(weights: Callable[[Fixture], Tensor]) -> Callable[[Fixture], Tensor]:
    return lambda fx: weights(fx) * float(fx.D)


def _mutations() -> list[Candidate]:
    quantities = ("mi", "kl_agg", "tc", "dimwise_kl")
    per_dim = ("a correct weight applied once per dimension: the log weight is added to every L_ijd before the sum "
               "over d, so the joint receives D log W_ij")
    column_0 = ("the own weight is put in column 0 of every row instead of on the diagonal (row i's own component "
                "is column i of the pairwise matrix)")
    transposed = "the weight matrix is transposed (W_ji used for sample i): the stratum weight falls below the diagonal"
    axis = ("the logsumexp is taken over the wrong axis of the pairwise matrix L_ij = log q(z_i|n_j): over the "
            "samples i instead of the components j")
    out = []
    for base, weights, formula in (("mws", _constant(_mws), "-log(N B)"),
                                   ("mss", _matrix("mss"), "log W^mss_ij"),
                                   ("stratified", _matrix("stratified"), "log W^strat_ij")):
        out.append(Candidate(f"{base}:weights_per_dim", f"{base} with its weights applied once per dimension",
                             f"log q^(z_i) = LSE_j (L_ij + D {formula}); log q^(z_id) = LSE_j (L_ijd + {formula})",
                             per_dim, base, False, quantities, _weighted(_times_d(weights), weights)))
    for base in ("mss", "stratified"):
        w = _own_in_column_0(base)
        out.append(Candidate(f"{base}:own_weight_in_column_0", f"{base} with the own weight in column 0",
                             f"log q^(z_i) = LSE_j (L_ij + log W^{base}_(i, (i + j) mod B))", column_0, base, False,
                             quantities, _weighted(w, w)))
    t = (lambda fx: cached_log_weights("mss", fx.B, fx.N, torch.float64).T)
    out.append(Candidate("mss:transposed_weights", "mss with the weight matrix transposed",
                         "log q^(z_i) = LSE_j (L_ij + log W^mss_ji)", transposed, "mss", False, quantities,
                         _weighted(t, t)))
    for base, c, formula in (("naive", _naive, "- log B"), ("mws", _mws, "- log(N B)")):
        out.append(Candidate(f"{base}:wrong_axis", f"{base} reduced over the wrong axis",
                             f"log q^(z_j) = LSE_i L_ij {formula} (a sum over samples, not components)", axis, base,
                             False, quantities, _wrong_axis(c)))
    return out


def candidates() -> list[Candidate]:
    r"""Every candidate formula: the registered minibatch estimators first, then the mutations."""
    out = []
    for name, info in ESTIMATORS.items():
        if info.family != "minibatch":
            continue
        bug, fix = BUGS.get(name, (None, None))
        out.append(Candidate(name, info.description, None, bug, fix, True, info.quantities, _registered(name)))
    return out + _mutations()


def evaluate(candidate: Candidate, fixtures: list[Fixture]) -> list[dict]:
    r"""The candidate's values on every fixture (float64; the minimum batch of each estimator is 2).

    A fixture's two dtypes carry the same numbers, so each (batch, N) is evaluated once."""
    done: dict[tuple[int, int], dict] = {}
    out = []
    for fx in fixtures:
        key = (fx.group, fx.N)
        if key not in done:
            done[key] = candidate.values(fx)
        out.append(done[key])
    return out
