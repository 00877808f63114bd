"""Speed of the estimators of log q(z_i) against a naive broadcast implementation of each one.

    .venv/bin/python benchmarks/speed_estimators.py [--batch-size 2048] [--repeats 5] [--threads 2]

float32, D = 10, a field of N = 60000 posteriors. Every estimator is called through the one contract
(the batch's own posteriors field[index], plus field= and index=). The baseline of each minibatch
estimator is ``benchmarks.common.naive_estimator``: the same registered weights laid out as the
published code does, the full B x B x D tensor of per-dimension log-densities, the log weights added,
then torch.logsumexp (the joint from its sum over d). Ours and the baseline run interleaved, so load
from other processes hits both alike; the table gives medians and their ratio ("joint": log q only,
``marginals=False``; "both": log q and the D marginals). Then the time of a full ``decompose``
(forward, and forward + backward) at a smaller batch, where the batch itself is the field (N = B).

Targets: >= 20x for the joint, >= 5x for joint + marginals at B = 2048; decompose at B = 1024
under 50 ms.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from estimators import ESTIMATORS, Posteriors, decompose, log_aggregate_posterior

if __package__:  # imported (asv discovers every module under benchmarks/)
    from .common import contract_call, naive_estimator
else:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.common import contract_call, naive_estimator

DATASET_SIZE = 60000


def realistic_field(N: int, D: int, seed: int = 0) -> Posteriors:
    """Spread means (sd 1.5) and log-variances uniform in [-6, 1], float32."""
    g = torch.Generator().manual_seed(seed)
    return Posteriors(1.5 * torch.randn(N, D, generator=g), -6.0 + 7.0 * torch.rand(N, D, generator=g))


def batch(field: Posteriors, B: int, seed: int = 0):
    """B distinct indices of the field, uniform without replacement, and one z_i ~ q(z|n_i) each."""
    g = torch.Generator().manual_seed(seed + 1)
    index = torch.randperm(field.N, generator=g)[:B]
    z = field.mu[index] + torch.randn(B, field.D, generator=g) * torch.exp(0.5 * field.logvar[index])
    return z, index


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, the functions run in turn within each repeat."""
    times = {key: [] for key in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) for key, v in times.items()}


def speed_table(B: int, D: int, repeats: int) -> None:
    field = realistic_field(DATASET_SIZE, D)
    z, index = batch(field, B)
    mu_b, logvar_b = field.mu[index], field.logvar[index]
    print(f"B = {B}, D = {D}, N = {field.N}, float32, {torch.get_num_threads()} threads, median of {repeats}")
    header = (f"{'estimator':16s} {'joint ms':>9s} {'bcast ms':>9s} {'ratio':>6s}   {'both ms':>9s} {'bcast ms':>9s} "
              f"{'ratio':>6s}   {'max |diff|':>10s}")
    print(header)
    with torch.no_grad():
        for name, info in ESTIMATORS.items():
            if info.weights is None:  # no weights, no broadcast baseline (iwae, exact)
                continue
            ours_joint = lambda: contract_call(log_aggregate_posterior, name, z, field, index, marginals=False)
            ours_both = lambda: contract_call(log_aggregate_posterior, name, z, field, index)
            base_joint = lambda: naive_estimator(name, z, mu_b, logvar_b, field.N, marginals=False)
            base_both = lambda: naive_estimator(name, z, mu_b, logvar_b, field.N)
            t = interleaved({"oj": ours_joint, "bj": base_joint, "ob": ours_both, "bb": base_both}, repeats)
            ours, base = ours_both(), base_both()
            diff = max(float((ours[0] - base[0]).abs().max()), float((ours[1] - base[1]).abs().max()))
            print(f"{name:16s} {t['oj'] * 1e3:9.1f} {t['bj'] * 1e3:9.1f} {t['bj'] / t['oj']:6.1f}   "
                  f"{t['ob'] * 1e3:9.1f} {t['bb'] * 1e3:9.1f} {t['bb'] / t['ob']:6.1f}   {diff:10.2e}")


def decompose_table(B: int, D: int, repeats: int) -> None:
    field = realistic_field(B, D, seed=1)
    index = torch.arange(B)
    z = field.sample(index, generator=torch.Generator().manual_seed(2))
    print(f"\ndecompose at B = {B}, D = {D}, float32 (the batch is the field, N = {B}; iwae k = 64)")
    print(f"{'estimator':16s} {'forward ms':>11s} {'fwd+bwd ms':>11s}")
    for name in ESTIMATORS:
        def forward():
            with torch.no_grad():
                contract_call(decompose, name, z, field, index, k=64)

        leaves = [t.clone().requires_grad_() for t in (z, field.mu, field.logvar)]

        def backward():
            out = contract_call(decompose, name, leaves[0], (leaves[1], leaves[2]), index, k=64)
            (out["mi"] + out["tc"] + out["dimwise_kl"]).backward()
            for t in leaves:
                t.grad = None

        t = interleaved({"f": forward, "b": backward}, repeats)
        print(f"{name:16s} {t['f'] * 1e3:11.1f} {t['b'] * 1e3:11.1f}")


def load_gauge() -> str:
    """float32 exp of 2^19 elements (in cache), best and median of 50: a gauge of the machine's load.

    On an oversubscribed machine every multi-threaded op waits for a descheduled thread, so the
    median time per op jumps (to ~8 ms here with 2 threads and load above 2) whatever its size:
    code made of many cache-sized ops then suffers far more than a few huge ops. Compare runs with
    --threads 1 when the median is far above the best.
    """
    x = torch.full((2**19,), -3.0)
    out = torch.empty_like(x)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        torch.exp(x, out=out)
        times.append(time.perf_counter() - t0)
    best, median = min(times), statistics.median(times)
    return (f"float32 exp of 2^19 elements: {x.numel() / best / 1e9:.2f} G/s at best, {median * 1e3:.2f} ms median "
            f"per op (about 4.2 G/s on an idle machine with 2 threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--decompose-batch-size", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("load gauge:", load_gauge())
    speed_table(args.batch_size, args.dim, args.repeats)
    decompose_table(args.decompose_batch_size, args.dim, args.repeats)


if __name__ == "__main__":
    main()
