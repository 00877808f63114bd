r"""Exact gradients of the full-data quantities with respect to the encoder's parameters theta, with a per-coordinate se.

For a problem (:class:`~estimators.gradients.encoders.EncoderProblem`) the full-data quantities are

    F_mi(theta) = mean_n E_eps [log q(z_n|n) - log q(z_n)],     F_kl_agg = mean_n E [log q(z_n) - log p(z_n)],
    F_tc = mean_n E [log q(z_n) - sum_d log q(z_nd)],             F_dimwise_kl = mean_n E [sum_d log q(z_nd) - log p(z_n)],

with z_n = mu_n(theta) + sigma_n(theta) eps, eps ~ N(0, I), and log q(z), log q(z_d) the exact mixtures over all N
components (the streamed kernels of :mod:`estimators.kernels`, differentiable in z and in every component). Their
gradient is estimated by reparameterised Monte Carlo: ``groups`` independent groups of ``samples`` draws per
component (so every component is drawn: the only noise is the draw of z), autograd through z (pathwise) and through
the mixture's components. The estimate is the mean of the group gradients; the se of each coordinate is their
standard deviation over groups / sqrt(groups).

:func:`finite_difference` gives the independent check for D <= 2: central differences of the quadrature references
(:func:`estimators.exact_references`) along a direction v, with a truncation bound from a Richardson comparison.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import kernels
from ..decompose import QUANTITIES
from ..numerics import log_normal, log_standard_normal
from ..references import exact_references
from .encoders import EncoderProblem

__all__ = ["ExactGradient", "exact_gradient", "finite_difference", "full_data_terms", "references"]


@dataclass(frozen=True)
class ExactGradient:
    r"""The exact gradient of every quantity, from ``groups`` independent groups of draws.

    Attributes:
        groups: dict quantity -> (G, P) gradient of each group (its mean is the estimate).
        values: dict quantity -> (G,) value of the full-data Monte Carlo estimate of the quantity in each group.
        samples: draws per component in one group.
    """

    groups: dict
    values: dict
    samples: int

    @property
    def num_groups(self) -> int:
        return int(next(iter(self.groups.values())).shape[0])

    def grad(self, quantity: str) -> Tensor:
        r"""The estimate: the mean of the group gradients, (P,)."""
        return self.groups[quantity].mean(0)

    def se(self, quantity: str) -> Tensor:
        r"""Per-coordinate standard error of :meth:`grad`, (P,)."""
        return self.groups[quantity].std(0, unbiased=True) / math.sqrt(self.num_groups)

    def directional(self, quantity: str, v: Tensor) -> tuple[float, float]:
        r"""(g . v, its se) from the group gradients (the se of a projection, not of each coordinate)."""
        proj = self.groups[quantity] @ v.to(self.groups[quantity])
        return float(proj.mean()), float(proj.std(unbiased=True) / math.sqrt(self.num_groups))


def _basis(mu: Tensor, logvar: Tensor, eps: Tensor) -> dict[str, Tensor]:
    r"""Means over the S N draws z = mu + sigma eps of log q(z), sum_d log q(z_d), log q(z|n) and log p(z)."""
    S, N, D = eps.shape
    z = (mu + eps * torch.exp(0.5 * logvar)).reshape(S * N, D)
    log_n = math.log(N)
    return {"qz": (kernels.log_mixture(z, mu, logvar) - log_n).mean(),
            "prod": (kernels.log_mixture_marginals(z, mu, logvar) - log_n).sum(1).mean(),
            "own": log_normal(z, mu.repeat(S, 1), logvar.repeat(S, 1)).sum(1).mean(),
            "pz": log_standard_normal(z).mean()}


_NEEDED = {"mi": ("own", "qz"), "kl_agg": ("qz", "pz"), "tc": ("qz", "prod"), "dimwise_kl": ("prod", "pz")}


def full_data_terms(mu: Tensor, logvar: Tensor, eps: Tensor) -> dict[str, Tensor]:
    r"""Full-data Monte Carlo estimates of the four quantities at z = mu + sigma eps (S draws per component).

    ``eps`` is (S, N, D); returns scalars ``mi``, ``kl_agg``, ``tc``, ``dimwise_kl`` differentiable in mu and logvar
    (through z and through the N mixture components).
    """
    if eps.dim() != 3 or tuple(eps.shape[1:]) != tuple(mu.shape):
        raise ValueError(f"eps must have shape (S, N, D) with (N, D) = {tuple(mu.shape)}, got {tuple(eps.shape)}")
    basis = _basis(mu, logvar, eps)
    return {q: basis[a] - basis[b] for q, (a, b) in _NEEDED.items()}


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def exact_gradient(problem: EncoderProblem, *, groups: int = 32, samples: int = 4,
                   generator: torch.Generator | None = None, quantities=QUANTITIES, progress=None) -> ExactGradient:
    r"""The gradient of each full-data quantity w.r.t. theta, from ``groups`` x ``samples`` draws per component.

    Each group draws eps (samples, N, D) from ``generator`` and differentiates :func:`full_data_terms` by autograd
    (one backward pass per basis term: log q, sum_d log q_d, log q(z|n), log p, combined linearly). Cost per group:
    about 2 N^2 samples D kernel terms, forward and backward.

    Args:
        problem: the encoder and data set.
        groups: independent groups (>= 2: the se is their spread).
        samples: draws per component in a group (>= 1).
        generator: torch.Generator of the draws (default: a fresh one seeded 0).
        quantities: a subset of ``("mi", "kl_agg", "tc", "dimwise_kl")``.
        progress: optional callable called once per finished group.

    Raises:
        ValueError: groups < 2, samples < 1, an unknown quantity.
    """
    groups = _check_int("groups", groups, 2)
    samples = _check_int("samples", samples, 1)
    quantities = tuple(quantities)
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown or not quantities:
        raise ValueError(f"quantities must be a non-empty subset of {QUANTITIES}, got {quantities!r}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    out = {q: [] for q in quantities}
    values = {q: [] for q in quantities}
    for _ in range(groups):
        mu, logvar = problem.posteriors()
        eps = torch.randn((samples,) + tuple(mu.shape), generator=generator, dtype=mu.dtype)
        basis = _basis(mu, logvar, eps)
        needed = _NEEDED
        names = [b for b in basis if any(b in needed[q] for q in quantities)]
        grads = {b: problem.flat_grad(basis[b], retain_graph=i < len(names) - 1) for i, b in enumerate(names)}
        for q in quantities:
            plus, minus = needed[q]
            out[q].append(grads[plus] - grads[minus])
            values[q].append(float((basis[plus] - basis[minus]).detach()))
        if progress is not None:
            progress()
    return ExactGradient({q: torch.stack(v) for q, v in out.items()},
                         {q: torch.tensor(v, dtype=torch.float64) for q, v in values.items()}, samples)


def references(mu: Tensor, logvar: Tensor, **kwargs) -> dict:
    r""":func:`estimators.exact_references` without the optional certified brackets where it offers them (the
    values are the same; the brackets' pairwise bounds cost O(N^2) and the studies call it many times)."""
    if "brackets" in inspect.signature(exact_references).parameters:
        kwargs.setdefault("brackets", False)
    return exact_references(mu, logvar, **kwargs)


def _references_at(problem: EncoderProblem, theta: Tensor, **kwargs) -> dict:
    problem.set_flat(theta)
    field = problem.field()
    ref = references(field.mu, field.logvar, **kwargs)
    for q in QUANTITIES:
        if ref[q]["method"] == "mc":
            raise ValueError(f"finite differences need deterministic references (quadrature, D <= 2); "
                             f"{q} of a D = {field.D} field is Monte Carlo")
    return {q: ref[q]["value"] for q in QUANTITIES}


def finite_difference(problem: EncoderProblem, v: Tensor, h: float = 1e-3, **kwargs) -> dict[str, dict]:
    r"""Central differences of the quadrature references of every quantity along ``v`` at the problem's theta.

    Returns, per quantity, ``{"fd": (F(theta + h v) - F(theta - h v)) / 2h, "truncation": |D(2h) - D(h)| / 3}``
    (the Richardson estimate of the O(h^2) truncation error of D(h)) and ``"rounding"``: 1e-9 max |F| / h, a bound
    on the quadrature's error (about 1e-10 relative) carried into the difference. Four reference evaluations;
    ``kwargs`` go to :func:`estimators.exact_references`. theta is restored afterwards.

    Raises:
        ValueError: h not positive, v of the wrong shape, or references that are Monte Carlo (D > 2).
    """
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    theta = problem.get_flat()
    v = torch.as_tensor(v, dtype=torch.float64)
    if v.shape != theta.shape:
        raise ValueError(f"v must have shape {tuple(theta.shape)} (one entry per parameter), got {tuple(v.shape)}")
    try:
        f = {s: _references_at(problem, theta + s * h * v, **kwargs) for s in (-2, -1, 1, 2)}
    finally:
        problem.set_flat(theta)
    out = {}
    for q in QUANTITIES:
        d1 = (f[1][q] - f[-1][q]) / (2 * h)
        d2 = (f[2][q] - f[-2][q]) / (4 * h)
        out[q] = {"fd": d1, "truncation": abs(d2 - d1) / 3.0,
                  "rounding": 1e-9 * max(1.0, *(abs(f[s][q]) for s in f)) / h}
    return out
