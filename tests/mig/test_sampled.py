"""The sampled MIG estimators: the replica against a loop re-implementation of the published steps, the paired
estimator against loops of its definition, unbiased entropies and I's over seeds, streaming, validation."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import estimators.mig.sampled as sampled
from estimators.mig import mig_beta_tcvae, mig_references, mig_sampled
from tests.helpers import log_normal_1d, log_weighted_sum
from tests.mig.fields import F64, grid_field


def loop_log_q(x: float, mu: list[float], lv: list[float]) -> float:
    """log (1/n) sum_i N(x; mu_i, exp(lv_i)), by a Python loop."""
    return log_weighted_sum([log_normal_1d(x, m, l) for m, l in zip(mu, lv)], [1.0 / len(mu)] * len(mu))


def published_by_loops(mu, lv, f, n_samples: int, seed: int, sizes, in_mig):
    """The published steps one by one with Python loops, consuming the generator in the documented order."""
    g = torch.Generator().manual_seed(seed)
    N, D = mu.shape
    z = (mu + torch.randn((N, D), generator=g, dtype=F64) * torch.exp(0.5 * lv)).tolist()
    M, L = mu.tolist(), lv.tolist()

    def entropies(rows):  # estimate_entropies on the sub-population ``rows``: log n - logsumexp over it
        take = [rows[i] for i in torch.randperm(len(rows), generator=g)[:n_samples].tolist()]
        return [sum(-loop_log_q(z[s][j], [M[n][j] for n in rows], [L[n][j] for n in rows]) for s in take) / len(take)
                for j in range(D)]

    marginal = entropies(list(range(N)))
    gaps = []
    mi = []
    for k in in_mig:
        cond = [0.0] * D
        for v in range(sizes[k]):
            h = entropies([n for n in range(N) if int(f[n, k]) == v])
            cond = [c + h[j] / sizes[k] for j, c in enumerate(cond)]
        col = [marginal[j] - cond[j] for j in range(D)]
        mi.append(col)
        ranked = [max(x, 0.0) / math.log(sizes[k]) for x in sorted(col, reverse=True)]
        gaps.append(ranked[0] - ranked[1])
    return marginal, mi, gaps, sum(gaps) / len(gaps)


def paired_by_loops(mu, lv, f, n_samples: int, seed: int, in_mig):
    """The paired estimator from its definition, loops: I_jk = mean_s [log q(z_sj | v_k(n_s)) - log q(z_sj)]."""
    g = torch.Generator().manual_seed(seed)
    N, D = mu.shape
    rows = torch.randperm(N, generator=g)[:n_samples].tolist()
    eps = torch.randn((len(rows), D), generator=g, dtype=F64).tolist()
    M, L = mu.tolist(), lv.tolist()
    z = [[M[n][j] + math.exp(0.5 * L[n][j]) * eps[s][j] for j in range(D)] for s, n in enumerate(rows)]
    mi, gaps = [], []
    for k in in_mig:
        col = []
        for j in range(D):
            total = 0.0
            for s, n in enumerate(rows):
                pop = [m for m in range(N) if int(f[m, k]) == int(f[n, k])]
                total += (loop_log_q(z[s][j], [M[m][j] for m in pop], [L[m][j] for m in pop])
                          - loop_log_q(z[s][j], [M[m][j] for m in range(N)], [L[m][j] for m in range(N)]))
            col.append(total / len(rows))
        mi.append(col)
        _, counts = torch.unique(f[:, k], return_counts=True)
        p = counts.to(F64) / N
        h = float(-(p * p.log()).sum())
        top = sorted(col, reverse=True)
        gaps.append((top[0] - top[1]) / h)
    return mi, gaps, sum(gaps) / len(gaps)


@pytest.mark.parametrize("n_samples,in_mig", [(5, None), (7, [2, 0]), (100, [1])])
def test_replica_reproduces_the_published_steps(small_grid, n_samples, in_mig):
    mu, lv, f = small_grid
    sizes = [2, 3, 4]
    order = list(range(3)) if in_mig is None else in_mig
    out = mig_beta_tcvae(mu, lv, f, n_samples=n_samples, factors_in_mig=in_mig,
                         generator=torch.Generator().manual_seed(11))
    marginal, mi, gaps, mig = published_by_loops(mu, lv, f, n_samples, 11, sizes, order)
    assert torch.allclose(out["entropy"], torch.tensor(marginal, dtype=F64), atol=1e-12, rtol=0)
    assert torch.allclose(out["mi"], torch.tensor(mi, dtype=F64).T, atol=1e-12, rtol=0)
    assert torch.allclose(out["normalized_gap"], torch.tensor(gaps, dtype=F64), atol=1e-12, rtol=0)
    assert abs(out["mig"] - mig) <= 1e-12


@pytest.mark.parametrize("n_samples,in_mig", [(6, None), (24, [1, 2])])
def test_paired_estimator_matches_its_definition(small_grid, n_samples, in_mig):
    mu, lv, f = small_grid
    out = mig_sampled(mu, lv, f, n_samples=n_samples, factors_in_mig=in_mig, generator=torch.Generator().manual_seed(3))
    mi, gaps, mig = paired_by_loops(mu, lv, f, n_samples, 3, list(range(3)) if in_mig is None else in_mig)
    assert torch.allclose(out["mi"], torch.tensor(mi, dtype=F64).T, atol=1e-12, rtol=0)
    assert torch.allclose(out["normalized_gap"], torch.tensor(gaps, dtype=F64), atol=1e-12, rtol=0)
    assert abs(out["mig"] - mig) <= 1e-12


def test_entropy_and_information_estimates_are_unbiased():
    """Over R seeds, the mean of each entropy (replica), each conditional entropy (replica) and each I (paired) lies
    within z se of the exact value; z for a 1e-4 family-wise failure rate (Bonferroni over all comparisons)."""
    mu, lv, f = grid_field((2, 3, 4), D=2, seed=2)
    ref = mig_references(mu, lv, f)
    R = 300
    cells = {"entropy": [], "conditional_entropy": [], "mi": [], "paired_entropy": []}
    for r in range(R):
        port = mig_beta_tcvae(mu, lv, f, n_samples=5, generator=torch.Generator().manual_seed(r))
        pair = mig_sampled(mu, lv, f, n_samples=5, generator=torch.Generator().manual_seed(10_000 + r))
        cells["entropy"].append(port["entropy"])
        cells["conditional_entropy"].append(port["conditional_entropy"].flatten())
        cells["mi"].append(pair["mi"].flatten())
        cells["paired_entropy"].append(pair["entropy"])
    truth = {"entropy": ref["entropy"], "conditional_entropy": ref["conditional_entropy"].flatten(),
             "mi": ref["mi"].flatten(), "paired_entropy": ref["entropy"]}
    m = sum(len(t) for t in truth.values())
    z = stats.norm.isf(1e-4 / (2 * m))
    for name, rows in cells.items():
        x = torch.stack(rows)
        score = (x.mean(0) - truth[name]).abs() / (x.std(0) / math.sqrt(R))
        assert bool((score < z).all()), (name, score, z)


def test_paired_information_se_is_conservative():
    """The paired estimator's own se^2 (per-draw variance / S, the iid formula) is at least the variance over seeds in
    expectation (the points are drawn without replacement, which only lowers the variance): mean se^2 >= var over
    seeds - z se of the difference (fourth-moment se of the variance), z one-sided Bonferroni for a 1e-4 rate."""
    mu, lv, f = grid_field((2, 3), D=2, seed=4, repeats=4)
    R = 200
    runs = [mig_sampled(mu, lv, f, n_samples=8, generator=torch.Generator().manual_seed(r)) for r in range(R)]
    x = torch.stack([r["mi"] for r in runs]).flatten(1)  # (R, cells)
    se2 = torch.stack([r["mi_se"] for r in runs]).flatten(1) ** 2
    var = x.var(0)
    dev = x - x.mean(0)
    var_se = (((dev ** 4).mean(0) - var ** 2 * (R - 3) / (R - 1)) / R).clamp(min=0).sqrt()
    se = torch.hypot(se2.std(0) / math.sqrt(R), var_se)
    z = stats.norm.isf(1e-4 / x.shape[1])
    assert bool((se2.mean(0) - var >= -z * se).all()), (se2.mean(0), var, se)


def test_streaming_chunks_and_float32_agree(small_grid, monkeypatch):
    mu, lv, f = small_grid
    whole = mig_beta_tcvae(mu, lv, f, n_samples=9, generator=torch.Generator().manual_seed(1))
    whole32 = mig_beta_tcvae(mu, lv, f, n_samples=9, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    monkeypatch.setattr(sampled, "QUERY_CHUNK", 2)
    chunked = mig_beta_tcvae(mu, lv, f, n_samples=9, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(whole["mi"], chunked["mi"], atol=1e-13, rtol=0)
    assert torch.allclose(whole["mi"], whole32["mi"], atol=1e-5, rtol=0)


def test_terms_count_the_kernel_work(small_grid):
    mu, lv, f = small_grid  # N = 24, D = 3, populations of 12, 8 and 6
    port = mig_beta_tcvae(mu, lv, f, n_samples=7, generator=torch.Generator().manual_seed(0))
    assert port["terms"] == 3 * (7 * 24 + 2 * 7 * 12 + 3 * 7 * 8 + 4 * 6 * 6)
    pair = mig_sampled(mu, lv, f, n_samples=7, generator=torch.Generator().manual_seed(0))
    assert pair["terms"] == 3 * 7 * (24 + 12 + 8 + 6)


def test_replica_clamps_and_the_gaps_are_nonnegative():
    """Posteriors independent of the factors (I = 0 exactly): the replica's clamped gaps are >= 0, its I's before
    the clamp go negative on some seeds."""
    mu, lv, f = grid_field((2, 3), D=3, seed=7, repeats=3)
    mu, lv = mu[:1].expand_as(mu).clone(), lv[:1].expand_as(lv).clone()
    runs = [mig_beta_tcvae(mu, lv, f, n_samples=4, generator=torch.Generator().manual_seed(r)) for r in range(20)]
    assert all(bool((r["normalized_gap"] >= 0).all()) for r in runs)
    assert any(bool((r["mi"] < 0).any()) for r in runs)


@pytest.mark.parametrize("fn", [mig_beta_tcvae, mig_sampled])
@pytest.mark.parametrize("kwargs,needle", [
    ({"n_samples": 0}, "n_samples"), ({"n_samples": 2.5}, "n_samples"), ({"generator": 3}, "generator"),
    ({"dtype": torch.float16}, "dtype"), ({"factors_in_mig": ["x"]}, "factors_in_mig")])
def test_bad_input_is_a_value_error(small_grid, fn, kwargs, needle):
    mu, lv, f = small_grid
    with pytest.raises(ValueError, match=needle):
        fn(mu, lv, f, **kwargs)


def test_replica_needs_a_full_grid(small_grid):
    mu, lv, f = small_grid
    with pytest.raises(ValueError, match="never occurs"):
        mig_beta_tcvae(mu, lv, f, factor_sizes=[2, 3, 5])
    assert math.isfinite(mig_sampled(mu, lv, f, factor_sizes=[2, 3, 5], n_samples=5)["mig"])
