"""The estimator-gradient study: the metrics recover known values; the exact estimator is unbiased; the bias of the
estimators unbiased inside the log shrinks as B grows; every gradient of mi and tc is 0 in expectation when every
posterior is the prior; the published variants whose error is a constant have their counterpart's gradient."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from estimators import ESTIMATORS
from estimators.decompose import QUANTITIES
from estimators.gradients.encoders import linear_problem
from estimators.gradients.exact import exact_gradient
from estimators.gradients.study import estimator_gradients, gradient_metrics, same_gradient, threads

Z = 4.5  # two-sided 6.8e-6 per comparison: at most ~10 per test keeps each test's failure rate below 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    with threads(1):
        yield


def _synthetic(P=40, R=64, G=32, bias=0.3, sigma=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(P, generator=g, dtype=torch.float64)
    truth /= truth.norm()
    b = torch.randn(P, generator=g, dtype=torch.float64)
    b *= bias / b.norm()
    reps = truth + b + sigma * torch.randn(R, P, generator=g, dtype=torch.float64)
    groups = truth + 0.02 * torch.randn(G, P, generator=g, dtype=torch.float64)
    return truth, b, reps, groups


def test_metrics_recover_known_values():
    """Replicates g + b + sigma xi against an exact gradient g: every metric within Z bootstrap ses of its truth."""
    P, sigma = 40, 0.2
    truth, b, reps, groups = _synthetic(P=P, sigma=sigma)
    m = gradient_metrics(reps, groups, boot=400, generator=torch.Generator().manual_seed(1))
    mean = truth + b
    xi = torch.randn(200_000, P, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cos_single = float(((mean + sigma * xi) @ truth / (mean + sigma * xi).norm(dim=1)).mean())
    expected = {"rel_bias": 0.3, "rel_bias_sq": 0.09, "cos_mean": float(mean @ truth / mean.norm()),
                "cos_single": cos_single, "snr": float(mean.norm()) / math.sqrt(P * sigma**2),
                "rel_rmse": math.sqrt(0.09 + P * sigma**2)}
    for name, value in expected.items():
        assert abs(m[name] - value) < Z * m[f"{name}_se"], (name, m[name], m[f"{name}_se"], value)
    assert abs(m["exact_grad_norm"] - 1.0) < 0.01


def test_metrics_of_unbiased_replicates_show_no_bias():
    truth, _, reps, groups = _synthetic(bias=0.0, seed=3)
    m = gradient_metrics(reps, groups, boot=400, generator=torch.Generator().manual_seed(1))
    assert abs(m["rel_bias_sq"]) < Z * m["rel_bias_sq_se"]
    assert m["cos_mean"] > 1 - Z * m["cos_mean_se"]


def test_metrics_reject_bad_input():
    _, _, reps, groups = _synthetic()
    with pytest.raises(ValueError, match="share P"):
        gradient_metrics(reps[:, :3], groups)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_metrics(reps[:1], groups)
    with pytest.raises(ValueError, match="boot"):
        gradient_metrics(reps, groups, boot=1)


@pytest.fixture(scope="module")
def biased_field():
    """N = 1024, D = 4: separated enough that a batch of 32 misses most neighbours (a large gradient bias)."""
    with threads(1):
        problem = linear_problem(1024, 4, P=4, seed=3)
        return problem, exact_gradient(problem, groups=16, samples=2, generator=torch.Generator().manual_seed(1))


def test_the_exact_estimator_has_an_unbiased_gradient(biased_field):
    """The batch mean of exact per-sample terms is unbiased for the full-data quantity: rel_bias^2 = 0 within Z se."""
    problem, exact = biased_field
    result = estimator_gradients(problem, "exact", 32, replicates=48)
    for q in QUANTITIES:
        m = gradient_metrics(result.grads[q], exact.groups[q])
        assert abs(m["rel_bias_sq"]) < Z * m["rel_bias_sq_se"], (q, m["rel_bias_sq"], m["rel_bias_sq_se"])


UNBIASED_MINIBATCH = [n for n, i in ESTIMATORS.items() if i.unbiased_inside and i.family == "minibatch"]


@pytest.mark.parametrize("name", UNBIASED_MINIBATCH)
def test_gradient_bias_of_estimators_unbiased_inside_the_log_shrinks_as_B_grows(biased_field, name):
    """mss, stratified (and any new minibatch estimator unbiased inside the log): rel_bias^2 at B = 32 exceeds that at
    B = 256 by more than 2 ses of the difference (a one-sided test; the observed margin is about 6 ses), and at
    B = 256 it is 0 within Z se. (iwae's bias is set by k, not by B: its k draws are independent of the batch.)"""
    problem, exact = biased_field
    small = estimator_gradients(problem, name, 32, replicates=64)
    large = estimator_gradients(problem, name, 256, replicates=64)
    for q in ("mi", "kl_agg", "tc"):
        a = gradient_metrics(small.grads[q], exact.groups[q])
        b = gradient_metrics(large.grads[q], exact.groups[q])
        se = math.hypot(a["rel_bias_sq_se"], b["rel_bias_sq_se"])
        assert a["rel_bias_sq"] - b["rel_bias_sq"] > 2 * se, (q, a["rel_bias_sq"], b["rel_bias_sq"], se)
        assert b["rel_bias"] < a["rel_bias"]


def test_every_gradient_of_mi_and_tc_is_zero_in_expectation_at_the_prior():
    """With every posterior the prior, mi = tc = 0 is a minimum: each coordinate of E g^ is 0 within t * se (t for a
    1e-4 failure rate over every estimator, quantity and coordinate); coordinates without noise are exactly 0."""
    problem = linear_problem(64, 2, P=3, seed=0, prior=True)
    R = 32
    names = [n for n in ESTIMATORS if ESTIMATORS[n].min_batch <= 16]
    t = stats.t.ppf(1 - 1e-4 / (2 * len(names) * 2 * problem.num_params), R - 1)
    for name in names:
        result = estimator_gradients(problem, name, 16, replicates=R, k=8, quantities=("mi", "tc"))
        for q in ("mi", "tc"):
            g = result.grads[q]
            mean, se = g.mean(0), g.std(0) / math.sqrt(R)
            noisy = se > 1e-12
            assert torch.all(mean[~noisy].abs() <= 1e-10), (name, q)
            if bool(noisy.any()):
                assert float((mean[noisy] / se[noisy]).abs().max()) <= t, (name, q)


def _grads(problem, name, B=16, R=6):
    return estimator_gradients(problem, name, B, replicates=R, k=8).grads


def test_published_variants_whose_error_is_a_constant_have_the_same_gradient_as_their_counterpart():
    """``tc_no_constant`` is ``mws`` without its constant (and ``mws`` is ``naive`` shifted by log N per sample): a
    constant has no gradient, so on every replicate batch all four gradients are equal to rounding. Their values
    are wrong by (D-1) log(N B) but training with them follows exactly the mws (= naive) gradient. The published
    variants whose error is not a constant (``mss_shipped``, ``mss_per_dim``) do not have mss's gradient."""
    problem = linear_problem(256, 3, P=3, seed=4)
    base = _grads(problem, "naive")
    for name in ("mws", "tc_no_constant"):
        other = _grads(problem, name)
        for q in QUANTITIES:
            assert same_gradient(other[q], base[q], rtol=1e-10), (name, q)
    mss = _grads(problem, "mss")
    for name in ("mss_shipped", "mss_per_dim"):
        other = _grads(problem, name)
        assert not same_gradient(other["tc"], mss["tc"], rtol=1e-6), name


@pytest.mark.skipif("calc_mi" not in ESTIMATORS, reason="calc_mi is not registered")
def test_the_analytic_entropy_of_calc_mi_does_not_change_the_mi_gradient():
    """``calc_mi`` replaces log q(z_i|n_i) by its mean -H(q(z|n_i)) in mi. At z = mu + sigma eps,
    log q(z|n) = -1/2 sum_d (log 2 pi + logvar_d + eps_d^2) has the same gradient in (mu, logvar) as -H, so the mi
    gradient is naive's on every replicate (the value's variance changes, the gradient does not)."""
    problem = linear_problem(256, 3, P=3, seed=4)
    assert same_gradient(_grads(problem, "calc_mi")["mi"], _grads(problem, "naive")["mi"], rtol=1e-10)


def test_estimator_gradients_reject_bad_input():
    problem = linear_problem(32, 2, P=2)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimator_gradients(problem, "nope", 8, replicates=2)
    with pytest.raises(ValueError, match="batch_size"):
        estimator_gradients(problem, "mss", 64, replicates=2)
    with pytest.raises(ValueError, match="batch_size"):
        estimator_gradients(problem, "mss", 1, replicates=2)
    with pytest.raises(ValueError, match="replicates"):
        estimator_gradients(problem, "mss", 8, replicates=1)
    with pytest.raises(ValueError, match="needs k"):
        estimator_gradients(problem, "iwae", 8, replicates=2)
    with pytest.raises(ValueError, match="quantities"):
        estimator_gradients(problem, "mss", 8, replicates=2, quantities=("avg_kl",))
    with pytest.raises(ValueError, match="threads"):
        with threads(0):
            pass


def test_replicates_are_common_random_numbers():
    """Every estimator sees the same batches and draws: mi + kl_agg = mean_i [log q(z_i|n_i) - log p(z_i)] does not
    depend on the estimator, so it agrees between exact and mss replicate by replicate."""
    problem = linear_problem(64, 2, P=2, seed=1)
    a = estimator_gradients(problem, "exact", 8, replicates=3).values
    b = estimator_gradients(problem, "mss", 8, replicates=3).values
    assert torch.allclose(a["mi"] + a["kl_agg"], b["mi"] + b["kl_agg"], rtol=1e-12, atol=1e-12)
