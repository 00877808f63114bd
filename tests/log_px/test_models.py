"""Linear-Gaussian models (estimators/log_px/models.py): log p(x), the posterior, PPCA on the digits.

Independent references: torch.distributions, a brute-force numerical integral, Bayes' rule at
arbitrary points, scikit-learn's PCA, and autograd at the maximum-likelihood fit.
"""
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from estimators.log_px import LinearGaussian, digits_ppca, fit_ppca, random_linear_gaussian
from tests.helpers import F64


def _models():
    return [random_linear_gaussian(2, 6, seed=0), random_linear_gaussian(8, 24, seed=3), digits_ppca(4)]


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
    with pytest.raises(ValueError, match="posterior takes one data point"):
        model.posterior(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="latent_dim must be in"):
        fit_ppca(torch.randn(10, 3, dtype=F64), 3)
    with pytest.raises(ValueError, match="latent_dim and observed_dim must be >= 1"):
        random_linear_gaussian(0, 3)
