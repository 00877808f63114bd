"""Tests of the scenario registry (estimators/scenarios.py).

Statistical checks use fixed seeds and compare differences against 4 standard errors
(failure rate about 1e-4 per comparison); the mutual information is computed by brute force
in float64 (a full (Q, N, D) broadcast, independent of the package's kernels) on tiny N.
"""
from __future__ import annotations

import math

import pytest
import torch

import estimators
from estimators.scenarios import SCENARIOS, Scenario, grid_levels, is_product_grid, make_scenario

SYNTHETIC = [name for name, s in SCENARIOS.items() if not s.real]
Z = 4.0


# ------------------------------------------------------------------------------ brute-force helpers

def _log_normal(z, mu, logvar):
    """(Q, N, D) log N(z_qd; mu_nd, var_nd), by broadcasting in float64."""
    z, mu, logvar = z[:, None, :], mu[None], logvar[None]
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def _stratified_draws(field, S, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(field.N).repeat_interleave(S)
    eps = torch.randn(len(idx), field.D, generator=g, dtype=torch.float64)
    return idx, field.mu[idx] + eps * torch.exp(0.5 * field.logvar[idx])


def brute_mi(field, S=40, seed=123):
    """mi = E[log q(z|n) - log q(z)], z drawn S times from every component; returns (mean, se)."""
    idx, z = _stratified_draws(field, S, seed)
    L = _log_normal(z, field.mu, field.logvar).sum(-1)  # (Q, N)
    terms = L[torch.arange(len(idx)), idx] - (torch.logsumexp(L, 1) - math.log(field.N))
    return float(terms.mean()), float(terms.std() / math.sqrt(len(terms)))


def brute_tc(field, S=40, seed=321):
    """tc = E[log q(z) - sum_d log q(z_d)]; returns (mean, se)."""
    _, z = _stratified_draws(field, S, seed)
    Ld = _log_normal(z, field.mu, field.logvar)  # (Q, N, D)
    log_q = torch.logsumexp(Ld.sum(-1), 1) - math.log(field.N)
    log_marg = (torch.logsumexp(Ld, 1) - math.log(field.N)).sum(-1)
    terms = log_q - log_marg
    return float(terms.mean()), float(terms.std() / math.sqrt(len(terms)))


# ---------------------------------------------------------------------------------------- registry

def test_registry_and_exports():
    assert set(SCENARIOS) == {"collapsed", "grid", "gaussian", "clustered", "heteroscedastic", "vae-digits"}
    for name, s in SCENARIOS.items():
        assert isinstance(s, Scenario) and s.name == name and s.description
        assert s.default_N >= 1 and s.default_D >= 1
    assert SCENARIOS["grid"].known_tc_zero and not SCENARIOS["gaussian"].known_tc_zero
    assert SCENARIOS["vae-digits"].real and SCENARIOS["vae-digits"].max_N == 1797
    assert estimators.make_scenario is make_scenario and estimators.SCENARIOS is SCENARIOS


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


@pytest.mark.parametrize("name", SYNTHETIC)
def test_not_the_stream_of_manual_seed(name):
    # a user sampling with manual_seed(seed) must not redraw the normals behind the centres
    field = make_scenario(name, N=40, D=3, separation=1.0, seed=0)
    plain = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    corr = torch.corrcoef(torch.stack([field.mu.flatten(), plain.flatten()]))[0, 1]
    assert abs(float(corr)) < Z / math.sqrt(120)


@pytest.mark.parametrize("name", [n for n in SYNTHETIC if SCENARIOS[n].prior_at_zero])
def test_separation_zero_is_the_prior(name):
    field = make_scenario(name, N=30, D=4, separation=0.0, seed=2)
    assert torch.equal(field.mu, torch.zeros(30, 4, dtype=torch.float64))
    assert torch.equal(field.logvar, torch.zeros(30, 4, dtype=torch.float64))


def test_collapsed_is_prior_at_zero_for_defaults():
    field = make_scenario("collapsed", separation=0.0)
    assert bool((field.mu == 0).all()) and bool((field.logvar == 0).all())


@pytest.mark.parametrize("name", SYNTHETIC)
def test_separation_monotone_proxy(name):
    # exact, cheap proxy: spread of the means grows and the mean posterior variance shrinks with s
    seps = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0]
    fields = [make_scenario(name, N=200, D=4, separation=s, seed=1) for s in seps]
    spread = [float(f.mu.var(0).sum()) for f in fields]
    var = [float(f.logvar.exp().mean()) for f in fields]
    assert all(b > a for a, b in zip(spread, spread[1:])), spread
    assert all(b < a for a, b in zip(var, var[1:])), var


@pytest.mark.parametrize("name", SYNTHETIC)
def test_separation_monotone_mi(name):
    # brute-force mi on a tiny field: 0 at s = 0, rising significantly at each step, near log N at 1
    # heteroscedastic's variances are fixed (logvar -10..1 at s = 1): it separates with 6 active dims
    N, D = 24, (8 if name == "heteroscedastic" else 3)
    seps = [0.0, 0.25, 0.5, 0.75, 1.0]
    mis = [brute_mi(make_scenario(name, N=N, D=D, separation=s, seed=4)) for s in seps]
    assert abs(mis[0][0]) < 1e-12
    for (m0, se0), (m1, se1) in zip(mis, mis[1:]):
        assert m1 - m0 > Z * math.hypot(se0, se1), mis
    m, se = mis[-1]
    assert m <= math.log(N) + Z * se + 1e-12  # mi <= log N (up to rounding)
    assert m > math.log(N) - 0.05, mis  # well separated at s = 1


def test_mi_spans_range_at_default_size():
    # at the default size, mi at s = 0.5 sits well inside (0, log N): the knob is not saturated
    field = make_scenario("collapsed", N=400, D=6, separation=0.5, seed=0)
    m, se = brute_mi(field, S=4)
    assert 0.25 * math.log(400) < m < 0.75 * math.log(400)


def test_heteroscedastic_structure():
    field = make_scenario("heteroscedastic", separation=1.0)
    inactive = field.D - 2  # D = 8 by default: the last 2 dimensions
    assert bool((field.mu[:, inactive:] == 0).all()) and bool((field.logvar[:, inactive:] == 0).all())
    active = field.logvar[:, :inactive]
    assert float(active.min()) < -9.0 and float(active.max()) > 0.5  # about -10..1
    assert bool((field.logvar[:, :inactive].std(0) > 0.5).all())  # per-point variances


def test_clustered_plateau():
    # at intermediate separation the clusters are resolved before the points within them
    N, K = 64, 8
    field = make_scenario("clustered", N=N, D=3, separation=0.5, seed=0)
    m, se = brute_mi(field)
    assert m < math.log(N) - 0.5


# ------------------------------------------------------------------------------------ product grid

@pytest.mark.parametrize("N,D", [(1, 1), (1, 3), (12, 1), (12, 2), (60, 3), (2000, 6), (97, 3), (64, 6)])
def test_grid_levels(N, D):
    levels = grid_levels(N, D)
    assert len(levels) == D and math.prod(levels) == N
    field = make_scenario("grid", N=N, D=D, separation=0.7, seed=1)
    assert [len(torch.unique(field.mu[:, d])) for d in range(D)] == sorted(levels, reverse=True)


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


def test_grid_factorises_exactly():
    # the claim behind is_product_grid: log q(z) == sum_d log q(z_d) at arbitrary points
    field = make_scenario("grid", N=24, D=3, separation=0.6, seed=0)
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    Ld = _log_normal(z, field.mu, field.logvar)
    joint = torch.logsumexp(Ld.sum(-1), 1) - math.log(24)
    marg = (torch.logsumexp(Ld, 1) - math.log(24)).sum(-1)
    assert torch.allclose(joint, marg, rtol=0, atol=1e-10)
    tc, se = brute_tc(field)
    assert abs(tc) < 1e-10


def test_gaussian_has_positive_tc():
    field = make_scenario("gaussian", N=100, D=3, separation=0.5, seed=0)
    tc, se = brute_tc(field)
    assert tc > Z * se and tc > 0.05


# -------------------------------------------------------------------------------------- validation

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
