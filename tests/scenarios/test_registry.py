"""The scenario registry (estimators/scenarios/registry.py): records, sizes, seeds, argument checks."""
from __future__ import annotations

import pytest
import torch

import estimators
from estimators.scenarios import SCENARIOS, Scenario, make_scenario

SYNTHETIC = [name for name, s in SCENARIOS.items() if not s.real]


def test_registry_and_exports():
    assert set(SCENARIOS) == {"collapsed", "grid", "gaussian", "clustered", "heteroscedastic", "vae-digits",
                              "dsprites", "dsprites-tcvae"}
    for name, s in SCENARIOS.items():
        assert isinstance(s, Scenario) and s.name == name and s.description
        assert s.default_N >= 1 and s.default_D >= 1
    assert SCENARIOS["grid"].known_tc_zero and not SCENARIOS["gaussian"].known_tc_zero
    assert SCENARIOS["vae-digits"].real and SCENARIOS["vae-digits"].max_N == 1797
    assert estimators.make_scenario is make_scenario and estimators.SCENARIOS is SCENARIOS
    assert [n for n, s in SCENARIOS.items() if not s.prior_at_zero] == ["vae-digits", "dsprites", "dsprites-tcvae"]
    assert [n for n, s in SCENARIOS.items() if s.real] == ["vae-digits", "dsprites", "dsprites-tcvae"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_defaults(name):
    field = make_scenario(name)
    s = SCENARIOS[name]
    assert (field.N, field.D) == (s.default_N, s.default_D)
    assert field.name == name and field.dtype == torch.float64


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("N,D", [(1, 1), (7, 2), (60, 3), (30, 9)])
@pytest.mark.parametrize("separation", [0.0, 0.3, 1.0])
def test_builds(name, N, D, separation):
    field = make_scenario(name, N=N, D=D, separation=separation, seed=3)
    assert field.mu.shape == (N, D) and field.logvar.shape == (N, D)
    assert field.dtype == torch.float64 and field.name == name
    assert torch.isfinite(field.mu).all() and torch.isfinite(field.logvar).all()


@pytest.mark.parametrize("name", SYNTHETIC)
def test_deterministic_and_seeded(name):
    a = make_scenario(name, N=50, D=3, separation=0.6, seed=5)
    b = make_scenario(name, N=50, D=3, separation=0.6, seed=5)
    c = make_scenario(name, N=50, D=3, separation=0.6, seed=6)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar)
    assert not torch.equal(a.mu, c.mu)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known scenarios: collapsed, grid"):
        make_scenario("nope")


@pytest.mark.parametrize("kwargs,exc,arg", [
    ({"N": 0}, ValueError, "N"), ({"N": -3}, ValueError, "N"), ({"N": 2.5}, TypeError, "N"),
    ({"N": True}, TypeError, "N"), ({"D": 0}, ValueError, "D"), ({"D": "3"}, TypeError, "D"),
    ({"separation": -0.1}, ValueError, "separation"), ({"separation": 1.5}, ValueError, "separation"),
    ({"separation": float("nan")}, ValueError, "separation"), ({"separation": "a"}, TypeError, "separation"),
    ({"seed": -1}, ValueError, "seed"), ({"seed": 1.0}, TypeError, "seed"),
])
def test_bad_arguments(kwargs, exc, arg):
    with pytest.raises(exc, match=rf"^{arg} "):
        make_scenario("gaussian", **kwargs)


def test_vae_digits_N_bound_checked_before_training():
    with pytest.raises(ValueError, match=r"^N must be <= 1797"):
        make_scenario("vae-digits", N=1798)


def test_dsprites_scenarios_are_the_cached_fields_of_their_recipes():
    """The dsprites scenarios (on the tiny grid under the test suite, see tests/conftest.py) are the recipes'
    fields, whole at the default N and a seeded subsample, in data order, below it."""
    from estimators.scenarios import vae_dsprites as vd
    from estimators.scenarios.synthetic import scenario_generator

    assert vd.scenario_recipes() is vd.TINY_RECIPES
    for name, objective in (("dsprites", "beta-vae"), ("dsprites-tcvae", "beta-tcvae")):
        recipe = vd.TINY_RECIPES[objective]
        s = SCENARIOS[name]
        assert (s.default_N, s.default_D, s.max_N) == (recipe.grid.N, recipe.latent_dim, recipe.grid.N)
        whole = make_scenario(name)
        field = vd.dsprites_posteriors(recipe)
        assert whole.name == name and torch.equal(whole.mu, field.mu) and torch.equal(whole.logvar, field.logvar)
        part = make_scenario(name, N=100, seed=3)
        rows = torch.randperm(field.N, generator=scenario_generator(name, 3))[:100].sort().values  # in data order
        assert part.N == 100 and torch.equal(part.mu, field.mu[rows]) and torch.equal(part.logvar, field.logvar[rows])
        assert torch.equal(make_scenario(name, N=100, seed=3).mu, part.mu)
        assert not torch.equal(make_scenario(name, N=100, seed=4).mu, part.mu)
    a, b = make_scenario("dsprites"), make_scenario("dsprites-tcvae")
    assert not torch.equal(a.mu, b.mu)  # two models


@pytest.mark.parametrize("kwargs,match", [
    ({"D": 3}, "D must be 4 for scenario 'dsprites'"), ({"separation": 0.9}, "separation must be 0.5"),
    ({"N": 10**6}, "N must be <= 768"),
])
def test_dsprites_scenario_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scenario("dsprites", **kwargs)


def test_dsprites_grid_environment_variable_is_checked(monkeypatch):
    from estimators.scenarios import vae_dsprites as vd

    monkeypatch.setenv(vd.GRID_ENV, "full")
    assert vd.scenario_recipes() is vd.RECIPES
    monkeypatch.setenv(vd.GRID_ENV, "huge")
    with pytest.raises(ValueError, match="VAE_ESTIMATORS_DSPRITES must be 'full', 'tiny' or unset"):
        vd.scenario_recipes()
