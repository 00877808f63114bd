r"""Accuracy metrics of R replicate estimates against a reference, each with its Monte Carlo
standard error, and the columns that theory predicts.

All formulas are for R independent replicates x_1..x_R of an estimator and a reference value r
(with its own standard error s_r):

* mean = x̄; bias = x̄ - r, bias_se = sd / sqrt(R)  (the reference's se is reported apart);
* sd = sample standard deviation (ddof = 1); sd_se by the delta method with the fourth central
  moment, Var(s^2) ~ (m4 - s^4 (R-3)/(R-1)) / R and se(s) = se(s^2) / (2 s), which holds for any
  distribution with a finite fourth moment (not only for normal replicates), asymptotically:
  with heavy tails and small R it runs low (about 9% for exponential replicates at R = 200);
* rmse = sqrt(mean((x - r)^2)); rmse_se = se(mean of squared errors) / (2 rmse) (delta method);
* rel_bias = bias / |r| (NaN where r = 0);
* frac_negative: the fraction of estimates below 0, for quantities that are >= 0 by definition;
* coverage: the fraction of replicates whose own interval [lower, upper] covers r;
  both undefined (NaN) where every estimate equals r up to rounding (they would count rounding errors);
* proportions get the binomial se sqrt(p (1 - p) / R).

A reference is good enough to judge a bias when s_r <= bias_se / 10 (docs/maths.md, "Exact references").
"""
from __future__ import annotations

import math

import numpy as np

from ..log_px import LOG_PX_ESTIMATORS

__all__ = ["summarize", "theory_columns", "is_lower_bound", "sign_consistent", "reference_se_ok", "is_nonnegative",
           "Z_CHECK", "REFERENCE_SE_RATIO"]

Z_CHECK = 4.0  # z for the sign checks: a false alarm about once in 30 000 cells
ROUNDING = 1e-9  # |estimate - reference| <= ROUNDING (1 + |reference|): equal up to rounding
REFERENCE_SE_RATIO = 10.0  # a reference's se must be 10 times below the bias se it judges
_NONNEGATIVE = frozenset({"mi", "kl_agg", "tc", "dimwise_kl"})


def _proportion(hits: np.ndarray) -> tuple[float, float]:
    p = float(np.mean(hits))
    return p, math.sqrt(p * (1.0 - p) / hits.size)


def summarize(estimates, reference: float, reference_se: float = 0.0, *, lower=None, upper=None,
              nonnegative: bool = False) -> dict[str, float]:
    r"""Metrics of replicate ``estimates`` (R,) against ``reference``; see the module docstring.

    Args:
        estimates: R >= 1 replicate estimates.
        reference: the exact (or reference) value.
        reference_se: the reference's standard error (0 where exact).
        lower, upper: optional per-replicate interval bounds (R,), for ``coverage``.
        nonnegative: whether the quantity is >= 0 by definition (then ``frac_negative`` is filled).

    Returns:
        dict with mean, bias, bias_se, rel_bias, rel_bias_se, sd, sd_se, rmse, rmse_se,
        frac_negative, frac_negative_se, coverage, coverage_se, reference_se_ok (NaN where undefined).
    """
    x = np.asarray(estimates, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("estimates must hold at least one replicate")
    R = x.size
    nan = math.nan
    mean = float(x.mean())
    bias = mean - float(reference)
    if R > 1:
        dev = x - mean
        sd = float(np.sqrt(np.sum(dev**2) / (R - 1)))
        m4 = float(np.mean(dev**4))
        var_s2 = max((m4 - sd**4 * (R - 3) / (R - 1)) / R, 0.0)
        sd_se = math.sqrt(var_s2) / (2.0 * sd) if sd > 0 else 0.0
        bias_se = sd / math.sqrt(R)
    else:
        sd = sd_se = bias_se = nan
    err2 = (x - float(reference)) ** 2
    rmse = math.sqrt(float(err2.mean()))
    if R > 1:
        rmse_se = float(err2.std(ddof=1)) / math.sqrt(R) / (2.0 * rmse) if rmse > 0 else 0.0
    else:
        rmse_se = nan
    scale = abs(float(reference))
    out = {
        "mean": mean,
        "bias": bias,
        "bias_se": bias_se,
        "rel_bias": bias / scale if scale > 0 else nan,
        "rel_bias_se": bias_se / scale if scale > 0 else nan,
        "sd": sd,
        "sd_se": sd_se,
        "rmse": rmse,
        "rmse_se": rmse_se,
        "frac_negative": nan,
        "frac_negative_se": nan,
        "coverage": nan,
        "coverage_se": nan,
    }
    # Where every estimate equals the reference up to rounding (an exactly computed 0, say), the sign
    # and interval counts would count rounding errors: undefined there.
    at_rounding = bool(np.all(np.abs(x - float(reference)) <= ROUNDING * (1.0 + abs(float(reference)))))
    if nonnegative and not at_rounding:
        out["frac_negative"], out["frac_negative_se"] = _proportion(x < 0)
    if lower is not None and upper is not None and not at_rounding:
        lo = np.asarray(lower, dtype=np.float64).ravel()
        hi = np.asarray(upper, dtype=np.float64).ravel()
        if lo.shape != x.shape or hi.shape != x.shape:
            raise ValueError(f"lower and upper must have the shape of estimates {x.shape}, "
                             f"got {lo.shape} and {hi.shape}")
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.all():
            out["coverage"], out["coverage_se"] = _proportion((lo <= reference) & (reference <= hi))
    out["reference_se_ok"] = reference_se_ok(reference_se, bias_se)
    return out


def reference_se_ok(reference_se: float, bias_se: float) -> bool:
    r"""Whether reference_se <= bias_se / 10 (an exact reference, se 0, always passes)."""
    if reference_se == 0:
        return True
    if not math.isfinite(bias_se):
        return False
    return REFERENCE_SE_RATIO * reference_se <= bias_se


def is_lower_bound(estimator: str) -> bool:
    r"""Whether the log p(x) estimator ``estimator`` is a lower bound in expectation (its registry entry's
    ``LogPxEstimator.lower_bound``)."""
    info = LOG_PX_ESTIMATORS.get(estimator)
    return info is not None and info.lower_bound


def theory_columns(quantity: str, N: int, D: int, batch_size: int | None, *, unbiased_inside: bool,
                   estimator: str = "", mi_bound: str = "") -> dict[str, object]:
    r"""Columns theory predicts for a cell.

    * ``log_N``, ``log_B``: the scales of the mws and naive biases.
    * ``mws_offset``: the exact per-sample constant mws - naive (docs/maths.md, "Published
      variants"): mi +log N, kl_agg -log N, tc +(D-1) log N, dimwise_kl -D log N.
    * ``bias_sign_theory``: for an estimator whose inner sum is an unbiased estimate of q(z_i)
      (and of each q(z_id)), Jensen gives E log q^ <= log q, so the bias of mi
      (= E[log q(z|n) - log q^]) is >= 0 and those of kl_agg and dimwise_kl (= E[log q^ - ...])
      are <= 0; tc subtracts two downward-biased terms, so its sign is not fixed (""). ``exact``
      has no bias ("0"). For log_px, an estimator flagged ``lower_bound`` in the registry
      (:func:`is_lower_bound`) has bias <= 0: IWAE-k is a Jensen lower bound (Burda et al. 2016);
      the jackknife corrections (Nowozin 2018) have no fixed sign. An estimator whose mi is a known
      bound (``mi_bound``: ``naive``'s and ``calc_mi``'s is InfoNCE, a lower bound; ``loo``'s the
      leave-one-out upper bound, Poole et al. 2019) has an mi bias of that sign.
    """
    nan = math.nan
    log_n = math.log(N) if N > 0 else nan
    offsets = {"mi": log_n, "kl_agg": -log_n, "tc": (D - 1) * log_n, "dimwise_kl": -D * log_n}
    sign = ""
    if quantity == "log_px":
        sign = "-" if is_lower_bound(estimator) else ""
    elif estimator == "exact":
        sign = "0"
    elif unbiased_inside:
        sign = {"mi": "+", "kl_agg": "-", "dimwise_kl": "-"}.get(quantity, "")
    elif quantity == "mi" and mi_bound:
        sign = {"lower": "-", "upper": "+"}[mi_bound]
    return {
        "log_N": log_n if quantity != "log_px" else nan,
        "log_B": math.log(batch_size) if batch_size else nan,  # None or 0: no batch (log_px)
        "mws_offset": offsets.get(quantity, nan),
        "bias_sign_theory": sign,
    }


def sign_consistent(sign: str, bias: float, bias_se: float, reference_se: float = 0.0,
                    z: float = Z_CHECK, atol: float = 1e-6) -> bool | None:
    r"""Whether an observed bias agrees with the predicted sign at z standard errors
    (se = sqrt(bias_se^2 + reference_se^2)) plus ``atol`` for float rounding where both se are 0;
    None where nothing is predicted."""
    if sign not in {"+", "-", "0"} or not math.isfinite(bias):
        return None
    se = math.hypot(bias_se if math.isfinite(bias_se) else 0.0, reference_se)
    tol = z * se + atol
    if sign == "+":
        return bias >= -tol
    if sign == "-":
        return bias <= tol
    return abs(bias) <= tol


def is_nonnegative(quantity: str) -> bool:
    return quantity in _NONNEGATIVE
