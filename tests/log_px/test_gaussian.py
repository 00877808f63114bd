"""Full-covariance Gaussians (estimators/log_px/gaussian.py): log_prob, KL, Renyi, the encoders.

Closed forms are checked against independent computations: torch.distributions, Monte Carlo with a
delta-method standard error, the univariate formula of Gil et al. (2013), and scipy optimisation.
Statistical tests: fixed seeds, |estimate - truth| < Z * SE with Z = 4.
"""
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from estimators.log_px import (LOG_PX_TASKS, Gaussian, diagonal_approximation, gaussian_kl, gaussian_renyi,
                               log_px_reference, mismatched_encoder)
from tests.helpers import F64, Z


def _mvn(g: Gaussian) -> MultivariateNormal:
    return MultivariateNormal(g.mean, covariance_matrix=g.cov)


def test_gaussian_log_prob_and_sampling_moments():
    post = LOG_PX_TASKS["fa-d8-exact"].problem().posterior
    z = post.sample((20000,), torch.Generator().manual_seed(4))
    torch.testing.assert_close(post.log_prob(z[:100]), _mvn(post).log_prob(z[:100]), rtol=1e-12, atol=1e-10)
    sd = post.cov.diagonal().sqrt()
    assert ((z.mean(0) - post.mean).abs() < Z * sd / math.sqrt(20000)).all()
    # variance of each coordinate: SE of the sample variance is sd^2 sqrt(2 / n) for a normal
    assert ((z.var(0) - sd**2).abs() < Z * sd**2 * math.sqrt(2 / 20000)).all()


def test_gaussian_kl_matches_torch():
    prob = LOG_PX_TASKS["fa-d8-mismatched"].problem()
    for q in (prob.encoder, diagonal_approximation(prob.posterior), prob.posterior):
        want = kl_divergence(_mvn(q), _mvn(prob.posterior)).item()
        assert gaussian_kl(q, prob.posterior) == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("task, scale, alpha", [
    ("fa-d2-mismatched", None, 2.0),
    ("fa-d2-diagonal", None, 2.0),
    ("fa-d2-exact", 0.8, 2.0),   # deflated: D_2 finite, D_4 finite (4 - 3/0.8 > 0)
    ("fa-d8-mismatched", None, 2.0),
    ("fa-d2-mismatched", None, 3.0),
    ("fa-d2-mismatched", None, 0.5),
])
def test_renyi_matches_monte_carlo(task, scale, alpha):
    # D_alpha(p || q) = log E_q[(p/q)^alpha] / (alpha - 1), estimated by a log-mean-exp under q
    # with a delta-method SE (finite when D_{2 alpha} is, asserted first).
    prob = LOG_PX_TASKS[task].problem()
    p = prob.posterior
    q = prob.encoder if scale is None else mismatched_encoder(p, 0.0, scale)
    if alpha > 1:
        assert math.isfinite(gaussian_renyi(p, q, 2 * alpha))
    n = 200000
    z = q.sample((n,), torch.Generator().manual_seed(5))
    y = alpha * (p.log_prob(z) - q.log_prob(z))
    m = y.max()
    ratio = torch.exp(y - m)
    mc = (m + torch.log(ratio.mean())).item() / (alpha - 1)
    se = (ratio.std() / ratio.mean()).item() / math.sqrt(n) / abs(alpha - 1)
    closed = gaussian_renyi(p, q, alpha)
    assert se < 0.05 * max(abs(closed), 0.01)  # the check is informative
    assert abs(mc - closed) < Z * se, (mc, closed, se)


def test_renyi_closed_form_identities():
    one = lambda m, v: Gaussian(torch.tensor([m], dtype=F64), torch.tensor([[v]], dtype=F64))  # noqa: E731
    # univariate form (Gil et al. 2013): log(s2/s1) + log(s2^2/s_a^2)/(2(a-1)) + a (m1-m2)^2 / (2 s_a^2)
    for a in (0.5, 2.0, 3.0):
        m1, v1, m2, v2 = 0.3, 0.7, -0.4, 1.6
        va = a * v2 + (1 - a) * v1
        want = 0.5 * math.log(v2 / v1) + math.log(v2 / va) / (2 * (a - 1)) + a * (m1 - m2) ** 2 / (2 * va)
        assert gaussian_renyi(one(m1, v1), one(m2, v2), a) == pytest.approx(want, rel=1e-12)
    # alpha -> 1 is KL(p || q); equal arguments give 0
    prob = LOG_PX_TASKS["fa-d8-mismatched"].problem()
    kl = gaussian_kl(prob.posterior, prob.encoder)
    for a in (1 - 1e-5, 1 + 1e-5):
        assert gaussian_renyi(prob.posterior, prob.encoder, a) == pytest.approx(kl, rel=1e-4)
    assert gaussian_renyi(prob.posterior, prob.posterior, 2.0) == pytest.approx(0.0, abs=1e-12)
    # mismatched encoder N(m + s sd, c S): D_2 = s^2 sd' S^-1 sd / (2c - 1) + D (log c - log(2c - 1) / 2)
    p = prob.posterior
    sd = p.cov.diagonal().sqrt()
    for s, c in ((0.0, 1.5), (0.7, 1.0), (0.3, 0.6)):
        want = s**2 * float(sd @ p.precision @ sd) / (2 * c - 1) + p.dim * (math.log(c) - 0.5 * math.log(2 * c - 1))
        assert gaussian_renyi(p, mismatched_encoder(p, s, c), 2.0) == pytest.approx(want, rel=1e-9)


def test_renyi_is_infinite_when_the_integral_diverges():
    p = LOG_PX_TASKS["fa-d2-exact"].problem().posterior
    assert gaussian_renyi(p, mismatched_encoder(p, 0.0, 0.5), 2.0) == math.inf  # 2 S_q - S_p singular
    assert gaussian_renyi(p, mismatched_encoder(p, 0.0, 0.4), 2.0) == math.inf
    assert math.isfinite(gaussian_renyi(p, mismatched_encoder(p, 0.0, 0.51), 2.0))
    assert gaussian_renyi(p, mismatched_encoder(p, 0.0, 0.4), 0.5) < math.inf  # alpha < 1 always finite
    # the mean-field diagonal under-covers strongly correlated posteriors
    assert log_px_reference("fa-d8-diagonal")["renyi2"] == math.inf


def test_diagonal_approximation_minimises_reverse_kl():
    from scipy.optimize import minimize

    p = LOG_PX_TASKS["fa-d8-diagonal"].problem().posterior
    q = diagonal_approximation(p)
    torch.testing.assert_close(1.0 / q.cov.diagonal(), p.precision.diagonal())
    assert torch.count_nonzero(q.cov - torch.diag(q.cov.diagonal())) == 0
    d = p.dim
    lam, mu = p.precision.numpy(), p.mean.numpy()
    log_det_lam = np.linalg.slogdet(lam)[1]

    def kl(theta):  # KL(N(m, diag s) || N(mu, Lam^-1)), written out independently in numpy
        m, log_s = theta[:d], theta[d:]
        return 0.5 * (lam.diagonal() @ np.exp(log_s) + (m - mu) @ lam @ (m - mu) - d - log_s.sum() - log_det_lam)

    res = minimize(kl, np.concatenate([mu + 0.5, np.zeros(d)]), method="BFGS", options={"gtol": 1e-10})
    assert res.fun == pytest.approx(gaussian_kl(q, p), abs=1e-8)
    np.testing.assert_allclose(res.x[:d], q.mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.exp(res.x[d:]), q.cov.diagonal().numpy(), rtol=1e-4)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian(torch.zeros(2), torch.ones(2, 2))  # singular
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian(torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="cov must be symmetric"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"cov must be \(2, 2\)"):
        Gaussian(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="mean holds"):
        Gaussian(torch.tensor([0.0, math.nan]), torch.eye(2))
    p = Gaussian(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        p.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="same dimension"):
        gaussian_kl(p, Gaussian(torch.zeros(3), torch.eye(3)))
    with pytest.raises(TypeError, match="two Gaussian objects"):
        gaussian_kl(p, "p")
    with pytest.raises(ValueError, match="alpha must be"):
        gaussian_renyi(p, p, 1.0)
    with pytest.raises(ValueError, match="scale positive"):
        mismatched_encoder(p, 0.0, 0.0)
