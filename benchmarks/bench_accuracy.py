r"""Accuracy of every estimator, tracked like speed: |bias| and RMSE of mi and tc, in nats.

For each scenario (``gaussian``: correlated means, tc > 0; ``heteroscedastic``: variances over
orders of magnitude and inactive dimensions, like a real VAE), N = 2000 at separation 0.5, the
estimators see R = 100 replicate minibatches of B = 256 distinct indices (uniform without
replacement) with one z_i ~ q(z|n_i) each, float32; every estimator sees the same batches (common
random numbers), all through the one contract (the batch's posteriors ``field[index]``, ``field=``,
``index=``), and ``iwae`` takes k = 256. Each estimate of mi and tc (:func:`estimators.decompose`)
is compared with the exact reference (:func:`estimators.references.exact_references`, float64,
32 draws per component: se about 0.003 nats, small next to the biases of interest).

Everything is seeded, so the numbers are deterministic for a given commit: a change in
``asv compare`` means the estimator (or the reference) changed. |bias| rather than the signed bias
is tracked because asv reads a larger value as worse. All the work is done once, in
``setup_cache`` (about 15 s); the ``track_`` methods only look the numbers up.
"""
from __future__ import annotations

import math

import torch

from .common import configure_torch, contract_call

SCENARIOS = ("gaussian", "heteroscedastic")
QUANTITIES = ("mi", "tc")
N, B, K, R = 2000, 256, 256, 100
SEPARATION = 0.5
REFERENCE_SAMPLES = 32
SEED = 2024


def _estimator_names() -> list[str]:
    try:
        from estimators.log_qz import ESTIMATORS
    except ImportError:
        return []
    return list(ESTIMATORS)


ESTIMATOR_NAMES = _estimator_names()


def replicate_estimates(scenario: str, estimators, *, replicates: int = R, batch_size: int = B,
                        N: int = N, seed: int = SEED) -> dict[str, dict[str, list[float]]]:
    r"""Estimates of mi and tc by each estimator on the same ``replicates`` seeded batches.

    Returns:
        ``{estimator: {quantity: [estimate per replicate]}}``.
    """
    from estimators import Posteriors, decompose
    from estimators.scenarios import make_scenario

    field = make_scenario(scenario, N=N, separation=SEPARATION, seed=0)
    field = Posteriors(field.mu.float(), field.logvar.float(), field.name)
    out = {name: {q: [] for q in QUANTITIES} for name in estimators}
    with torch.no_grad():
        for r in range(replicates):
            g = torch.Generator().manual_seed(seed + r)
            index = torch.randperm(N, generator=g)[:batch_size]
            mu_b, logvar_b = field.mu[index], field.logvar[index]
            z = mu_b + torch.randn(mu_b.shape, generator=g) * torch.exp(0.5 * logvar_b)
            for name in estimators:  # iwae's draws: a generator seeded per replicate
                terms = contract_call(decompose, name, z, field, index, k=K, seed=seed + replicates + r)
                for q in QUANTITIES:
                    out[name][q].append(float(terms[q]))
    return out


def reference(scenario: str, N: int = N) -> dict:
    r"""Exact references of the scenario's field (float64), as :func:`exact_references` returns them."""
    from estimators.references import exact_references
    from estimators.scenarios import make_scenario

    field = make_scenario(scenario, N=N, separation=SEPARATION, seed=0)
    return exact_references(field.mu, field.logvar, samples=REFERENCE_SAMPLES, seed=0)


def error_summary(estimates, truth: float) -> dict[str, float]:
    r"""bias, its standard error, |bias| and RMSE of replicate ``estimates`` against ``truth``."""
    R = len(estimates)
    mean = sum(estimates) / R
    sd = math.sqrt(sum((x - mean) ** 2 for x in estimates) / (R - 1)) if R > 1 else float("nan")
    bias = mean - truth
    return {"bias": bias, "bias_se": sd / math.sqrt(R), "abs_bias": abs(bias),
            "rmse": math.sqrt(sum((x - truth) ** 2 for x in estimates) / R)}


def accuracy_table(scenarios=SCENARIOS, estimators=None, **kwargs) -> dict[str, dict]:
    r"""``{"scenario/estimator": {quantity: error_summary}}`` plus ``"references"``."""
    estimators = ESTIMATOR_NAMES if estimators is None else estimators
    table = {"references": {}}
    for scenario in scenarios:
        ref = reference(scenario, kwargs.get("N", N))
        table["references"][scenario] = {q: ref[q] for q in QUANTITIES}
        estimates = replicate_estimates(scenario, estimators, **kwargs)
        for name in estimators:
            table[f"{scenario}/{name}"] = {q: error_summary(estimates[name][q], ref[q]["value"]) for q in QUANTITIES}
    return table


def _rounded(x: float) -> float:
    """Five significant digits: readable tables; changes below that are not regressions."""
    return float(f"{x:.5g}")


class Accuracy:
    r"""|bias| and RMSE (nats) of mi and tc per scenario and estimator, B = 256, R = 100 replicates."""

    params = (list(SCENARIOS), ESTIMATOR_NAMES)
    param_names = ["scenario", "estimator"]
    unit = "nats"
    timeout = 600

    def setup_cache(self):
        configure_torch()
        return accuracy_table()

    def setup(self, table, scenario, estimator):
        if f"{scenario}/{estimator}" not in table:
            raise NotImplementedError(f"no accuracy numbers for {estimator} on {scenario}")

    def track_mi_abs_bias(self, table, scenario, estimator):
        return _rounded(table[f"{scenario}/{estimator}"]["mi"]["abs_bias"])

    def track_mi_rmse(self, table, scenario, estimator):
        return _rounded(table[f"{scenario}/{estimator}"]["mi"]["rmse"])

    def track_tc_abs_bias(self, table, scenario, estimator):
        return _rounded(table[f"{scenario}/{estimator}"]["tc"]["abs_bias"])

    def track_tc_rmse(self, table, scenario, estimator):
        return _rounded(table[f"{scenario}/{estimator}"]["tc"]["rmse"])
