"""The log p(x) tasks and estimators (estimators/log_px/tasks.py): references, draws, registries.

Independent references: the exact posterior as encoder (every estimate equals log p(x) exactly),
the ELBO mean against log p(x) - KL (Monte Carlo, Z = 4), and the draws rebuilt by hand.
"""
import math

import pytest
import torch

from estimators.log_px import (LOG_PX_ESTIMATORS, LOG_PX_TASKS, LogPxTask, iwae_jackknife, log_px_reference,
                               predicted_bias, sample_log_px_estimates)
from estimators.log_px.tasks import ENCODERS, MODELS, LogPxEstimator
from tests.helpers import F64, Z


def test_estimator_records():
    assert set(LOG_PX_ESTIMATORS) == {"iwae", "iwae_jackknife1", "iwae_jackknife2"}
    for name, est in LOG_PX_ESTIMATORS.items():
        assert isinstance(est, LogPxEstimator) and est.name == name and callable(est.estimate)
    assert {n: e.min_k for n, e in LOG_PX_ESTIMATORS.items()} == {"iwae": 1, "iwae_jackknife1": 2, "iwae_jackknife2": 3}
    assert {n for n, e in LOG_PX_ESTIMATORS.items() if e.pairwise} == {"iwae_jackknife2"}
    lw = torch.randn(4, 9, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(LOG_PX_ESTIMATORS["iwae"].estimate(lw), torch.logsumexp(lw, -1) - math.log(9))
    torch.testing.assert_close(LOG_PX_ESTIMATORS["iwae_jackknife2"].estimate(lw), iwae_jackknife(lw, 2))
    assert set(MODELS) == {"random", "digits"} and set(ENCODERS) == {"exact", "diagonal", "mismatched"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exact_posterior_gives_log_px_for_every_k_with_zero_variance(dtype):
    eps = torch.finfo(dtype).eps
    for name in ("fa-d2-exact", "fa-d8-exact", "fa-digits-d4-exact"):
        ref = log_px_reference(name)
        assert ref["kl_gap"] == pytest.approx(0.0, abs=1e-12) and ref["renyi2"] == pytest.approx(0.0, abs=1e-12)
        for estimator in LOG_PX_ESTIMATORS:
            for k in (1, 3, 64):
                if estimator != "iwae" and k == 1:
                    continue
                g = torch.Generator().manual_seed(k)
                est = sample_log_px_estimates(name, estimator, k, 50, g, dtype=dtype)
                assert est.dtype == dtype
                # float64: rounding of log p(x, z) - log q(z|x) (~1e-13); float32: a few ulps of |log p(x)|
                tol = 1e-10 if dtype == torch.float64 else 8 * eps * (abs(ref["value"]) + math.log(k) + 1)
                assert (est.double() - ref["value"]).abs().max().item() < tol, (name, estimator, k)


@pytest.mark.parametrize("name", ["fa-d2-mismatched", "fa-d8-diagonal", "fa-digits-d4-diagonal",
                                  "fa-digits-d4-mismatched"])
def test_elbo_mean_is_log_px_minus_kl(name):
    ref = log_px_reference(name)
    n = 20000
    est = sample_log_px_estimates(name, "iwae", 1, n, torch.Generator().manual_seed(6))
    se = est.std().item() / math.sqrt(n)
    assert ref["kl_gap"] > 5 * Z * se  # the gap is resolved (to 20% or better), not within noise of zero
    assert abs(est.mean().item() - (ref["value"] - ref["kl_gap"])) < Z * se


def test_registry_and_reference_contract():
    assert set(LOG_PX_ESTIMATORS) == {"iwae", "iwae_jackknife1", "iwae_jackknife2"}
    for name, task in LOG_PX_TASKS.items():
        assert isinstance(task, LogPxTask) and task.name == name
        ref = log_px_reference(task)
        assert set(ref) == {"value", "se", "method", "kl_gap", "renyi2"}
        assert ref["se"] == 0.0 and ref["method"] == "closed" and math.isfinite(ref["value"])
        assert ref["kl_gap"] >= 0 and ref["renyi2"] >= 0
        assert ref == log_px_reference(name)  # same object by name or by task
        assert math.isnan(predicted_bias(task, "iwae_jackknife1", 8))
        assert math.isnan(predicted_bias(task, "iwae_jackknife2", 8))
        want = -math.expm1(ref["renyi2"]) / 32 if math.isfinite(ref["renyi2"]) else math.nan
        assert predicted_bias(task, "iwae", 16) == pytest.approx(want, nan_ok=True)
    assert {"fa-d2-exact", "fa-d2-diagonal", "fa-d2-mismatched"} <= set(LOG_PX_TASKS)
    assert any(name.startswith("fa-digits") for name in LOG_PX_TASKS)


def test_sample_log_px_estimates_is_reproducible_with_common_random_numbers():
    g = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    a = sample_log_px_estimates("fa-d2-mismatched", "iwae", 8, 100, g())
    assert a.shape == (100,) and a.dtype == F64
    assert a.equal(sample_log_px_estimates("fa-d2-mismatched", "iwae", 8, 100, g()))
    # the same draws feed every estimator: rebuild them and compare
    prob = LOG_PX_TASKS["fa-d2-mismatched"].problem()
    z = prob.encoder.sample((100, 8), g())
    lw = prob.model.log_joint(prob.x, z) - prob.encoder.log_prob(z)
    torch.testing.assert_close(a, torch.logsumexp(lw, -1) - math.log(8))
    torch.testing.assert_close(sample_log_px_estimates("fa-d2-mismatched", "iwae_jackknife2", 8, 100, g()),
                               iwae_jackknife(lw, 2))
    # several sampling blocks (k * P large), and jackknife-2 sub-blocks of one replicate (k^2 large)
    many = sample_log_px_estimates("fa-digits-d4-mismatched", "iwae_jackknife1", 2048, 20, g())
    assert many.shape == (20,) and torch.isfinite(many).all()
    assert sample_log_px_estimates("fa-d2-mismatched", "iwae_jackknife2", 1500, 3, g()).shape == (3,)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="estimator must be one of"):
        sample_log_px_estimates("fa-d2-exact", "mws", 4, 10)
    for estimator, k in (("iwae", 0), ("iwae_jackknife1", 1), ("iwae_jackknife2", 2)):
        with pytest.raises(ValueError, match="k must be an integer >="):
            sample_log_px_estimates("fa-d2-exact", estimator, k, 10)
        with pytest.raises(ValueError, match="k must be an integer >="):
            predicted_bias("fa-d2-exact", estimator, k)
    with pytest.raises(ValueError, match="replicates must be"):
        sample_log_px_estimates("fa-d2-exact", "iwae", 4, 0)
    with pytest.raises(ValueError, match="task must be"):
        log_px_reference("no-such-task")
    with pytest.raises(TypeError, match="dtype must be"):
        sample_log_px_estimates("fa-d2-exact", "iwae", 4, 10, dtype=torch.float16)
    with pytest.raises(ValueError, match="model must be one of"):
        LogPxTask("bad", "nope", 2, 6, "exact").problem()
    with pytest.raises(ValueError, match="encoder must be one of"):
        LogPxTask("bad", "random", 2, 6, "nope").problem()
