"""Speed of the estimators of log q(z_i) against a naive broadcast implementation of each one.

    .venv/bin/python benchmarks/speed_estimators.py [--batch-size 2048] [--repeats 5] [--threads 2]

float32, D = 10. The baseline of each minibatch estimator is the same formula laid out as the
published code does: the full B x B x D tensor of per-dimension log-densities, the log weight
matrix added, then torch.logsumexp (the joint from its sum over d). Ours and the baseline run
interleaved, so load from other processes hits both alike; the table gives medians and their
ratio ("joint": log q only, ``marginals=False``; "both": log q and the D marginals). Then the time
of a full ``decompose`` (forward, and forward + backward) at a smaller batch.

Targets: >= 20x for the joint, >= 5x for joint + marginals at B = 2048; decompose at B = 1024
under 50 ms.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from estimators import ESTIMATORS, decompose, log_aggregate_posterior
from estimators.weights import cached_log_weights

LOG_2PI = math.log(2 * math.pi)
DATASET_SIZE = 60000


def batch(B: int, D: int, seed: int = 0):
    """A realistic batch: spread means, log-variances in [-6, 1], z drawn from the own posteriors."""
    g = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(B, D, generator=g)
    logvar = -6.0 + 7.0 * torch.rand(B, D, generator=g)
    z = mu + torch.randn(B, D, generator=g) * torch.exp(0.5 * logvar)
    return z, mu, logvar


def broadcast_weights(name: str, B: int, N: int, D: int):
    """(log weights of the joint, log weights of the marginals, constant offset) of estimator ``name``."""
    kinds = {"mss": "mss", "stratified": "stratified", "loo": "loo", "mss_shipped": "mss_shipped",
             "mss_per_dim": "mss_shipped"}
    if name in kinds:
        w = cached_log_weights(kinds[name], B, N, torch.float32)
        return (D * w if name == "mss_per_dim" else w), w, 0.0
    offsets = {"naive": -math.log(B), "mws": -math.log(N * B), "tc_no_constant": 0.0}
    return None, None, offsets[name]


def broadcast(z, mu, logvar, w_joint, w_dims, offset, marginals=True):
    """The published layout: a B x B x D tensor of log-densities, then torch.logsumexp."""
    L = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar)[None])
    joint = L.sum(2) if w_joint is None else L.sum(2) + w_joint
    log_qz = torch.logsumexp(joint, 1) + offset
    if not marginals:
        return log_qz, None
    dims = L if w_dims is None else L + w_dims[:, :, None]
    return log_qz, torch.logsumexp(dims, 1) + offset


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
    z, mu, logvar = batch(B, D)
    N = DATASET_SIZE
    print(f"B = {B}, D = {D}, N = {N}, float32, {torch.get_num_threads()} threads, median of {repeats}")
    header = f"{'estimator':16s} {'joint ms':>9s} {'bcast ms':>9s} {'ratio':>6s}   {'both ms':>9s} {'bcast ms':>9s} {'ratio':>6s}   {'max |diff|':>10s}"
    print(header)
    with torch.no_grad():
        for name, info in ESTIMATORS.items():
            if info.family != "minibatch":
                continue
            w_joint, w_dims, offset = broadcast_weights(name, B, N, D)
            ours_joint = lambda: log_aggregate_posterior(z, mu, logvar, N, name, marginals=False)
            ours_both = lambda: log_aggregate_posterior(z, mu, logvar, N, name)
            base_joint = lambda: broadcast(z, mu, logvar, w_joint, w_dims, offset, marginals=False)
            base_both = lambda: broadcast(z, mu, logvar, w_joint, w_dims, offset)
            t = interleaved({"oj": ours_joint, "bj": base_joint, "ob": ours_both, "bb": base_both}, repeats)
            ours, base = ours_both(), base_both()
            diff = max(float((ours[0] - base[0]).abs().max()), float((ours[1] - base[1]).abs().max()))
            print(f"{name:16s} {t['oj'] * 1e3:9.1f} {t['bj'] * 1e3:9.1f} {t['bj'] / t['oj']:6.1f}   "
                  f"{t['ob'] * 1e3:9.1f} {t['bb'] * 1e3:9.1f} {t['bb'] / t['ob']:6.1f}   {diff:10.2e}")


def decompose_table(B: int, D: int, repeats: int) -> None:
    z, mu, logvar = batch(B, D, seed=1)
    index = torch.arange(B)
    print(f"\ndecompose at B = {B}, D = {D}, float32 (field estimators: the batch as an N = {B} field; iwae k = 64)")
    print(f"{'estimator':16s} {'forward ms':>11s} {'fwd+bwd ms':>11s}")
    for name, info in ESTIMATORS.items():
        kw = {"k": 64, "generator": torch.Generator().manual_seed(0)} if info.needs_k else {}
        if info.needs_field:
            args, kw = (z, mu, logvar, None, name), {**kw, "index": index}
        else:
            args = (z, mu, logvar, DATASET_SIZE, name)

        def forward():
            with torch.no_grad():
                decompose(*args, **kw)

        leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]

        def backward():
            out = decompose(*leaves, *args[3:], **kw)
            (out["mi"] + out["tc"] + out["dimwise_kl"]).backward()

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
            f"per op (PERF.md: about 4.2 G/s on an idle machine with 2 threads)")


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
