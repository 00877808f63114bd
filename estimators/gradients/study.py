r"""Gradients of the minibatch estimates a user back-propagates, and how far they are from the exact gradient.

For an estimator, a batch size B and R replicates: replicate r draws B distinct indices uniformly without
replacement and one eps per row (common random numbers: every estimator sees the same batches, seeded by SHA-256
of the seed, the field, B and r), encodes the batch (``iwae`` and ``exact`` encode the whole data set, the field
they read), forms z = mu + sigma eps, calls :func:`estimators.decompose` and differentiates each quantity w.r.t.
theta. :func:`gradient_metrics` compares the R gradients g^_r with the exact gradient g
(:func:`estimators.gradients.exact.exact_gradient`, G group gradients h_k):

* ``rel_bias`` = ||E g^ - g|| / ||g|| (and ``rel_bias_sq``, its square before the clip at 0: unbiased, roughly
  normal, so the statistic to test "no bias" with; the bootstrap se of the square root is unreliable near 0),
* ``cos_mean`` = cos(E g^, g) and ``norm_ratio`` = ||E g^|| / ||g|| (together: whether the bias turns the mean
  gradient or only rescales it, which a step size or the penalty's weight would absorb),
* ``cos_single`` = mean_r cos(g^_r, g) (what one optimisation step sees),
* ``snr`` = ||E g^|| / sqrt(E ||g^ - E g^||^2),
* ``rel_rmse`` = sqrt(E ||g^ - g||^2) / ||g||.

Squared norms of sample means are debiased for their noise: ||E g^||^2 by ||m||^2 - tr S / R (S the sample
covariance of the g^_r, ddof 1), ||g||^2 by ||ḡ||^2 - sum_j se_j^2, ||E g^ - g||^2 by ||m - ḡ||^2 - tr S / R -
sum_j se_j^2 (clipped at 0); so a rel_bias of 0 means "no bias detectable", not a floor set by R. Every metric is a
function of the Gram matrices of the g^_r and h_k, so its se is a bootstrap (default 200 resamples) of the
replicates and of the exact gradient's groups together, computed from the Gram matrices in O(R^2 + G^2) each.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..decompose import QUANTITIES, decompose
from ..log_qz.registry import get_estimator
from .encoders import EncoderProblem

__all__ = ["threads", "EstimatorGradients", "estimator_gradients", "gradient_metrics", "replicate_generator", "METRICS",
           "same_gradient"]

METRICS = ("rel_bias", "rel_bias_sq", "cos_mean", "norm_ratio", "cos_single", "snr", "rel_rmse")


@contextlib.contextmanager
def threads(n: int | None):
    r"""Run the block with ``torch.set_num_threads(n)`` (restored afterwards); None leaves it alone.

    The studies default to one thread: their kernels are small (a batch against a batch, or N = 2048 components),
    where a second OpenMP thread gains little and, on a shared machine, spinning threads cost up to 10x."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def replicate_generator(seed: int, field: str, batch_size: int, replicate: int) -> torch.Generator:
    r"""The generator of one replicate: seeded by SHA-256 of (seed, field, B, r), whatever else runs."""
    key = f"gradients|{seed}|{field}|{batch_size}|{replicate}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)


@dataclass(frozen=True)
class EstimatorGradients:
    r"""R replicate gradients of every quantity's minibatch estimate.

    Attributes:
        grads: dict quantity -> (R, P) float64, row r the gradient of replicate r.
        values: dict quantity -> (R,) the estimates themselves.
        seconds_per_call: mean wall time of one replicate: encoding, one :func:`estimators.decompose` call and
            one backward pass per quantity.
    """

    grads: dict
    values: dict
    seconds_per_call: float


def estimator_gradients(problem: EncoderProblem, estimator: str, batch_size: int, *, replicates: int, k=None,
                        seed: int = 0, quantities=QUANTITIES) -> EstimatorGradients:
    r"""The gradient w.r.t. theta of each quantity's minibatch estimate over ``replicates`` seeded batches.

    Args:
        problem: the encoder and its data set (N points).
        estimator: a name in :data:`estimators.ESTIMATORS`.
        batch_size: B, with min_batch <= B <= N.
        replicates: R >= 2.
        k: importance samples (estimators with ``needs_k`` only; required there).
        seed: global seed of the replicate batches (:func:`replicate_generator`).
        quantities: subset of ``("mi", "kl_agg", "tc", "dimwise_kl")``.

    Raises:
        ValueError: an unknown estimator or quantity, B out of range, R < 2, k missing where needed.
    """
    info = get_estimator(estimator)
    N = problem.N
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not max(info.min_batch, 1) <= batch_size <= N:
        raise ValueError(f"batch_size must be an int in [{max(info.min_batch, 1)}, N = {N}] for {estimator!r}, "
                         f"got {batch_size!r}")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates must be an int >= 2, got {replicates!r}")
    quantities = tuple(quantities)
    if not quantities or any(q not in QUANTITIES for q in quantities):
        raise ValueError(f"quantities must be a non-empty subset of {QUANTITIES}, got {quantities!r}")
    if info.needs_k and k is None:
        raise ValueError(f"estimator {estimator!r} needs k, the number of importance samples")
    grads = {q: [] for q in quantities}
    values = {q: [] for q in quantities}
    elapsed = 0.0
    D = problem.D
    for r in range(replicates):
        g = replicate_generator(seed, problem.name, batch_size, r)
        index = torch.randperm(N, generator=g)[:batch_size]
        eps = torch.randn(batch_size, D, generator=g, dtype=torch.float64)
        start = time.perf_counter()
        if info.needs_field:
            field_mu, field_logvar = problem.posteriors()
            mu, logvar = field_mu[index], field_logvar[index]
            extra = {"field": (field_mu, field_logvar), "index": index}
        else:
            mu, logvar = problem.posteriors(index)
            extra = {}
        z = mu + eps * torch.exp(0.5 * logvar)
        terms = decompose(z, mu, logvar, N, estimator, k=k if info.needs_k else None, generator=g, **extra)
        for q, grad in _quantity_grads(problem, terms, quantities).items():
            grads[q].append(grad)
            values[q].append(float(terms[q].detach()))
        elapsed += time.perf_counter() - start
    return EstimatorGradients({q: torch.stack(v) for q, v in grads.items()},
                              {q: torch.tensor(v, dtype=torch.float64) for q, v in values.items()},
                              elapsed / replicates)


# each quantity as (plus, minus) of four batch means: the log q^ and log prod_d q^_d terms each go through one
# kernel, so their two backward passes replace the five kernel backward passes of the four quantities
_BASIS = {"mi": ("own", "qz"), "kl_agg": ("qz", "pz"), "tc": ("qz", "prod"), "dimwise_kl": ("prod", "pz")}


def _quantity_grads(problem: EncoderProblem, terms: dict, quantities) -> dict[str, Tensor]:
    r"""d quantity / d theta for each quantity of a :func:`estimators.decompose` result.

    The quantities are differences of four batch means (log q^(z_i), sum_d log q^(z_id), log p(z_i) and mi's own
    term mi_i + log q^(z_i), whatever the estimator uses there), so their gradients are differences of four
    gradients. The recombination is checked against the returned values; where it does not hold (an estimator
    defining a quantity otherwise) each quantity is differentiated directly."""
    basis = {"qz": terms["log_qz"].mean(), "prod": terms["log_qz_dims"].sum(1).mean(), "pz": terms["log_pz"].mean(),
             "own": (terms["mi_terms"] + terms["log_qz"]).mean()}
    exact = all(abs(float((basis[a] - basis[b] - terms[q]).detach())) <= 1e-9 * (1 + abs(float(terms[q].detach())))
                for q in quantities for a, b in [_BASIS[q]])
    if not exact:
        return {q: problem.flat_grad(terms[q], retain_graph=i < len(quantities) - 1) for i, q in enumerate(quantities)}
    names = [b for b in basis if any(b in _BASIS[q] for q in quantities)]
    g = {b: problem.flat_grad(basis[b], retain_graph=i < len(names) - 1) for i, b in enumerate(names)}
    return {q: g[_BASIS[q][0]] - g[_BASIS[q][1]] for q in quantities}


def _safe_sqrt(x: Tensor) -> Tensor:
    return torch.sqrt(torch.clamp(x, min=0.0))


def _statistics(w: Tensor, u: Tensor, K: Tensor, C: Tensor, H: Tensor) -> dict[str, Tensor]:
    r"""The metrics for weights w (b, R) over replicates and u (b, G) over groups (rows sum to 1)."""
    R, G = K.shape[0], H.shape[0]
    dK, dH = K.diagonal(), H.diagonal()
    mm = torch.einsum("br,rs,bs->b", w, K, w)  # ||m||^2
    Cu = u @ C.T  # (b, R): g^_r . ḡ
    mg = (w * Cu).sum(1)
    gg = torch.einsum("bg,gh,bh->b", u, H, u)
    tr = (w @ dK - mm) * R / (R - 1)  # tr of the replicates' sample covariance: E ||g^ - E g^||^2
    sg = (u @ dH - gg) / (G - 1)  # sum_j se_j^2 of ḡ
    gg_d = gg - sg
    mm_d = mm - tr / R
    norm_g = _safe_sqrt(gg_d)
    nan = torch.full_like(gg, float("nan"))
    ok = gg_d > 0
    bias2 = mm - 2 * mg + gg - tr / R - sg
    rmse2 = w @ dK - 2 * mg + gg - sg
    cos_mean = torch.clamp(mg / (_safe_sqrt(mm_d) * norm_g), -1.0, 1.0)
    cos_single = (w * Cu / (torch.sqrt(dK).clamp_min(1e-300) * norm_g[:, None])).sum(1)
    return {
        "rel_bias": torch.where(ok, _safe_sqrt(bias2) / norm_g, nan),
        "rel_bias_sq": torch.where(ok, bias2 / gg_d, nan),
        "cos_mean": torch.where(ok & (mm_d > 0), cos_mean, nan),
        "norm_ratio": torch.where(ok, _safe_sqrt(mm_d) / norm_g, nan),
        "cos_single": torch.where(ok, torch.clamp(cos_single, -1.0, 1.0), nan),
        "snr": torch.where(tr > 0, _safe_sqrt(mm_d) / torch.sqrt(tr.clamp_min(1e-300)), nan),
        "rel_rmse": torch.where(ok, _safe_sqrt(rmse2) / norm_g, nan),
        "exact_grad_norm": _safe_sqrt(gg_d),
        "exact_grad_se": _safe_sqrt(sg),
    }


def gradient_metrics(replicates: Tensor, groups: Tensor, *, boot: int = 200,
                     generator: torch.Generator | None = None) -> dict[str, float]:
    r"""Metrics of R replicate gradients (R, P) against the exact gradient's G group gradients (G, P), with ses.

    Returns a dict with each of :data:`METRICS` and its ``<name>_se`` (the bootstrap sd over ``boot`` joint
    resamples of the replicates and the groups), plus ``exact_grad_norm`` (debiased ||g||) and ``exact_grad_se``
    (the norm of the per-coordinate se of g). Relative metrics are NaN where ||g|| is not positive.

    Raises:
        ValueError: fewer than 2 replicates or groups, mismatched P, boot < 2.
    """
    if replicates.dim() != 2 or groups.dim() != 2 or replicates.shape[1] != groups.shape[1]:
        raise ValueError(f"replicates (R, P) and groups (G, P) must share P, got {tuple(replicates.shape)} and "
                         f"{tuple(groups.shape)}")
    R, G = replicates.shape[0], groups.shape[0]
    if R < 2 or G < 2:
        raise ValueError(f"need at least 2 replicates and 2 groups, got R = {R}, G = {G}")
    if isinstance(boot, bool) or not isinstance(boot, int) or boot < 2:
        raise ValueError(f"boot must be an int >= 2, got {boot!r}")
    reps, grp = replicates.to(torch.float64), groups.to(torch.float64)
    K, C, H = reps @ reps.T, reps @ grp.T, grp @ grp.T
    point = _statistics(torch.full((1, R), 1.0 / R, dtype=torch.float64),
                        torch.full((1, G), 1.0 / G, dtype=torch.float64), K, C, H)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    w = torch.zeros(boot, R, dtype=torch.float64)
    w.scatter_add_(1, torch.randint(R, (boot, R), generator=generator), torch.ones(boot, R, dtype=torch.float64))
    u = torch.zeros(boot, G, dtype=torch.float64)
    u.scatter_add_(1, torch.randint(G, (boot, G), generator=generator), torch.ones(boot, G, dtype=torch.float64))
    resampled = _statistics(w / R, u / G, K, C, H)
    out = {}
    for name in METRICS:
        out[name] = float(point[name][0])
        finite = resampled[name][torch.isfinite(resampled[name])]
        out[f"{name}_se"] = float(finite.std(unbiased=True)) if finite.numel() > 1 else float("nan")
    out["exact_grad_norm"] = float(point["exact_grad_norm"][0])
    out["exact_grad_se"] = float(point["exact_grad_se"][0])
    return out


def fingerprint(grads: Tensor, directions: int = 8) -> Tensor:
    r"""Projections (R, ``directions``) of replicate gradients on fixed random directions: a cheap summary that
    two estimators' gradients coincide (see :func:`same_gradient`)."""
    g = torch.Generator().manual_seed(12345)
    V = torch.randn(grads.shape[1], directions, generator=g, dtype=torch.float64)
    return grads.to(torch.float64) @ V


def same_gradient(a: Tensor, b: Tensor, rtol: float = 1e-9) -> bool:
    r"""Whether two fingerprints (or gradient matrices) agree to ``rtol`` of their scale: the same gradient on
    every replicate (an estimator that differs from another by a constant has exactly its gradient)."""
    if a.shape != b.shape:
        return False
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-300)
    return float((a - b).abs().max()) <= rtol * scale
