r"""``python -m estimators mig FILE.npz``: the exact MIG of a field with factors, and the sampled estimates' accuracy.

Examples::

    python -m estimators mig dsprites_vae.npz --replicates 0                       # exact references only
    python -m estimators mig dsprites_vae.npz --samples 1000 10000 --replicates 20 --out results/mig
    python -m estimators mig dsprites_vae.npz --factors-in-mig scale orientation pos_x pos_y   # the published set
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..posteriors import load_posteriors
from ._help import paragraph

_EXPECTED = ("a .npz file holding arrays mu and logvar (N, D), factors (N, K) of integers and optionally "
             "factor_names (K,) and factor_sizes (K,)")


def register(subparsers) -> None:
    from ..mig import MIG_ESTIMATORS

    p = subparsers.add_parser(
        "mig", help="exact mutual information gap (MIG) of a field with factors; accuracy of the sampled estimates",
        description=paragraph(
            "The exact I(z_j; v_k) of every latent and factor and the MIG (Chen et al. 2018) of a field of "
            "diagonal-Gaussian posteriors with discrete ground-truth factors, every entropy by 1-D adaptive "
            "quadrature with an error bound. With --replicates R > 0, also the bias, sd and rmse over R seeds of "
            "the sampled estimates: beta_tcvae (a replica of the beta-TCVAE authors' evaluation code) and paired "
            "(unbiased I's from paired draws, no clamp); with --out, writes mig.csv, mig.png and mig.md there."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=paragraph(f"FILE: {_EXPECTED}. estimators: {', '.join(MIG_ESTIMATORS)}."),
    )
    p.add_argument("file", metavar="FILE", help="the field: " + _EXPECTED)
    p.add_argument("--samples", nargs="+", type=int, default=[1000, 10_000], metavar="S",
                   help="n_samples of the sampled estimates (default 1000 10000; the published setting is 10000)")
    p.add_argument("--replicates", type=int, default=20, metavar="R",
                   help="seeds per estimator and n_samples (default 20; 0: the exact references only)")
    p.add_argument("--estimators", nargs="+", default=list(MIG_ESTIMATORS), metavar="NAME",
                   help=f"sampled estimators to study (default: {' '.join(MIG_ESTIMATORS)})")
    p.add_argument("--factors-in-mig", nargs="+", default=None, metavar="NAME",
                   help="factors the MIG averages over (default: all; the published dSprites metric leaves shape out)")
    p.add_argument("--out", default=None, metavar="DIR", help="write mig.csv, mig.png and mig.md into DIR")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the study (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the sampled estimates' kernel log-sums (default float64; float32 is about "
                        "twice as fast on a CPU)")
    p.add_argument("--nodes", type=int, default=32, metavar="H",
                   help="Gauss-Legendre nodes per quadrature cell (>= 2; default 32)")
    p.add_argument("--json", action="store_true", help="print the exact references as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(run=run)


def load_factor_field(path) -> dict:
    r"""mu, logvar (via :func:`estimators.load_posteriors`), factors and the optional factor_names, factor_sizes of a
    .npz file, as keyword arguments of :func:`estimators.mig.mig_references`. ValueError naming the file otherwise."""
    path = Path(path)
    field = load_posteriors(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"cannot read {str(path)!r}: expected {_EXPECTED}")
    with np.load(path, allow_pickle=False) as data:
        if "factors" not in data.files:
            raise ValueError(f"{str(path)!r} lacks the array 'factors' ((N, K) integers); it holds {sorted(data.files)}")
        out = {"mu": field.mu, "logvar": field.logvar, "factors": data["factors"]}
        for key in ("factor_names", "factor_sizes"):
            if key in data.files:
                out[key] = data[key].tolist()
    return out


def _to_json(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def format_references(ref: dict, title: str) -> str:
    r"""A readable table: per factor H(v), the top two latents and their I, the normalised gap and its bound."""
    lines = [f"exact MIG of {title}: N = {ref['N']}, D = {ref['D']}, K = {ref['K']} factors",
             f"{'factor':<14}{'|V|':>5}{'H(v)':>10}{'top':>6}{'I_(1)':>12}{'2nd':>6}{'I_(2)':>12}"
             f"{'gap/H(v)':>12}{'bound':>10}  top certain"]
    for k, name in enumerate(ref["factor_names"]):
        j1, j2 = ref["top_latent"][k], ref["second_latent"][k]
        lines.append(f"{name:<14}{ref['factor_sizes'][k]:>5}{ref['factor_entropy'][k]:>10.4f}{'z' + str(j1):>6}"
                     f"{float(ref['mi'][j1, k]):>12.6f}{'z' + str(j2):>6}{float(ref['mi'][j2, k]):>12.6f}"
                     f"{ref['normalized_gap'][k]:>12.6f}{ref['normalized_gap_error'][k]:>10.1e}  "
                     f"{'yes' if ref['top_certain'][k] else 'no (within the bounds)'}")
    lines.append(f"MIG over {', '.join(ref['factors_in_mig'])} = {ref['mig']:.8f} (error bound {ref['mig_error']:.1e}); "
                 f"max I error bound {float(ref['mi_error'].max()):.1e}; {ref['quadratures']} quadratures, "
                 f"{ref['seconds']:.1f} s")
    return "\n".join(lines)


def run(args) -> int:
    from ..mig import MIG_ESTIMATORS, mig_markdown, mig_references, run_mig_study, write_mig_report

    if args.replicates < 0 or args.replicates == 1:
        raise ValueError(f"--replicates must be 0 (exact references only) or >= 2, got {args.replicates}")
    if any(s < 1 for s in args.samples):
        raise ValueError(f"--samples must be positive, got {args.samples}")
    unknown = [e for e in args.estimators if e not in MIG_ESTIMATORS]
    if unknown:
        raise ValueError(f"--estimators: unknown {', '.join(unknown)}; known: {', '.join(MIG_ESTIMATORS)}")
    if args.nodes < 2:
        raise ValueError(f"--nodes must be >= 2, got {args.nodes}")
    inputs = load_factor_field(args.file)
    start = time.perf_counter()
    try:
        ref = mig_references(**inputs, factors_in_mig=args.factors_in_mig, quadrature_nodes=args.nodes)
    except ValueError as exc:
        message = str(exc).replace("factors_in_mig", "--factors-in-mig")
        raise ValueError(f"{args.file}: {message}") from exc
    if args.json:
        print(json.dumps({key: _to_json(value) for key, value in ref.items()}))
    else:
        print(format_references(ref, args.file))
    if args.replicates == 0:
        return 0
    log = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    df = run_mig_study(**inputs, factors_in_mig=args.factors_in_mig, sample_sizes=args.samples,
                       replicates=args.replicates, estimators=args.estimators, seed=args.seed,
                       dtype={"float64": torch.float64, "float32": torch.float32}[args.dtype], reference=ref,
                       field_name=Path(args.file).stem, log=log)
    if not args.json:
        print()
        print(mig_markdown(df))
    if args.out is not None:
        paths = write_mig_report(df, args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())} ({time.perf_counter() - start:.1f} s)",
              file=sys.stderr if args.json else sys.stdout)
    return 0
