r"""The one schema of the results CSV: its columns in order, each with its kind and its meaning.

The store writes the columns in this order and reads text columns back as text; the comparison
compares each column by its kind; the report's column table and ``docs/csv.md`` are generated
from it. Kinds:

* ``text``: a string (a blank cell is the empty string);
* ``int``: an integer; 0 stands for "not applicable" in ``batch_size`` and ``k``;
* ``float``: a float written with ``repr`` precision; a blank cell is NaN ("undefined");
* ``bool``: ``True`` / ``False``; a blank cell means "not checked".

Statistics that are undefined for a row are blank: ``frac_negative`` and ``coverage`` where every
estimate equals the reference up to rounding (an exactly computed zero, say: they would count
rounding errors, and differ between machines), ``rel_bias`` where the reference is 0.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "KINDS", "COLUMNS", "COLUMN_NAMES", "columns_of_kind", "column"]

KINDS = ("text", "int", "float", "bool")


@dataclass(frozen=True)
class Column:
    r"""One CSV column: its name, kind (one of :data:`KINDS`) and meaning (one line, Markdown)."""

    name: str
    kind: str
    meaning: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


COLUMNS: tuple[Column, ...] = (
    # identity of the cell
    Column("scenario", "text", "scenario name, posterior file stem, or log p(x) task"),
    Column("quantity", "text", "mi, kl_agg, tc, dimwise_kl (nats) or log_px"),
    Column("estimator", "text", "estimator name (`estimators.ESTIMATORS`; `estimators.direct.DIRECT_ESTIMATORS`; "
                                "`estimators.log_px.LOG_PX_ESTIMATORS` for log_px)"),
    Column("N", "int", "data points of the field (1 for log_px: one data point per estimate)"),
    Column("D", "int", "latent dimensions"),
    Column("batch_size", "int", "B, points per replicate batch (0: not applicable, log_px; density_ratio: its "
                                "training batch per class and step)"),
    Column("k", "int", "importance samples (0: the estimator takes none; density_ratio: its training steps)"),
    Column("replicates", "int", "R, independent replicate batches (log_px: independent estimates)"),
    # reference and headline metrics
    Column("reference", "float", "the exact reference value"),
    Column("reference_se", "float", "its standard error (0 where exact)"),
    Column("reference_method", "text", "how the reference was computed: closed, quadrature or mc"),
    Column("reference_lower", "float", "certified lower bound on the quantity (pairwise-distance, moment-matched or "
                                       "trivial bounds; see docs/maths.md, \"Certified brackets\"); blank for log_px"),
    Column("reference_upper", "float", "certified upper bound on the quantity; the reference lies in "
                                       "[reference_lower, reference_upper] within 4 reference_se (else the reference "
                                       "is an error); blank for log_px"),
    Column("mean", "float", "mean of the R estimates"),
    Column("bias", "float", "mean - reference"),
    Column("bias_se", "float", "Monte Carlo se of the bias: sd / sqrt(R) (the reference's se apart)"),
    Column("sd", "float", "sd of the R estimates (ddof 1)"),
    Column("rmse", "float", "sqrt(mean (estimate - reference)^2)"),
    Column("time_per_call_s", "float", "median seconds per estimator call (one replicate; per estimate for "
                                       "log_px), after a warm-up; machine-dependent"),
    # more metrics, each with its se
    Column("rel_bias", "float", "bias / |reference| (blank where the reference is 0)"),
    Column("rel_bias_se", "float", "bias_se / |reference|"),
    Column("sd_se", "float", "se of sd (delta method with the fourth central moment)"),
    Column("rmse_se", "float", "se of rmse (delta method)"),
    Column("frac_negative", "float", "fraction of estimates below 0 (the four aggregate quantities are >= 0; "
                                     "blank where every estimate equals the reference up to rounding)"),
    Column("frac_negative_se", "float", "its binomial se"),
    Column("coverage", "float", "fraction of replicates whose interval mean(terms) +- 1.96 sd(terms)/sqrt(B) "
                                "covers the reference (blank as frac_negative)"),
    Column("coverage_se", "float", "its binomial se"),
    Column("reference_se_ok", "bool", "reference_se <= bias_se / 10 (see docs/maths.md, \"Exact references\")"),
    Column("reference_samples", "float", "Monte Carlo draws per component behind the field's reference "
                                         "(blank for log_px)"),
    # what theory predicts
    Column("log_N", "float", "log N: the scale of the mws bias"),
    Column("log_B", "float", "log B: the scale of the naive bias"),
    Column("mws_offset", "float", "the exact per-sample constant mws - naive for this quantity "
                                  "(see docs/maths.md, \"Published variants\")"),
    Column("bias_sign_theory", "text", "+ / -: the sign the bias must have (Jensen, unbiased inner sum; IWAE-k "
                                       "is a lower bound; mi of naive and calc_mi is InfoNCE, a lower bound, of loo "
                                       "the L1Out upper bound); 0: exact; blank: no prediction"),
    Column("bias_sign_ok", "bool", "the observed bias agrees with bias_sign_theory within 4 "
                                   "hypot(bias_se, reference_se); blank: no prediction"),
    Column("predicted_bias", "float", "log_px: leading-order bias predicted from the Renyi divergence D_2"),
    # the estimator and the run
    Column("family", "text", "estimator family: minibatch, importance, exact; moment or density_ratio for the "
                             "direct estimators (`estimators.direct.DIRECT_ESTIMATORS`); iwae for log_px"),
    Column("published_variant", "bool", "a replica of a formula as shipped in public code, bug included"),
    Column("separation", "float", "the scenario knob in [0, 1] (blank for files and log_px)"),
    Column("scenario_seed", "int", "seed of the field itself"),
    Column("dtype", "text", "precision of the estimators: float64 or float32"),
    Column("seed", "int", "global seed of the run"),
    Column("unit_seed", "int", "the unit's derived seed (SHA-256 of the seed and the unit key)"),
    Column("status", "text", "ok, or error"),
    Column("error", "text", "the error message where status is error"),
)

COLUMN_NAMES: list[str] = [c.name for c in COLUMNS]
_BY_NAME = {c.name: c for c in COLUMNS}


def column(name: str) -> Column:
    r"""The schema entry of column ``name`` (KeyError naming it if there is none)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no column {name!r} in the results schema") from None


def columns_of_kind(kind: str) -> list[str]:
    r"""Names of the columns of one kind, in schema order."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [c.name for c in COLUMNS if c.kind == kind]
