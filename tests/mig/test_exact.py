"""Exact MIG references against dense numerical integration, identities, error bounds and input validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import simpson
from scipy.special import logsumexp

from estimators.mig import mig_from_information, mig_references
from tests.mig.fields import F64, factor_grid, grid_field

BRUTE_TOL = 1e-9  # dense Simpson on a fine grid: its own error is ~1e-12 on these fields


def dense_entropy(mu: np.ndarray, logvar: np.ndarray, points: int = 40_001) -> float:
    """H of the equal-weight 1-D mixture by Simpson's rule on a fine grid over every component +- 14 sd (numpy)."""
    sd = np.exp(0.5 * logvar)
    z = np.linspace((mu - 14 * sd).min(), (mu + 14 * sd).max(), points)
    log_q = logsumexp(-0.5 * (np.log(2 * np.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / np.exp(logvar)[None]),
                      axis=1) - np.log(len(mu))
    return -float(simpson(np.exp(log_q) * log_q, x=z))


def dense_references(mu, lv, factors):
    """I (D, K), H(v_k) and the MIG from the definitions, every entropy by :func:`dense_entropy`."""
    mu, lv, f = mu.numpy(), lv.numpy(), factors.numpy()
    N, D = mu.shape
    K = f.shape[1]
    mi = np.zeros((D, K))
    h_v = []
    for k in range(K):
        values, counts = np.unique(f[:, k], return_counts=True)
        p = counts / N
        h_v.append(float(-(p * np.log(p)).sum()))
        for j in range(D):
            cond = sum(pv * dense_entropy(mu[f[:, k] == v, j], lv[f[:, k] == v, j]) for v, pv in zip(values, p))
            mi[j, k] = dense_entropy(mu[:, j], lv[:, j]) - cond
    top2 = -np.sort(-mi, axis=0)[:2]
    return mi, h_v, float(np.mean((top2[0] - top2[1]) / np.array(h_v)))


def irregular_field(N: int = 30, D: int = 3, seed: int = 3):
    """Factors that are not a grid and not uniform (random values with unequal counts), posteriors following them."""
    g = torch.Generator().manual_seed(seed)
    f = torch.stack([torch.randint(0, 3, (N,), generator=g), (torch.rand(N, generator=g) < 0.3).long()], 1)
    mu = 0.5 * torch.randn(N, D, generator=g, dtype=F64)
    mu[:, 0] += f[:, 0]
    mu[:, 1] += 0.7 * f[:, 1]
    lv = -1.2 + torch.rand(N, D, generator=g, dtype=F64)
    return mu, lv, f


@pytest.mark.parametrize("make", [grid_field, irregular_field], ids=["grid", "irregular"])
def test_information_matches_dense_integration(make):
    mu, lv, f = make()
    ref = mig_references(mu, lv, f)
    mi, h_v, mig = dense_references(mu, lv, f)
    assert torch.allclose(ref["mi"], torch.from_numpy(mi), atol=BRUTE_TOL, rtol=0), (ref["mi"], mi)
    assert np.allclose(ref["factor_entropy"], h_v, atol=1e-14)
    assert abs(ref["mig"] - mig) <= BRUTE_TOL
    # the stated bounds are small and cover the quadrature's actual error (measured against the dense rule)
    assert float(ref["mi_error"].max()) < 1e-8 and ref["mig_error"] < 1e-8
    assert bool(((ref["mi"] - torch.from_numpy(mi)).abs() <= ref["mi_error"] + 1e-11).all())
    assert ref["quadratures"] == mu.shape[1] * (1 + sum(len(torch.unique(f[:, k])) for k in range(f.shape[1])))


def test_conditional_entropies_match_dense_integration(small_grid):
    mu, lv, f = small_grid
    ref = mig_references(mu, lv, f, factor_sizes=[2, 3, 5])  # value 4 of the last factor never occurs: NaN
    assert ref["factor_probabilities"][2][4] == 0.0 and math.isnan(float(ref["conditional_entropies"][2][0, 4]))
    for j in range(mu.shape[1]):
        assert abs(float(ref["entropy"][j]) - dense_entropy(mu[:, j].numpy(), lv[:, j].numpy())) <= BRUTE_TOL
        for v in range(3):
            rows = f[:, 1] == v
            want = dense_entropy(mu[rows, j].numpy(), lv[rows, j].numpy())
            assert abs(float(ref["conditional_entropies"][1][j, v]) - want) <= BRUTE_TOL


def test_latent_independent_of_a_factor_has_zero_information():
    """z_0's posterior depends on factor 0 only: on a full grid q(z_0 | v_1 = v) = q(z_0), so I(z_0; v_1) = 0."""
    f = factor_grid((3, 4))
    g = torch.Generator().manual_seed(5)
    table = torch.randn(3, 2, generator=g, dtype=F64)  # (mean, logvar) of z_0 per value of factor 0
    mu = torch.randn(len(f), 2, generator=g, dtype=F64)
    lv = -1.0 + torch.rand(len(f), 2, generator=g, dtype=F64)
    mu[:, 0], lv[:, 0] = table[f[:, 0], 0], table[f[:, 0], 1] - 1.0
    ref = mig_references(mu, lv, f)
    assert abs(float(ref["mi"][0, 1])) <= float(ref["mi_error"][0, 1]) + 1e-13
    assert float(ref["mi"][0, 0]) > 0.1


def test_a_determining_latent_gives_the_factor_entropy_and_mig_one():
    """z_j = v_j exactly (sd 6e-6, means 0, 1, 2, ...) for two factors, a third latent the same N(0, 1) for every
    point: I(z_j; v_j) = H(v_j), I(z_j; v_k) = 0 for k != j, every gap is H(v_k), MIG = 1."""
    f = factor_grid((3, 5))
    mu = torch.cat([f.to(F64), torch.zeros(len(f), 1, dtype=F64)], 1)
    lv = torch.cat([torch.full((len(f), 2), -24.0, dtype=F64), torch.zeros(len(f), 1, dtype=F64)], 1)
    ref = mig_references(mu, lv, f)
    h = torch.tensor([math.log(3), math.log(5)], dtype=F64)
    assert torch.allclose(ref["mi"][[0, 1], [0, 1]], h, atol=1e-9, rtol=0)
    assert float(ref["mi"][[1, 0, 2, 2], [0, 1, 0, 1]].abs().max()) <= 1e-9
    assert abs(ref["mig"] - 1.0) <= 1e-9 and ref["top_latent"] == [0, 1] and all(ref["top_certain"])


def test_bounds_hold_on_random_fields():
    """0 <= I(z_j; v_k) <= H(v_k) (up to the error bound) and 0 <= MIG <= 1."""
    for seed in range(3):
        mu, lv, f = grid_field((3, 2, 4), D=4, seed=seed, noise=0.3 + 0.3 * seed)
        ref = mig_references(mu, lv, f)
        h = torch.tensor(ref["factor_entropy"], dtype=F64)
        assert bool((ref["mi"] >= -ref["mi_error"]).all())
        assert bool((ref["mi"] <= h[None] + ref["mi_error"]).all())
        assert 0.0 <= ref["mig"] <= 1.0
        gaps = torch.tensor(ref["normalized_gap"])
        assert bool((gaps >= 0).all()) and bool((gaps <= 1).all())


def test_a_tie_of_the_top_two_is_flagged_and_the_gap_is_zero(small_grid):
    """Two identical latents: their I's tie for every factor, the gap is 0 and the top latent is uncertain."""
    mu, lv, f = small_grid
    mu, lv = torch.cat([mu[:, :1], mu], 1), torch.cat([lv[:, :1], lv], 1)
    ref = mig_references(mu, lv, f)
    assert abs(ref["gap"][0]) <= ref["gap_error"][0] and ref["top_certain"][0] is False
    assert ref["top_latent"][0] in (0, 1)


def test_mig_from_information_by_hand():
    mi = torch.tensor([[0.9, 0.1], [0.5, 0.2], [0.1, 0.6]], dtype=F64)
    err = torch.full_like(mi, 0.01)
    out = mig_from_information(mi, err, [1.0, 2.0], (0, 1))
    assert out["top_latent"] == [0, 2] and out["second_latent"] == [1, 1]
    assert np.allclose(out["gap"], [0.4, 0.4]) and np.allclose(out["normalized_gap"], [0.4, 0.2])
    assert np.isclose(out["mig"], 0.3) and np.isclose(out["mig_error"], (0.02 + 0.01) / 2)
    assert out["top_certain"] == [True, True]
    only_first = mig_from_information(mi, err, [1.0, 2.0], (0,))
    assert np.isclose(only_first["mig"], 0.4)


def test_factors_in_mig_selects_the_average(small_grid):
    mu, lv, f = small_grid
    full = mig_references(mu, lv, f, factor_names=["a", "b", "c"])
    part = mig_references(mu, lv, f, factor_names=["a", "b", "c"], factors_in_mig=["b", "c"])
    assert part["factors_in_mig"] == ["b", "c"] and torch.equal(part["mi"], full["mi"])
    assert math.isclose(part["mig"], (full["normalized_gap"][1] + full["normalized_gap"][2]) / 2, rel_tol=1e-15)


def _bad(mu, lv, f):
    return [
        (dict(factors=f.to(F64)), "factors"),
        (dict(factors=f[:, 0]), "factors"),
        (dict(factors=f[:-1]), "factors"),
        (dict(factors=torch.cat([f[:, :2], -f[:, 2:]], 1)), "factors"),
        (dict(factors=f, factor_sizes=[2, 3, 3]), "factor_sizes"),
        (dict(factors=f, factor_sizes=[2, 3]), "factor_sizes"),
        (dict(factors=torch.cat([f, torch.zeros(len(f), 1, dtype=torch.int64)], 1)), "single value"),
        (dict(factors=f, factor_names=["a", "b"]), "factor_names"),
        (dict(factors=f, factor_names=["a", "a", "b"]), "factor_names"),
        (dict(factors=f, factors_in_mig=["nope"]), "factors_in_mig"),
        (dict(factors=f, factors_in_mig=[7]), "factors_in_mig"),
        (dict(factors=f, quadrature_nodes=1), "quadrature_nodes"),
        (dict(mu=torch.where(torch.arange(len(f))[:, None] == 3, math.nan, mu), factors=f), "mu"),
        (dict(mu=mu[:, :1], logvar=lv[:, :1], factors=f), "D = 1"),
        (dict(logvar=lv.long(), factors=f), "logvar"),
    ]


@pytest.mark.parametrize("case", range(15))
def test_bad_input_is_a_value_error_naming_the_argument(small_grid, case):
    mu, lv, f = small_grid
    kwargs, needle = _bad(mu, lv, f)[case]
    args = {"mu": mu, "logvar": lv, **kwargs}
    with pytest.raises(ValueError, match=needle):
        mig_references(args.pop("mu"), args.pop("logvar"), args.pop("factors"), **args)
