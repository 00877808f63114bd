"""Speed and memory of the mixture kernels against a naive broadcast, in one process.

    .venv/bin/python benchmarks/speed_kernels.py [--large]

float32, D = 10, 2 threads, median of repeats. The naive baseline is what published code does:
the full Q x N x D tensor of per-dimension log-densities, then torch.logsumexp. Memory is the
peak resident set beyond the inputs, measured in a fresh subprocess per case. "weighted marginals"
are the minibatch estimators' marginals: a (Q, N) log-weight matrix shared by every dimension
(``estimators.kernels.log_weighted_marginals``).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch

LOG_2PI = math.log(2 * math.pi)


def naive_joint(z, mu, logvar):
    L = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 / torch.exp(logvar)[None])
    return torch.logsumexp(L.sum(2), 1)


def naive_marginals(z, mu, logvar):
    L = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 / torch.exp(logvar)[None])
    return torch.logsumexp(L, 1)


def log_weight_matrix(Q, N, dataset_size=60000):
    """A minibatch-stratified-like (Q, N) log-weight matrix: 1/N_data on the diagonal, the rest equal."""
    W = torch.full((Q, N), math.log((dataset_size - 1) / (dataset_size * (N - 1))))
    W.fill_diagonal_(-math.log(dataset_size))
    return W


def naive_weighted_marginals(z, mu, logvar, W):
    L = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 / torch.exp(logvar)[None])
    return torch.logsumexp(L + W[:, :, None], 1)


def cases(z, mu, logvar, weighted=True):
    """kind -> (kernel(**options), naive()) on these inputs: the table's rows (weights built here, untimed)."""
    from estimators.kernels import log_mixture, log_mixture_marginals, log_weighted_marginals

    rows = {
        "joint": (lambda **kw: log_mixture(z, mu, logvar, **kw), lambda: naive_joint(z, mu, logvar)),
        "marginals": (lambda **kw: log_mixture_marginals(z, mu, logvar, **kw), lambda: naive_marginals(z, mu, logvar)),
    }
    if weighted:
        W = log_weight_matrix(len(z), len(mu))
        rows["weighted marginals"] = (lambda **kw: log_weighted_marginals(z, mu, logvar, W, **kw),
                                      lambda: naive_weighted_marginals(z, mu, logvar, W))
    return rows


def make_inputs(Q, N, D=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g)
    logvar = torch.rand(N, D, generator=g) * 4 - 3
    z = mu[:Q] + torch.randn(Q, D, generator=g) * torch.exp(0.5 * logvar[:Q])
    return z, mu, logvar


def timeit(fn, repeats):
    fn()  # warm-up (and native compile)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def peak_memory_child(kind: str, Q: int, N: int) -> None:
    """Run one kernel call and print the peak RSS beyond the inputs (bytes), in this process."""
    torch.set_num_threads(2)
    z, mu, logvar = make_inputs(Q, N)
    fn = cases(z, mu, logvar, weighted=kind == "weighted marginals")[kind][0]
    cases(z[:8], mu[:8], logvar[:8])[kind][0]()  # load the native kernel before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS high-water mark (VmHWM) to the current RSS
    base = _status_bytes("VmRSS")
    fn()
    peak = _status_bytes("VmHWM")
    print(json.dumps({"extra_bytes": max(peak - base, 0)}))


def peak_memory(kind, Q, N):
    out = subprocess.run([sys.executable, __file__, "--memory-child", kind, str(Q), str(N)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_bytes"]


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    for Q in (1024, 4096):
        z, mu, logvar = make_inputs(Q, Q)
        for kind, (fast, naive) in cases(z, mu, logvar).items():
            t_fast = timeit(fast, 5)
            t_torch = timeit(lambda: fast(use_native=False), 3)
            t_naive = timeit(naive, 3)
            rows.append((kind, Q, t_fast, t_torch, t_naive))
    Q = 20000
    z, mu, logvar = make_inputs(Q, Q)
    for kind, (fast, _) in cases(z, mu, logvar, weighted=False).items():  # a (Q, N) matrix would be 1.6 GB
        t_fast = timeit(fast, 3)
        t_torch = timeit(lambda: fast(use_native=False), 1)
        rows.append((kind, Q, t_fast, t_torch, math.nan))
    print("| kernel | Q = N | native (s) | torch path (s) | naive Q x N x D (s) | speed-up vs naive | peak extra memory |")
    print("|---|---|---|---|---|---|---|")
    for kind, Q, t_fast, t_torch, t_naive in rows:
        mem = peak_memory(kind, Q, Q) / 2**20
        ratio = f"{t_naive / t_fast:.0f}x" if not math.isnan(t_naive) else "(naive needs 16 GB)"
        naive_s = f"{t_naive:.3f}" if not math.isnan(t_naive) else "-"
        print(f"| {kind} | {Q} | {t_fast:.3f} | {t_torch:.3f} | {naive_s} | {ratio} | {mem:.0f} MB |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-child", nargs=3, metavar=("KIND", "Q", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        kind, Q, N = args.memory_child
        peak_memory_child(kind, int(Q), int(N))
    else:
        main()
