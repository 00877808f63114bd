"""IWAE-k bound and jackknife: brute-force loops, identities, and bias against closed-form predictions.

Statistical tests use fixed seeds and |estimate - truth| < Z * SE with Z = 4 (two-sided failure rate
~6e-5 per assertion). The bias tests subtract the control variate c = mean_i w_i / p(x) - 1, whose
mean is exactly 0 (importance sampling is unbiased) and which removes the O(k^-1/2) linear term of
every estimator, so SEs are small enough to resolve 1/k and 1/k^2 terms. It needs D_2 and D_4
finite, which holds for the mismatched encoders used (inflated covariance).
"""
import itertools
import math

import pytest
import torch

from estimators import iwae_bound, iwae_jackknife
from estimators.log_px import (LOG_PX_TASKS, gaussian_renyi, iwae_bias_expansion, jackknife_coefficients,
                               log_px_reference)
from tests.helpers import F64, Z
EPS32 = torch.finfo(torch.float32).eps


# --- brute-force references ------------------------------------------------------------------

def _bound_loop(log_w: list[float]) -> float:
    m = max(log_w)
    return m + math.log(math.fsum(math.exp(v - m) for v in log_w) / len(log_w))


def _jackknife_loop(log_w: list[float], order: int) -> float:
    """sum_j c_j * (mean of L over every subset that leaves j weights out), one subset at a time."""
    k = len(log_w)
    c = jackknife_coefficients(k, order)
    total = 0.0
    for j in range(order + 1):
        subsets = list(itertools.combinations(log_w, k - j))
        total += c[j] * math.fsum(_bound_loop(list(s)) for s in subsets) / len(subsets)
    return total


def _random_log_w(shape, seed, scale=3.0, offset=-50.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64) * scale + offset


# --- iwae_bound --------------------------------------------------------------------------------

def test_iwae_bound_matches_loop_any_batch_shape_and_dim():
    log_joint = _random_log_w((3, 7, 4), seed=0)
    log_q = _random_log_w((3, 7, 4), seed=1, offset=0.0)
    for dim in (0, 1, 2, -1):
        out = iwae_bound(log_joint, log_q, dim=dim)
        lw = (log_joint - log_q).movedim(dim, -1)
        assert out.shape == lw.shape[:-1]
        for idx in itertools.product(*(range(s) for s in lw.shape[:-1])):
            assert out[idx].item() == pytest.approx(_bound_loop(lw[idx].tolist()), abs=1e-12)
    assert iwae_bound(log_joint, log_q, k=4).shape == (3, 7)


def test_iwae_bound_is_stable_and_shift_equivariant():
    lw = _random_log_w((5, 64), seed=2, scale=30.0, offset=-1e4)  # exp underflows without max-subtraction
    out = iwae_bound(lw, torch.zeros_like(lw))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, iwae_bound(lw + 1e4, torch.zeros_like(lw)) - 1e4, rtol=0, atol=1e-9)
    # one weight only: L_1 is that log weight; all weights equal: L_k is that value.
    assert iwae_bound(lw[:, :1], torch.zeros_like(lw[:, :1])).equal(lw[:, 0])
    same = torch.full((64,), -3.25, dtype=F64)
    assert iwae_bound(same, torch.zeros_like(same)).item() == pytest.approx(-3.25, abs=1e-14)


def test_iwae_bound_float32():
    lw = _random_log_w((8, 256), seed=3, scale=1.0, offset=-100.0).float()
    out32 = iwae_bound(lw, torch.zeros_like(lw))
    out64 = iwae_bound(lw.double(), torch.zeros_like(lw, dtype=F64))
    assert out32.dtype == torch.float32
    # float32 logsumexp: a few ulps of |L| + log k
    tol = 8 * EPS32 * (lw.abs().max().item() + math.log(256))
    assert (out32.double() - out64).abs().max().item() < tol


def test_iwae_bound_gradient_is_normalised_weights():
    lw = _random_log_w((4, 16), seed=4).requires_grad_(True)
    iwae_bound(lw, torch.zeros_like(lw)).sum().backward()
    torch.testing.assert_close(lw.grad, torch.softmax(lw.detach(), -1), rtol=1e-12, atol=1e-14)


def test_iwae_bound_bad_input():
    a = torch.zeros(3, 5, dtype=F64)
    with pytest.raises(ValueError, match="log_joint and log_q"):
        iwae_bound(a, torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="k = 4 does not match"):
        iwae_bound(a, a, k=4)
    with pytest.raises(ValueError, match="k must be at least 1"):
        iwae_bound(torch.zeros(3, 0), torch.zeros(3, 0))
    with pytest.raises(ValueError, match="NaN"):
        iwae_bound(torch.full((2, 3), math.nan), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="log_joint must have a floating dtype"):
        iwae_bound(torch.zeros(3, 5, dtype=torch.long), a)
    with pytest.raises(ValueError, match="dim = 2 is out of range"):
        iwae_bound(a, a, dim=2)
    with pytest.raises(ValueError, match="scalar"):
        iwae_bound(torch.tensor(1.0), torch.tensor(0.0))


# --- iwae_jackknife ---------------------------------------------------------------------------

def test_jackknife_coefficients_cancel_bias_terms():
    # Defining property: sum_j c_j = 1 and sum_j c_j (k-j)^-r = 0 for r = 1..order.
    for order in (1, 2):
        for k in (order + 1, 5, 64, 1000):
            c = jackknife_coefficients(k, order)
            assert math.fsum(c) == pytest.approx(1.0, abs=1e-9)
            for r in range(1, order + 1):
                terms = [cj / (k - j) ** r for j, cj in enumerate(c)]
                assert math.fsum(terms) == pytest.approx(0.0, abs=1e-12 * max(map(abs, c)))
    assert jackknife_coefficients(10, 1) == [10, -9]
    assert jackknife_coefficients(10, 2) == [50.0, -81.0, 32.0]


@pytest.mark.parametrize("order", [1, 2])
def test_jackknife_matches_leave_out_loop(order):
    for k in range(order + 1, 8):
        for seed in range(3):
            lw = _random_log_w((2, k), seed=10 * k + seed)
            lw[1, seed % k] += 40.0  # one dominant weight: the leave-outs that drop it must not cancel
            out = iwae_jackknife(lw, order=order)
            for row in range(2):
                want = _jackknife_loop(lw[row].tolist(), order)
                assert out[row].item() == pytest.approx(want, rel=1e-12, abs=1e-10)
    # samples along another axis
    lw = _random_log_w((5, 3, 2), seed=99)
    torch.testing.assert_close(iwae_jackknife(lw, order, dim=0), iwae_jackknife(lw.movedim(0, -1), order))


@pytest.mark.parametrize("order", [1, 2])
def test_jackknife_float32_costs_no_k_amplification(order):
    # The coefficients grow like k^order; a direct k L_k - (k-1) mean L_{k-1} in float32 would
    # err by ~k^order eps |L| (~0.2 nats here for order 2). Same rounded inputs in both dtypes.
    k = 256
    lw = _random_log_w((6, k), seed=5, scale=1.0, offset=-100.0).float()
    lw[0, 0] += 15.0  # dominant weight in one row
    out32 = iwae_jackknife(lw, order)
    out64 = iwae_jackknife(lw.double(), order)
    assert out32.dtype == torch.float32
    tol = 8 * EPS32 * lw.abs().max().item()  # a few ulps of |L|, as for the bound itself
    assert (out32.double() - out64).abs().max().item() < tol


@pytest.mark.parametrize("order", [1, 2])
def test_jackknife_gradients(order):
    lw = _random_log_w((3, 6), seed=6, scale=2.0, offset=0.0).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: iwae_jackknife(x, order), (lw,))
    # adding a constant to every log weight adds it to the estimate: gradients sum to one
    lw.grad = None
    iwae_jackknife(lw, order).sum().backward()
    torch.testing.assert_close(lw.grad.sum(-1), torch.ones(3, dtype=F64))


def test_jackknife_bad_input():
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        iwae_jackknife(torch.zeros(4), order=3)
    with pytest.raises(ValueError, match="k must be at least 2"):
        iwae_jackknife(torch.zeros(3, 1), order=1)
    with pytest.raises(ValueError, match="k must be at least 3"):
        iwae_jackknife(torch.zeros(3, 2), order=2)
    with pytest.raises(ValueError, match="NaN"):
        iwae_jackknife(torch.tensor([0.0, math.nan, 1.0]))


def test_bias_expansion_formula():
    assert math.isnan(iwae_bias_expansion(10, math.inf))
    assert math.isnan(iwae_bias_expansion(10, 0.3, math.inf))
    assert iwae_bias_expansion(10, 0.0) == 0.0
    assert iwae_bias_expansion(8, math.log(3.0)) == pytest.approx(-2.0 / 16)
    # v ~ 2 Bernoulli(1/2): mu2 = 1, mu3 = 0, mu4 = 1; E v^2 = 2, E v^3 = 4, E v^4 = 8
    d2, d3, d4 = math.log(2.0), math.log(4.0) / 2, math.log(8.0) / 3
    assert iwae_bias_expansion(4, d2, d3) == pytest.approx(-1 / 8 - 0.75 / 16)
    assert iwae_bias_expansion(4, d2, d3, d4) == pytest.approx(-1 / 8 - 0.75 / 16 + (0.5 - 2.5) / 64)


def test_bias_expansion_order_against_an_exact_bias():
    # v = 1/2 or 3/2 with probability 1/2 (mean 1): E log(mean of k) is an exact binomial sum.
    # Truncating the expansion after the 1/k^n term must leave a remainder ~ k^-(n+1).
    d2, d3, d4 = math.log(1.25), math.log(1.75) / 2, math.log(2.5625) / 3  # E v^2, E v^3, E v^4

    def exact(k):
        return math.fsum(math.comb(k, j) * 0.5**k * math.log((0.5 * k + j) / k) for j in range(k + 1))

    for n, args in ((1, (d2,)), (2, (d2, d3)), (3, (d2, d3, d4))):
        r64, r256 = (exact(k) - iwae_bias_expansion(k, *args) for k in (64, 256))
        order = math.log(r64 / r256) / math.log(4.0)
        assert n + 0.75 < order < n + 1.25, (n, order)


def test_bias_expansion_needs_renyi3_for_renyi4():
    d2, d3, d4 = math.log(2.0), math.log(4.0) / 2, math.log(8.0) / 3
    with pytest.raises(ValueError, match="renyi4 needs renyi3"):
        iwae_bias_expansion(4, d2, None, d4)


# --- statistical behaviour on linear-Gaussian models -------------------------------------------

def _log_weights(task: str, k: int, replicates: int, seed: int) -> torch.Tensor:
    prob = LOG_PX_TASKS[task].problem()
    z = prob.encoder.sample((replicates, k), torch.Generator().manual_seed(seed))
    return prob.model.log_joint(prob.x, z) - prob.encoder.log_prob(z)


def _bias_and_se(estimates: torch.Tensor, log_w: torch.Tensor, log_px: float) -> tuple[float, float]:
    """Bias of the estimates with the exactly-mean-zero control variate mean_i w_i/p(x) - 1 removed."""
    d = estimates - log_px - torch.expm1(torch.logsumexp(log_w - log_px, -1) - math.log(log_w.shape[-1]))
    return d.mean().item(), d.std().item() / math.sqrt(d.numel())


def test_mismatched_task_has_finite_moments():
    # the control-variate SEs below need E_q[(p/q)^4] < inf, i.e. D_4 finite
    prob = LOG_PX_TASKS["fa-d2-mismatched"].problem()
    assert math.isfinite(gaussian_renyi(prob.posterior, prob.encoder, 4.0))


def test_bound_rises_with_k_on_a_doubling_grid():
    # Common random numbers: 128 draws per replicate; A_k = mean over the 128/k disjoint blocks of
    # L_k, so A_2k - A_k is a paired, unbiased estimate of E L_2k - E L_k > 0.
    ref = log_px_reference("fa-d2-mismatched")["value"]
    lw = _log_weights("fa-d2-mismatched", 128, 2000, seed=11)
    avg = {k: iwae_bound(lw.reshape(2000, 128 // k, k), torch.zeros(2000, 128 // k, k, dtype=F64)).mean(-1)
           for k in (1, 2, 4, 8, 16, 32, 64, 128)}
    for k in (1, 2, 4, 8, 16, 32, 64):
        diff = avg[2 * k] - avg[k]
        se = diff.std().item() / math.sqrt(diff.numel())
        assert diff.mean().item() > Z * se, (k, diff.mean().item(), se)
    assert avg[128].mean().item() < ref + Z * avg[128].std().item() / math.sqrt(2000)


@pytest.mark.parametrize("k, replicates", [(64, 4000), (256, 2000)])
def test_large_k_bias_matches_renyi2_prediction(k, replicates):
    # fa-d2-mismatched: D_2 = 0.43, bias -(e^D2 - 1)/(2k) = -4.2e-3 at k = 64, SE ~1e-4;
    # the 1/k^2 term (-3e-5 at k = 64) is below the SE at these k.
    ref = log_px_reference("fa-d2-mismatched")
    lw = _log_weights("fa-d2-mismatched", k, replicates, seed=k)
    bias, se = _bias_and_se(iwae_bound(lw, torch.zeros_like(lw)), lw, ref["value"])
    predicted = iwae_bias_expansion(k, ref["renyi2"])
    assert abs(predicted) > 5 * Z * se  # the test resolves the prediction to 20% or better
    assert abs(bias - predicted) < Z * se, (bias, predicted, se)


def test_higher_order_terms_matter_at_small_k():
    # At k = 4 the 1/k^2 term (mu3/3 - 3 mu2^2/4)/k^2 = -8.5e-3 is ~10 SE and the 1/k^3 term
    # (-1.3e-3) ~1.5 SE: the first-order prediction fails; the expansion through 1/k^3 (D_3 and
    # D_4 in closed form) holds, its O(k^-4) remainder measured at ~0.2 SE.
    task, k = "fa-d2-mismatched", 4
    ref = log_px_reference(task)
    prob = LOG_PX_TASKS[task].problem()
    d3, d4 = (gaussian_renyi(prob.posterior, prob.encoder, a) for a in (3.0, 4.0))
    lw = _log_weights(task, k, 20000, seed=7)
    bias, se = _bias_and_se(iwae_bound(lw, torch.zeros_like(lw)), lw, ref["value"])
    first = iwae_bias_expansion(k, ref["renyi2"])
    third = iwae_bias_expansion(k, ref["renyi2"], d3, d4)
    assert abs(bias - first) > Z * se
    assert abs(bias - third) < Z * se, (bias, third, se)


@pytest.mark.parametrize("k", [8, 16])
def test_jackknife_reduces_bias(k):
    # |bias| upper confidence limit of each jackknife below the lower limit of IWAE's |bias|.
    ref = log_px_reference("fa-d2-mismatched")["value"]
    lw = _log_weights("fa-d2-mismatched", k, 4000, seed=100 + k)
    bias_l, se_l = _bias_and_se(iwae_bound(lw, torch.zeros_like(lw)), lw, ref)
    assert bias_l + Z * se_l < 0  # IWAE is biased low
    for order in (1, 2):
        bias_j, se_j = _bias_and_se(iwae_jackknife(lw, order), lw, ref)
        assert abs(bias_j) + Z * se_j < abs(bias_l) - Z * se_l, (order, bias_j, se_j, bias_l, se_l)
