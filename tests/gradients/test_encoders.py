"""The encoder problems: the digits encoder reproduces the shipped vae-digits field; linear problems are seeded;
theta round-trips; clear errors."""
from __future__ import annotations

import pytest
import torch

from estimators.gradients.encoders import (DIGITS_RECIPE, PROBLEMS, digits_problem, linear_problem, make_problem)
from estimators.scenarios.vae_digits import digits_posteriors


def test_the_shipped_digits_encoder_gives_the_shipped_vae_digits_field():
    """The encoder's parameters ship with the package: its posteriors are the benchmark's vae-digits field."""
    problem = digits_problem()
    field = problem.field()
    shipped = digits_posteriors(DIGITS_RECIPE)
    assert (problem.N, problem.D) == (1797, 8)
    assert torch.allclose(field.mu, shipped.mu, rtol=0, atol=1e-10)
    assert torch.allclose(field.logvar, shipped.logvar, rtol=0, atol=1e-10)


def test_linear_problems_are_seeded_and_theta_round_trips():
    a, b = linear_problem(100, 3, seed=5), linear_problem(100, 3, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.get_flat(), b.get_flat())
    assert a.num_params == 2 * 6 * 3 + 2 * 3
    theta = a.get_flat()
    a.set_flat(theta * 2)
    assert torch.equal(a.get_flat(), theta * 2)
    with pytest.raises(ValueError, match="theta"):
        a.set_flat(theta[:-1])
    prior = linear_problem(10, 2, prior=True).field()
    assert torch.equal(prior.mu, torch.zeros(10, 2)) and torch.equal(prior.logvar, torch.zeros(10, 2))


def test_flat_grad_covers_every_parameter():
    p = linear_problem(20, 2, P=2)
    mu, logvar = p.posteriors()
    g = p.flat_grad(mu.sum(), retain_graph=False)
    assert g.shape == (p.num_params,)
    assert torch.all(g[-(2 * 2 + 2):] == 0)  # logvar's parameters C, c do not reach mu


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="N must"):
        linear_problem(1, 2)
    with pytest.raises(ValueError, match="D must"):
        linear_problem(10, 0)
    with pytest.raises(ValueError, match="scale"):
        linear_problem(10, 2, scale=float("nan"))
    with pytest.raises(ValueError, match="field must be one of"):
        make_problem("nope")
    with pytest.raises(TypeError, match="recipe"):
        digits_problem("default")
    assert {"linear-d2", "linear-d5", "vae-digits"} <= set(PROBLEMS)
