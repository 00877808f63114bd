"""Exact references at the users' scale, N = 737,280 (dSprites' size), D = 10, 2 threads, in one run.

A trained-VAE-like field: seven active dimensions with sharp posteriors (means N(0, 1), logvar uniform in
[-6, -2]) and three inactive ones near the prior (means 0.05 N(0, 1), logvar in [-0.05, 0]). Runs
``exact_references(mu, logvar, target_se=...)`` and prints the seconds (wall) of each part -- the ten
marginal quadratures, E[log q(z)] by the sub-sampled Monte Carlo, the certified brackets -- with the total
CPU seconds, the se reached and what the Monte Carlo used. Then, in the same run, the ratios against the
previous designs: one active dimension's quadrature with the previous settings (dense exact values, degree
16 on 64 tiles), and the cost the previous full-N Monte Carlo (S >= 2 draws from every component) and
all-pairs brackets (N^2) would have had, extrapolated from their measured per-term rates.

    .venv/bin/python benchmarks/speed_large_reference.py [--N 737280] [--target-se 0.01] [--threads 2]
"""
import argparse
import math
import time

import torch

from estimators import exact_references
from estimators.kernels import joint_lse
from estimators.references import api
from estimators.references import quadrature as Q
from estimators.references.brackets import _kl_information
from estimators.references.structure import dedupe


def field(N: int, D: int = 10, active: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g, dtype=torch.float64)
    lv = -6.0 + 4.0 * torch.rand(N, D, generator=g, dtype=torch.float64)
    mu[:, active:] = 0.05 * torch.randn(N, D - active, generator=g, dtype=torch.float64)
    lv[:, active:] = -0.05 * torch.rand(N, D - active, generator=g, dtype=torch.float64)
    return mu, lv


def quadrature_seconds(mu, lv, previous: bool) -> tuple[float, float]:
    """(seconds, value) of one dimension's E[log q(z_d)], with today's settings or the previous ones."""
    saved = Q.SPLIT_DEGREE, Q.SPLIT_TILES, Q.BROAD_WINDOW, Q.BROAD_BLOCK
    if previous:  # every broad component at every exact node: the dense evaluation of before
        Q.SPLIT_DEGREE, Q.SPLIT_TILES, Q.BROAD_WINDOW, Q.BROAD_BLOCK = 16, 64, math.inf, 2**40
    try:
        t = time.perf_counter()
        m, l, w, _ = dedupe(mu, lv)
        value, _ = Q.neg_entropy(m, l, w)
        return time.perf_counter() - t, value
    finally:
        Q.SPLIT_DEGREE, Q.SPLIT_TILES, Q.BROAD_WINDOW, Q.BROAD_BLOCK = saved


def timed(parts: dict, name: str, fn):
    """``fn`` wrapped so that its calls' seconds add up in ``parts[name]``."""
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - t
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, default=737280)
    parser.add_argument("--target-se", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-ratios", action="store_true", help="skip the comparison with the previous designs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mu, lv = field(args.N)
    N, D = mu.shape
    print(f"trained-VAE-like field: N = {N}, D = {D}, float64, {args.threads} threads, target se {args.target_se:g}")
    parts = {}
    saved = api._marginal_neg_entropies, api.neg_entropy_mc, api.certified_brackets
    api._marginal_neg_entropies = timed(parts, "marginals", saved[0])
    api.neg_entropy_mc = timed(parts, "joint", saved[1])
    api.certified_brackets = timed(parts, "brackets", saved[2])
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        ref = exact_references(mu, lv, target_se=args.target_se)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        api._marginal_neg_entropies, api.neg_entropy_mc, api.certified_brackets = saved
    mc = ref["monte_carlo"]
    print(f"{'part':<28}{'seconds':>9}")
    for name, key in (("marginal quadratures (D)", "marginals"), ("E[log q(z)] Monte Carlo", "joint"),
                      ("certified brackets", "brackets")):
        print(f"{name:<28}{parts.get(key, 0.0):>9.1f}")
    print(f"{'total (wall / cpu)':<28}{wall:>9.1f} / {cpu:.1f}")
    print(f"Monte Carlo: {mc['strata']} strata x {mc['samples']} draws (pilot {mc['pilot']['strata']} x "
          f"{mc['pilot']['samples']}, se {mc['pilot']['se']:.3g}), runs {mc['runs']}")
    for q in ("kl_agg", "mi", "tc", "dimwise_kl"):
        e = ref[q]
        print(f"  {q:<11}{e['value']:>12.5f} se {e['se']:.2e} ({e['method']})  bracket [{e['lower']:.4f}, "
              f"{e['upper']:.4f}] by {e['lower_by']} / {e['upper_by']}")
    print(f"quadrature error <= {ref['quadrature_error']:.1e}")
    if args.no_ratios:
        return
    # the previous designs, measured now on the same machine
    new_q, v_new = quadrature_seconds(mu[:, :1], lv[:, :1], previous=False)
    old_q, v_old = quadrature_seconds(mu[:, :1], lv[:, :1], previous=True)
    print(f"one active dimension's quadrature: {new_q:.1f} s, previous settings {old_q:.1f} s "
          f"({old_q / new_q:.1f}x; values differ by {abs(v_new - v_old):.1e})")
    z = mu[:2000] + torch.randn(2000, D, dtype=torch.float64) * torch.exp(0.5 * lv[:2000])
    t = time.perf_counter()
    joint_lse(z - mu.mean(0), mu - mu.mean(0), lv)
    per_draw = (time.perf_counter() - t) / 2000
    full = 2 * N * per_draw
    print(f"full-N Monte Carlo at its cheapest (2 draws from each of N): ~{full:.0f} s "
          f"({full / parts['joint']:.0f}x the sub-sampled run)")
    n = 8192
    t = time.perf_counter()
    _kl_information(mu[:n] - mu[:n].mean(0), lv[:n], torch.full((n,), -math.log(n), dtype=torch.float64))
    per_pair = (time.perf_counter() - t) / n**2
    pairs = 2 * N * N * per_pair  # the KL and (at least as costly) Bhattacharyya all-pairs bounds
    print(f"all-pairs brackets: ~{pairs:.0f} s ({pairs / parts['brackets']:.0f}x the block bounds)")


if __name__ == "__main__":
    main()
