r"""Exact references of a posterior field: avg_kl, kl_agg, mi, tc and dimwise_kl, each with an se and a method.

For q(z|n) = Normal(mu_n, diag exp(logvar_n)), n = 1..N, q(z) = (1/N) sum_n q(z|n) and p(z) = Normal(0, I),
every quantity is computed from four numbers, none of which grows with |mu|^2 or the variances except the
closed-form cross-entropy:

* E_q[log q(z|n)] = mean_n -1/2 sum_d (log 2pi + logvar_nd + 1) and E_q[log p] = mean_n -1/2 sum_d
  (log 2pi + mu_nd^2 + var_nd): closed forms;
* E_q[log q(z_d)] for every marginal: adaptive composite Gauss-Legendre quadrature over intervals that
  resolve every component (:func:`estimators.references.quadrature.neg_entropy`), about 1e-10 relative;
* E_q[log q(z)]: stratified Monte Carlo with two control variates, each draw evaluated against all N
  components (method "mc", with an se; :func:`estimators.references.monte_carlo.neg_entropy_mc`): draws from
  every component by default, from a sub-sample of them with ``strata``, or as many as a ``target_se``
  needs; the 2-D quadrature when D = 2 and it fits ``QUADRATURE_BUDGET``; or closed / the marginal for
  identical fields, product grids and D = 1.

Then mi = E[log q(z|n)] - E[log q(z)], kl_agg = E[log q(z)] - E[log p], tc = E[log q(z)] - sum_d E[log q(z_d)],
dimwise_kl = sum_d E[log q(z_d)] - E[log p] and avg_kl = mean_n KL(q(z|n) || p) (closed). So mi and tc are
differences of numbers of the size of a log-density, never of two huge KLs (at logvar = 30 both avg_kl and
kl_agg are 5e12, and their difference kept no digit), the identities avg_kl = mi + kl_agg and
kl_agg = tc + dimwise_kl hold to relative precision, and the se of mi, kl_agg and tc is that of E[log q(z)].
Each method is the least exact of its parts (closed < quadrature < mc). Monte Carlo noise can make a tiny tc
or mi slightly negative: the estimates are unbiased, not clipped.

Accepted fields (a clear error otherwise): |logvar| <= 60, |mu| <= 1e100, and per dimension a spread of the
means at most 1e12 times the smallest standard deviation (beyond it float64 cannot resolve z - mu on the
scale of the narrowest component).
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..numerics import LOG_2PI, kl_to_prior
from ..posteriors import Posteriors
from ..validation import as_int
from .brackets import certified_brackets, check_brackets
from .executor import check_executor
from .monte_carlo import DEFAULT_MAX_TERMS, _check_strata, check_target, neg_entropy_mc
from .quadrature import cross_entropy_to_prior, neg_entropy
from .structure import dedupe, is_product_grid

__all__ = ["exact_references", "QUANTITIES", "QUADRATURE_BUDGET"]

QUANTITIES = ("avg_kl", "kl_agg", "mi", "tc", "dimwise_kl")
QUADRATURE_BUDGET = 2e9  # kernel terms (query points x components) of a 2-D quadrature's first round: ~seconds
_METHOD_RANK = {"closed": 0, "quadrature": 1, "mc": 2}
PROGRESS_DELAY = 2.0  # seconds before a progress bar shows
MAX_ABS_LOGVAR = 60.0  # sd in [1e-13, 1e13]
MAX_ABS_MU = 1e100  # mu^2 and log p stay finite
MAX_SPREAD_OVER_SD = 1e12  # per dimension: (max |mu - mean| ) / min sd; z - mu resolved to ~1e-4 sd


def _entry(value: float, se: float, method: str) -> dict:
    return {"value": float(value), "se": float(se), "method": method}


def _with_bracket(entry: dict, bracket: dict) -> dict:
    return dict(entry, lower=float(bracket["lower"]), upper=float(bracket["upper"]), lower_by=bracket["lower_by"],
                upper_by=bracket["upper_by"])


def _least_exact(*methods: str) -> str:
    return max(methods, key=_METHOD_RANK.__getitem__)


def _marginal_neg_entropies(mu: Tensor, logvar: Tensor, nodes: int, bar) -> tuple[float, float]:
    """sum_d E[log q(z_d)], each by adaptive 1-D quadrature over the distinct components; (value, error)."""
    value = error = 0.0
    for d in range(mu.shape[1]):
        mu_u, lv_u, log_w, _ = dedupe(mu[:, d:d + 1], logvar[:, d:d + 1])
        v, e = neg_entropy(mu_u, lv_u, log_w, nodes=nodes)
        value, error = value + v, error + e
        bar.update(1)
    return value, error


def _joint_neg_entropy_2d(mu: Tensor, logvar: Tensor, nodes: int, cap: int | None) -> tuple[float, float] | None:
    """E[log q(z)] of a 2-D field by adaptive 2-D quadrature; None above ``cap`` distinct components or,
    without a cap, when its first round would exceed ``QUADRATURE_BUDGET`` kernel terms."""
    mu_u, lv_u, log_w, _ = dedupe(mu, logvar)
    if cap is not None and mu_u.shape[0] > cap:
        return None
    return neg_entropy(mu_u, lv_u, log_w, nodes=max(nodes // 2, 2),
                       max_terms=QUADRATURE_BUDGET if cap is None else None)


def _check_range(mu: Tensor, logvar: Tensor) -> None:
    if bool((logvar.abs() > MAX_ABS_LOGVAR).any()):
        raise ValueError(f"logvar must lie in [-{MAX_ABS_LOGVAR:g}, {MAX_ABS_LOGVAR:g}] for exact references (sd in "
                         f"[1e-13, 1e13]), got values in [{float(logvar.min()):g}, {float(logvar.max()):g}]")
    if bool((mu.abs() > MAX_ABS_MU).any()):
        raise ValueError(f"mu must lie in [-{MAX_ABS_MU:g}, {MAX_ABS_MU:g}] for exact references, got |mu| up to "
                         f"{float(mu.abs().max()):g}")
    spread = (mu - mu.mean(0)).abs().amax(0) / torch.exp(0.5 * logvar).amin(0)
    worst = int(spread.argmax())
    if float(spread[worst]) > MAX_SPREAD_OVER_SD:
        raise ValueError(f"dimension {worst}: the means spread over {float(spread[worst]):.3g} times the smallest "
                         f"standard deviation; exact references need at most {MAX_SPREAD_OVER_SD:g} (float64 cannot "
                         "resolve z - mu on the scale of the narrowest component beyond it)")


def _progress(progress, total: int, desc: str):
    from tqdm.auto import tqdm

    # delay: a bar appears only once a step has taken more than PROGRESS_DELAY seconds; quick fields stay quiet
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not progress, dynamic_ncols=True,
                delay=PROGRESS_DELAY)


def exact_references(mu, logvar, *, samples: int = 8, quadrature_nodes: int = 32, seed: int = 0,
                     dtype=torch.float64, max_quadrature_components: int | None = None, progress: bool = False,
                     brackets: bool = True, strata: int | None = None, target_se: float | None = None,
                     max_terms: float = DEFAULT_MAX_TERMS, executor=None) -> dict:
    r"""Exact references of a field of diagonal-Gaussian posteriors: each quantity's value, se and method.

    See the module docstring for the methods. The field is cast to ``dtype`` (its values are rounded to that
    precision), then everything is computed in float64. The method of each quantity is picked
    automatically and reported: "closed" (se 0), "quadrature" (se 0, exact to about 1e-10) or "mc".

    Args:
        mu, logvar: (N, D) means and log-variances of q(z|n) (tensors or arrays, float32 or float64); see
            the module docstring for the accepted ranges.
        samples: Monte Carlo draws per component for E[log q(z)] (>= 2, so that within-stratum variances are
            estimable); the se shrinks like 1 / sqrt(N * samples), the cost grows like N^2 * samples.
        quadrature_nodes: Gauss-Legendre nodes per interval of the 1-D quadratures (>= 2; half as many per
            dimension for the 2-D one); each rule is checked against one with half the nodes.
        seed: seed of the Monte Carlo draws.
        dtype: torch.float32 or torch.float64, the precision the field is rounded to first.
        max_quadrature_components: most distinct components for the 2-D quadrature when D = 2 (above it:
            Monte Carlo). None: whatever keeps its first round within ``QUADRATURE_BUDGET`` kernel terms.
        progress: show progress bars (with an ETA) on stderr for the quadratures and the Monte Carlo, once
            a step has run for more than ``PROGRESS_DELAY`` seconds.
        brackets: compute each quantity's certified bracket (:mod:`.brackets`, docs/maths.md, "Certified
            brackets") and check the reference against it; False skips both.
        strata: the Monte Carlo's strata: None (every component, the default) or m in [min(N, 256), N]
            components drawn without replacement, ``samples`` draws each, every draw still evaluated against
            all N components (:func:`.monte_carlo.neg_entropy_mc`: a regression estimator with the
            two-stage se); the cost grows like N * m * samples.
        target_se: None, or the se wanted for E[log q(z)] (so for kl_agg, mi and tc): a pilot run picks the
            strata and draws per stratum (``samples`` and ``strata`` are then ignored; the result says what
            was used).
        max_terms: the budget of a ``target_se`` run, in kernel terms (draws x N) of its final run; default
            ``DEFAULT_MAX_TERMS`` = 6e10, about 2 minutes on 2 cores at D = 10. A target it cannot reach is
            a ValueError naming the target, the se the budget reaches and the budget.
        executor: where the Monte Carlo's chunks of draws are evaluated (:mod:`.executor`: an object with
            ``map(func, items, shared)``); None: here. The numbers do not depend on it.
    Returns:
        A JSON-serialisable dict: ``N``, ``D``, ``samples``, ``quadrature_nodes``, ``seed``, ``dtype``,
        ``structure`` ("identical", "product_grid", "one_dimensional" or "general"),
        ``quadrature_error`` (sum of the adaptive quadratures' error estimates), ``seconds``, and for each
        of ``avg_kl``, ``kl_agg``, ``mi``, ``tc``, ``dimwise_kl`` a dict ``{"value", "se", "method"}``,
        with ``brackets`` also ``"lower"``, ``"upper"`` (deterministic bounds) and ``"lower_by"``,
        ``"upper_by"`` (which bound is tightest), and ``bracket_seconds``. ``monte_carlo``: None, or what
        the Monte Carlo used (:meth:`.monte_carlo.MonteCarloEstimate.as_dict`: strata, samples, draws,
        population, target_se, max_terms, pilot, runs); ``samples`` is then its draws per stratum.
        The identities avg_kl = mi + kl_agg and kl_agg = tc + dimwise_kl hold to relative precision.

    Raises:
        ValueError: a setting out of range, a non-finite field, or a field outside the accepted ranges
            (the message says which bound and where).
        estimators.references.brackets.BracketError: a reference outside its certified bracket by more than
            ``Z_BRACKET`` standard errors (a bug: the message names the quantity, value, se and bracket).

    Example::

        >>> ref = exact_references(torch.randn(200, 3), torch.full((200, 3), -2.0))
        >>> ref["mi"]["value"], ref["mi"]["se"], ref["mi"]["method"]
    """
    start = time.perf_counter()
    samples = as_int("samples", samples, 2)
    nodes = as_int("quadrature_nodes", quadrature_nodes, 2)
    seed = as_int("seed", seed, 0)
    if max_quadrature_components is not None:
        max_quadrature_components = as_int("max_quadrature_components", max_quadrature_components, 1)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    target_se, max_terms = check_target(target_se, max_terms)
    executor = check_executor(executor)
    field = Posteriors(mu, logvar)
    field = Posteriors(field.mu.detach().cpu().to(dtype), field.logvar.detach().cpu().to(dtype))  # re-checks finiteness
    mu, logvar = field.mu.to(torch.float64), field.logvar.to(torch.float64)
    N, D = field.N, field.D
    if strata is not None:
        strata = _check_strata(strata, N)
    _check_range(mu, logvar)
    mc_info = None

    avg_kl = float(kl_to_prior(mu, logvar).mean())
    own = float((-0.5 * (LOG_2PI + logvar + 1.0).sum(1)).mean())  # E[log q(z|n)]
    cross = cross_entropy_to_prior(mu, logvar)  # E_q[log p(z)]
    quadrature_error = 0.0
    if bool((mu == mu[0]).all()) and bool((logvar == logvar[0]).all()):
        structure = "identical"  # q(z) = q(z|1): a Gaussian, so everything is closed form
        joint = marginals = (own, 0.0, "closed")  # its marginals are Gaussians too: their sum is E[log q(z|1)]
    else:
        bar = _progress(progress, D, "references: marginal quadratures")
        with bar:
            value, quadrature_error = _marginal_neg_entropies(mu, logvar, nodes, bar)
        marginals = (value, 0.0, "quadrature")
        if D == 1 or is_product_grid(mu, logvar):
            structure = "one_dimensional" if D == 1 else "product_grid"  # q(z) = prod_d q(z_d)
            joint = marginals  # its value comes from the marginal quadratures
        else:
            structure = "general"
            quad = _joint_neg_entropy_2d(mu, logvar, nodes, max_quadrature_components) if D == 2 else None
            if quad is not None:
                joint = (quad[0], 0.0, "quadrature")
                quadrature_error += quad[1]
            else:
                bar = _progress(progress, N * samples, "references: Monte Carlo draws")

                def advance(done, total):
                    bar.total = total  # a sub-sample or a target_se run draws other than N * samples
                    bar.update(done - bar.n)

                with bar:
                    est = neg_entropy_mc(mu, logvar, samples, torch.Generator().manual_seed(seed), progress=advance,
                                         strata=strata, target_se=target_se, max_terms=max_terms,
                                         executor=executor)
                joint = (est.value, est.se, "mc")
                mc_info = est.as_dict()
                samples = est.samples
    h, h_se, h_method = joint  # E[log q(z)]
    hd, _, hd_method = marginals  # sum_d E[log q(z_d)]
    tc_method = "closed" if structure != "general" else _least_exact(h_method, hd_method)
    result = {"N": N, "D": D, "samples": samples, "quadrature_nodes": nodes, "seed": seed,
              "dtype": str(dtype).replace("torch.", ""), "structure": structure,
              "quadrature_error": quadrature_error, "seconds": 0.0,
              "avg_kl": _entry(avg_kl, 0.0, "closed"),
              "kl_agg": _entry(h - cross, h_se, h_method),
              "mi": _entry(own - h, h_se, h_method),
              "tc": _entry(0.0 if structure != "general" else h - hd, h_se, tc_method),
              "dimwise_kl": _entry(hd - cross, 0.0, hd_method), "monte_carlo": mc_info}
    if brackets:
        t0 = time.perf_counter()
        bounds = certified_brackets(mu, logvar, marginal_gap=own - hd, avg_kl=avg_kl,
                                    quadrature_error=quadrature_error)
        for q in QUANTITIES:
            result[q] = _with_bracket(result[q], bounds[q])
        result["bracket_seconds"] = time.perf_counter() - t0
        check_brackets(result)  # loud: a reference outside its bracket is a bug
    result["seconds"] = time.perf_counter() - start
    return result
