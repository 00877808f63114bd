"""Field structure behind the closed-form references: is_product_grid and dedupe.

Independent references: the grid scenario's construction (a product by design), hand-made grids,
perturbations that break the product, and direct counting for dedupe.
"""
from __future__ import annotations

import math

import pytest
import torch

from estimators.references import is_product_grid
from estimators.references.structure import dedupe
from estimators.scenarios import make_scenario


@pytest.mark.parametrize("N,D,separation,seed", [(64, 3, 0.8, 0), (2000, 6, 0.5, 1), (60, 2, 1.0, 2), (12, 4, 0.0, 3)])
def test_is_product_grid_true(N, D, separation, seed):
    field = make_scenario("grid", N=N, D=D, separation=separation, seed=seed)
    assert is_product_grid(field.mu, field.logvar)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    assert is_product_grid(field.mu[perm], field.logvar[perm])
    assert is_product_grid(field.mu.float(), field.logvar.float())


def test_is_product_grid_false():
    field = make_scenario("grid", N=60, D=3, separation=0.8, seed=0)
    mu, logvar = field.mu, field.logvar
    assert not is_product_grid(mu[1:], logvar[1:])  # one row removed
    mu2 = mu.clone()
    mu2[5, 1] += 1e-9  # one mean perturbed
    assert not is_product_grid(mu2, logvar)
    lv2 = logvar.clone()
    lv2[5, 2] += 1e-9  # one variance no longer a function of the mean
    assert not is_product_grid(mu, lv2)
    assert not is_product_grid(torch.cat([mu, mu[:1]]), torch.cat([logvar, logvar[:1]]))  # a duplicate
    swapped = mu.clone()
    swapped[[0, 1], 0] = swapped[[1, 0], 0]  # same levels, but one combination twice, one missing
    if not torch.equal(swapped, mu):
        assert not is_product_grid(swapped, logvar)
    for name in ("gaussian", "collapsed", "clustered", "heteroscedastic"):
        other = make_scenario(name, N=60, D=3, separation=0.8)
        assert not is_product_grid(other.mu, other.logvar), name


def test_is_product_grid_hand_made():
    a, b = torch.tensor([-1.0, 0.5]), torch.tensor([0.0, 1.0, 3.0])
    mu = torch.cartesian_prod(a, b)
    logvar = torch.stack([mu[:, 0] * 2, torch.full((6,), -1.0)], 1)  # logvar a function of the level
    assert is_product_grid(mu, logvar)
    assert is_product_grid(torch.cat([mu, mu]), torch.cat([logvar, logvar]))  # every cell twice
    assert not is_product_grid(mu[[0, 1, 2, 3, 4, 4]], logvar[[0, 1, 2, 3, 4, 4]])


def test_is_product_grid_validates():
    with pytest.raises(ValueError, match="mu"):
        is_product_grid(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        is_product_grid(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="mu"):
        is_product_grid(torch.tensor([[float("nan")]]), torch.zeros(1, 1))


def test_dedupe_merges_identical_components_by_count():
    mu = torch.tensor([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0], [0.0, 1.0], [0.0, 5.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    mu_u, lv_u, log_w, inverse = dedupe(mu, logvar)
    assert mu_u.shape == (3, 2) and lv_u.shape == (3, 2)
    torch.testing.assert_close(mu_u[inverse], mu, rtol=0, atol=0)  # every row maps back to itself
    torch.testing.assert_close(lv_u[inverse], logvar, rtol=0, atol=0)
    counts = {tuple(r.tolist()): 0 for r in mu_u}
    for r in mu.tolist():
        counts[tuple(r)] += 1
    want = torch.tensor([math.log(counts[tuple(r.tolist())] / 5) for r in mu_u], dtype=torch.float64)
    torch.testing.assert_close(log_w, want, rtol=0, atol=1e-15)
    assert float(torch.logsumexp(log_w, 0)) == pytest.approx(0.0, abs=1e-15)
    # same mean, different variance: two components
    assert dedupe(mu[:1].repeat(2, 1), torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64))[0].shape == (2, 2)
