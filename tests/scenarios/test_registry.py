"""The scenario registry (estimators/scenarios/registry.py): records, sizes, seeds, argument checks."""
from __future__ import annotations

import pytest
import torch

import estimators
from estimators.scenarios import SCENARIOS, Scenario, make_scenario

SYNTHETIC = [name for name, s in SCENARIOS.items() if not s.real]


def test_registry_and_exports():
    assert set(SCENARIOS) == {"collapsed", "grid", "gaussian", "clustered", "heteroscedastic", "vae-digits"}
    for name, s in SCENARIOS.items():
        assert isinstance(s, Scenario) and s.name == name and s.description
        assert s.default_N >= 1 and s.default_D >= 1
    assert SCENARIOS["grid"].known_tc_zero and not SCENARIOS["gaussian"].known_tc_zero
    assert SCENARIOS["vae-digits"].real and SCENARIOS["vae-digits"].max_N == 1797
    assert estimators.make_scenario is make_scenario and estimators.SCENARIOS is SCENARIOS
    assert [n for n, s in SCENARIOS.items() if not s.prior_at_zero] == ["vae-digits"]


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
