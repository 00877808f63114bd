"""The fused joint kernel against its roofline, in one run.

Two floors of one term of log q(z_i) = logsumexp_n (c_n - sum_d a_dn (z_id - mu_dn)^2), measured by
benchmarks/kernel_bound.c built with the kernel's compiler flags: "fma bound", one inline exp (the
kernel's own, on values in L1) plus D fused multiply-adds in registers; "direct floor", the same exp plus
the kernel's own register tiles of the direct form on components held in L1 (3 vector operations per
dimension: what the kernel would cost with memory, the block maxima and the merges free). Prints, for
D = 10 and 64 and float32 and float64, the kernel's time per term (Q x N terms on ``--threads`` threads,
as time x threads) and its ratio to each floor (one thread).

    .venv/bin/python benchmarks/speed_kernel_bound.py [--Q 2048] [--N 60000] [--threads 1]
"""
from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from estimators.kernels import joint_lse
from estimators.kernels import native

SOURCE = Path(__file__).with_name("kernel_bound.c")


def build(dtype: torch.dtype, where: Path) -> ctypes.CDLL:
    compiler = shutil.which("gcc") or shutil.which("cc")
    obj, lib = where / f"bound{dtype}.o", where / f"bound{dtype}.so"
    subprocess.run([compiler, *native._FLAGS, *native._defines(dtype), "-c", "-o", str(obj), str(SOURCE)], check=True)
    subprocess.run([compiler, *native._LINK, "-o", str(lib), str(obj), "-lm"], check=True)
    return ctypes.CDLL(str(lib))


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def floors_per_term(lib: ctypes.CDLL, suffix: str, D: int) -> tuple[float, float]:
    """(fma bound, direct floor) in seconds per term, one thread."""
    bexp, bfma, bdirect, lanes = (getattr(lib, name + suffix)
                                  for name in ("bound_exp", "bound_fma", "bound_direct", "bound_lanes"))
    bexp.restype = bfma.restype = bdirect.restype = ctypes.c_double
    bexp.argtypes, lanes.restype = [ctypes.c_long], ctypes.c_long
    bfma.argtypes = bdirect.argtypes = [ctypes.c_long, ctypes.c_long]
    t_exp = best_of(lambda: bexp(20000)) / (20000 * 1024)
    t_fma = best_of(lambda: bfma(2_000_000, D)) / (2_000_000 * lanes())
    reps = 2_000_000 // D
    t_direct = best_of(lambda: bdirect(reps, D)) / (reps * 8 * 64)  # TILE = 8 queries x 64 components
    return t_exp + t_fma, t_exp + t_direct


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--Q", type=int, default=2048)
    parser.add_argument("--N", type=int, default=60000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if native.get() is None:
        raise SystemExit(f"error: the native kernel is unavailable: {native.unavailable_reason()}")
    g = torch.Generator().manual_seed(0)
    print(f"joint kernel, Q = {args.Q}, N = {args.N}, {args.threads} thread(s); ns per term (x threads)")
    print(f"{'dtype':8s} {'D':>3s} {'kernel':>8s} {'fma bound':>10s} {'ratio':>6s} {'direct floor':>13s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, suffix in ((torch.float32, "_f32"), (torch.float64, "_f64")):
            lib = build(dtype, Path(tmp))
            for D in (10, 64):
                mu = torch.randn(args.N, D, generator=g, dtype=dtype)
                lv = 0.1 * torch.randn(args.N, D, generator=g, dtype=dtype)
                z = torch.randn(args.Q, D, generator=g, dtype=dtype)
                joint_lse(z, mu, lv)  # warm-up: compiles and loads the kernel
                kernel = best_of(lambda: joint_lse(z, mu, lv), 3) * args.threads / (args.Q * args.N)
                bound, floor = floors_per_term(lib, suffix, D)
                name = str(dtype).replace("torch.", "")
                print(f"{name:8s} {D:3d} {kernel * 1e9:8.3f} {bound * 1e9:10.3f} {kernel / bound:6.2f} "
                      f"{floor * 1e9:13.3f} {kernel / floor:6.2f}")


if __name__ == "__main__":
    main()
