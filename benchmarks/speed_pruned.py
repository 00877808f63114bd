"""The pruned joint kernel against the dense one, measured in one run (float64, 2 threads).

A trained-VAE-like field of N = 737,280 (dSprites' size), D = 10: four active dimensions with sharp
posteriors (logvar in [-7, -4], means spread over a few units) and six inactive ones near the prior;
and a broad field where nothing can be pruned. Q query points are drawn from the field's own
components, as the references' Monte Carlo draws them. Prints seconds, the fraction of the terms
evaluated, the speed-up and the largest difference of the results.

    .venv/bin/python benchmarks/speed_pruned.py [--N 737280] [--queries 20000]
"""
import argparse
import time

import torch

from estimators.kernels import joint_lse
from estimators.kernels.pruned import PruneStats, pruned_joint_lse


def field(kind: str, N: int, D: int, g: torch.Generator):
    if kind == "trained-vae-like":
        mu = 1.5 * torch.randn(N, D, generator=g, dtype=torch.float64)
        lv = -7.0 + 3.0 * torch.rand(N, D, generator=g, dtype=torch.float64)
        mu[:, 4:] = 0.05 * torch.randn(N, D - 4, generator=g, dtype=torch.float64)
        lv[:, 4:] = -0.05 * torch.rand(N, D - 4, generator=g, dtype=torch.float64)
    else:
        mu = 0.3 * torch.randn(N, D, generator=g, dtype=torch.float64)
        lv = 0.5 * torch.rand(N, D, generator=g, dtype=torch.float64)
    return mu, lv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, default=737280)
    parser.add_argument("--D", type=int, default=10)
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"N = {args.N}, D = {args.D}, Q = {args.queries}, float64, {args.threads} threads")
    print(f"{'field':<18} {'dense (s)':>10} {'pruned (s)':>11} {'evaluated':>10} {'speed-up':>9} {'max |diff|':>11}")
    for kind in ("trained-vae-like", "broad"):
        mu, lv = field(kind, args.N, args.D, g)
        idx = torch.randint(args.N, (args.queries,), generator=g)
        z = mu[idx] + torch.randn(args.queries, args.D, generator=g, dtype=torch.float64) * torch.exp(0.5 * lv[idx])
        t = time.perf_counter()
        dense = joint_lse(z, mu, lv)
        t_dense = time.perf_counter() - t
        stats = PruneStats()
        t = time.perf_counter()
        pruned = pruned_joint_lse(z, mu, lv, stats=stats)
        t_pruned = time.perf_counter() - t
        diff = float((dense - pruned).abs().max())
        print(f"{kind:<18} {t_dense:>10.2f} {t_pruned:>11.2f} {stats.fraction_evaluated:>10.4f} "
              f"{t_dense / t_pruned:>8.1f}x {diff:>11.1e}")


if __name__ == "__main__":
    main()
