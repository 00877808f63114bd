"""Linear-Gaussian references: log p(x), posteriors, KL and Renyi closed forms, PPCA, the task registry.

Closed forms are checked against independent computations (torch.distributions, a brute-force
numerical integral, scipy optimisation, scikit-learn's PCA, Monte Carlo with standard errors).
Statistical tests: fixed seeds, |estimate - truth| < Z * SE with Z = 4.
"""
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from estimators.linear_gaussian import (
    LOG_PX_ESTIMATORS,
    LOG_PX_TASKS,
    Gaussian,
    LinearGaussian,
    LogPxTask,
    diagonal_approximation,
    digits_ppca,
    fit_ppca,
    gaussian_kl,
    gaussian_renyi,
    log_px_reference,
    mismatched_encoder,
    predicted_bias,
    random_linear_gaussian,
    sample_log_px_estimates,
)

Z = 4.0
F64 = torch.float64


def _mvn(g: Gaussian) -> MultivariateNormal:
    return MultivariateNormal(g.mean, covariance_matrix=g.cov)


def _models():
    return [random_linear_gaussian(2, 6, seed=0), random_linear_gaussian(8, 24, seed=3), digits_ppca(4)]


# --- log p(x) and the posterior ----------------------------------------------------------------

def test_log_marginal_matches_torch_mvn():
    for model in _models():
        x = model.sample(5, torch.Generator().manual_seed(1))
        cov = model.W @ model.W.T + torch.diag(model.psi)
        want = MultivariateNormal(model.b, covariance_matrix=cov).log_prob(x)
        torch.testing.assert_close(model.log_marginal(x), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_log_marginal_matches_brute_force_integral(latent_dim):
    # log int p(x|z) p(z) dz by the trapezoid rule on a fine grid (spectrally accurate for a
    # smooth integrand that vanishes at the edges), using only log_joint: no Gaussian identity.
    model = random_linear_gaussian(latent_dim, 5, seed=7)
    x = model.sample(1, torch.Generator().manual_seed(8))[0]
    post = model.posterior(x)
    assert post.mean.abs().max() + 8 * post.cov.diagonal().sqrt().max() < 10  # grid covers the mass
    n = 4001 if latent_dim == 1 else 801
    axis = torch.linspace(-10, 10, n, dtype=F64)
    grid = torch.stack(torch.meshgrid(*[axis] * latent_dim, indexing="ij"), -1).reshape(-1, latent_dim)
    log_h = latent_dim * math.log(float(axis[1] - axis[0]))
    integral = torch.logsumexp(model.log_joint(x, grid), 0) + log_h
    assert integral.item() == pytest.approx(model.log_marginal(x).item(), abs=1e-9)


def test_posterior_is_bayes_rule():
    # log p(z|x) = log p(x, z) - log p(x) at arbitrary z
    for model in _models():
        x = model.sample(1, torch.Generator().manual_seed(2))[0]
        z = torch.randn(50, model.latent_dim, generator=torch.Generator().manual_seed(3), dtype=F64) * 2
        want = model.log_joint(x, z) - model.log_marginal(x)
        torch.testing.assert_close(model.posterior(x).log_prob(z), want, rtol=1e-10, atol=1e-8)


def test_gaussian_log_prob_and_sampling_moments():
    post = LOG_PX_TASKS["fa-d8-exact"].problem().posterior
    z = post.sample((20000,), torch.Generator().manual_seed(4))
    torch.testing.assert_close(post.log_prob(z[:100]), _mvn(post).log_prob(z[:100]), rtol=1e-12, atol=1e-10)
    sd = post.cov.diagonal().sqrt()
    assert ((z.mean(0) - post.mean).abs() < Z * sd / math.sqrt(20000)).all()
    # variance of each coordinate: SE of the sample variance is sd^2 sqrt(2 / n) for a normal
    assert ((z.var(0) - sd**2).abs() < Z * sd**2 * math.sqrt(2 / 20000)).all()


# --- closed forms: KL, Renyi ---------------------------------------------------------------------

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


# --- PPCA on digits ------------------------------------------------------------------------------

def test_ppca_matches_sklearn_pca():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    data = load_digits().data / 16.0
    n = data.shape[0]
    pca = PCA(n_components=4, svd_solver="full").fit(data)
    model = fit_ppca(torch.as_tensor(data), 4, rotation_seed=None)
    cov = (model.W @ model.W.T + torch.diag(model.psi)).numpy()
    # sklearn's covariance uses the n - 1 divisor, the maximum-likelihood fit uses n
    np.testing.assert_allclose(cov * n / (n - 1), pca.get_covariance(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.b.numpy(), pca.mean_, rtol=1e-12)
    # W^T W is diagonal without a rotation; a rotation leaves p(x) unchanged but correlates p(z|x)
    wtw = model.W.T @ model.W
    assert (wtw - torch.diag(wtw.diagonal())).abs().max() < 1e-10 * wtw.abs().max()
    rotated = digits_ppca(4)
    x = torch.as_tensor(data[:20])
    torch.testing.assert_close(rotated.log_marginal(x), model.log_marginal(x), rtol=1e-10, atol=1e-9)
    rw = rotated.W.T @ rotated.W
    assert (rw - torch.diag(rw.diagonal())).abs().max() > 0.1 * rw.abs().max()


def test_ppca_is_a_stationary_point_of_the_likelihood():
    from sklearn.datasets import load_digits

    data = torch.as_tensor(load_digits().data / 16.0)
    model = fit_ppca(data, 3, rotation_seed=1)
    w = model.W.clone().requires_grad_(True)
    b = model.b.clone().requires_grad_(True)
    log_s2 = torch.log(model.psi[0]).clone().requires_grad_(True)
    cov = w @ w.T + torch.exp(log_s2) * torch.eye(64, dtype=F64)
    ll = MultivariateNormal(b, covariance_matrix=cov).log_prob(data).mean()
    ll.backward()
    for g in (w.grad, b.grad, log_s2.grad):
        assert g.abs().max() < 1e-8


# --- encoders and the task registry ----------------------------------------------------------------

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
    from estimators import iwae_jackknife

    torch.testing.assert_close(sample_log_px_estimates("fa-d2-mismatched", "iwae_jackknife2", 8, 100, g()),
                               iwae_jackknife(lw, 2))
    # several sampling blocks (k * P large), and jackknife-2 sub-blocks of one replicate (k^2 large)
    many = sample_log_px_estimates("fa-digits-d4-mismatched", "iwae_jackknife1", 2048, 20, g())
    assert many.shape == (20,) and torch.isfinite(many).all()
    assert sample_log_px_estimates("fa-d2-mismatched", "iwae_jackknife2", 1500, 3, g()).shape == (3,)


# --- bad input -----------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    w, b, psi = torch.ones(3, 2), torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="psi .* must be positive"):
        LinearGaussian(w, b, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="b must have 3 entries"):
        LinearGaussian(w, torch.zeros(4), psi)
    with pytest.raises(ValueError, match="W must be 2-dimensional"):
        LinearGaussian(torch.ones(3), b, psi)
    with pytest.raises(ValueError, match="psi holds"):
        LinearGaussian(w, b, torch.tensor([1.0, math.nan, 1.0]))
    model = LinearGaussian(w, b, psi)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        model.log_marginal(torch.zeros(2))
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        model.log_joint(torch.zeros(3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian(torch.zeros(2), torch.ones(2, 2))  # singular
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian(torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="cov must be symmetric"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"cov must be \(2, 2\)"):
        Gaussian(torch.zeros(2), torch.eye(3))
    p = Gaussian(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="same dimension"):
        gaussian_kl(p, Gaussian(torch.zeros(3), torch.eye(3)))
    with pytest.raises(ValueError, match="alpha must be"):
        gaussian_renyi(p, p, 1.0)
    with pytest.raises(ValueError, match="scale positive"):
        mismatched_encoder(p, 0.0, 0.0)
    with pytest.raises(ValueError, match="latent_dim must be in"):
        fit_ppca(torch.randn(10, 3, dtype=F64), 3)
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
