"""Estimator speed on a busy machine: `mss` at B = 2048 with 1 and 2 threads, with and without other jobs.

A training loop shares its cores with data-loader workers. Threads that spin while they wait (an OpenMP
team) then compete with those jobs, and a 2-thread call can be slower than a 1-thread one. This script
starts ``--hogs`` busy processes (pure-Python loops, one per core by default) and times one
``log_aggregate_posterior(..., "mss")`` call (joint and marginals, float32, D = 10, N = 60000) at each
thread count, idle and busy, in one run; medians of ``--repeats`` calls.

    .venv/bin/python benchmarks/speed_contention.py [--hogs 2] [--repeats 15]
"""
import argparse
import multiprocessing as mp
import os
import statistics
import time

import torch

import estimators as est


def _hog(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _median_ms(threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    B, D, N = 2048, 10, 60000
    mu = torch.randn(B, D, generator=g)
    lv = -1.0 + 0.5 * torch.randn(B, D, generator=g)
    z = mu + torch.randn(B, D, generator=g) * torch.exp(0.5 * lv)
    with est.validate_args(False):
        for _ in range(3):
            est.log_aggregate_posterior(z, mu, lv, N, "mss")
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            est.log_aggregate_posterior(z, mu, lv, N, "mss")
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"mss, B = 2048, D = 10, float32; median of {args.repeats} calls (ms); {args.hogs} busy processes when busy")
    print(f"{'machine':<8} {'1 thread':>9} {'2 threads':>10}")
    for busy in (False, True):
        stop = mp.Event()
        hogs = [mp.Process(target=_hog, args=(stop,), daemon=True) for _ in range(args.hogs if busy else 0)]
        for h in hogs:
            h.start()
        try:
            row = [_median_ms(t, args.repeats) for t in (1, 2)]
        finally:
            stop.set()
            for h in hogs:
                h.join()
        print(f"{'busy' if busy else 'idle':<8} {row[0]:>9.1f} {row[1]:>10.1f}")


if __name__ == "__main__":
    main()
