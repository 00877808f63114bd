r"""What an estimate costs in encoder evaluations: the posteriors q(z|x) it reads.

In training, every posterior an estimator reads is one pass of the encoder, so an estimator that reads
more of them per sample buys its accuracy with encoder evaluations that a minibatch estimator could
spend on a larger batch. :func:`encoder_evaluations` is the one rule, by estimator family (the CSV's
``family`` column), for one estimate from a batch of B posteriors of a data set of N:

========================  ==================================  =============================================
family                    encoder evaluations per estimate    why
========================  ==================================  =============================================
``minibatch``             B                                   the batch's own posteriors only
``importance`` (iwae)     B (1 + k)                           k more posteriors drawn per sample
``exact``                 B + N                               every posterior of the data set
``moment``                B                                   the batch's own posteriors only
``density_ratio``         2 B steps + eval                    a batch of B per class per training step
                                                              (``k`` holds the steps) and the evaluation
                                                              samples (``estimators.direct`` DEFAULTS)
========================  ==================================  =============================================

log p(x) rows (family ``iwae``: one encoder pass and k decoder passes per estimate) and unknown families
get NaN: their cost is not counted in encoder evaluations. The CSV schema has no cost column; the report
derives it here from ``family``, ``batch_size``, ``k`` and ``N``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...direct.density_ratio import DEFAULTS as _DENSITY_RATIO

__all__ = ["encoder_evaluations", "COST_RULES", "DENSITY_RATIO_EVAL"]

DENSITY_RATIO_EVAL = _DENSITY_RATIO["eval_samples"]  # fresh samples the trained discriminator is averaged on

# family -> the rule in words (the summary explains its budgets with these)
COST_RULES = {
    "minibatch": "B",
    "importance": "B (1 + k)",
    "exact": "B + N",
    "moment": "B",
    "density_ratio": f"2 B steps + {DENSITY_RATIO_EVAL}",
}


def encoder_evaluations(rows: pd.DataFrame) -> pd.Series:
    r"""Encoder evaluations (posteriors read) per estimate of every row (the table in the module docstring).

    Args:
        rows: benchmark rows with ``family``, ``batch_size``, ``k`` and ``N``.
    Returns:
        A float Series on ``rows.index``: NaN where the family's cost is not counted (log p(x), unknown).
    Raises:
        ValueError: a column is missing.

    Example::

        >>> encoder_evaluations(pd.DataFrame({"family": ["minibatch", "importance", "exact"],
        ...                                   "batch_size": [8, 8, 8], "k": [0, 16, 0], "N": [100] * 3})).tolist()
        [8.0, 136.0, 108.0]
    """
    missing = [c for c in ("family", "batch_size", "k", "N") if c not in rows]
    if missing:
        raise ValueError(f"rows must have the columns family, batch_size, k and N; missing {missing}")
    family = rows["family"].astype(str)
    B = rows["batch_size"].astype(float)
    k = rows["k"].astype(float)
    N = rows["N"].astype(float)
    # the density ratio's implementation falls back to its defaults where the budget is 0
    steps = k.where(k > 0, float(_DENSITY_RATIO["steps"]))
    train_batch = B.where(B > 0, float(_DENSITY_RATIO["batch_size"]))
    out = pd.Series(np.nan, index=rows.index, dtype=float)
    out[family.isin(["minibatch", "moment"])] = B
    out[family == "importance"] = B * (1.0 + k)
    out[family == "exact"] = B + N
    out[family == "density_ratio"] = 2.0 * train_batch * steps + DENSITY_RATIO_EVAL
    return out
