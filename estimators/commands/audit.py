r"""``python -m estimators audit FILE.py:FUNCTION``: which estimator does your loss compute?

Examples::

    python -m estimators audit my_losses.py:total_correlation
    python -m estimators audit mypackage.losses:tc --batch-size 2048 --dataset-size 20000 --json
    python -m estimators audit my_losses.py:tc --posteriors my_vae.npz

Exit status: 0 a correct estimator, 1 a known bug, 3 unknown, 2 bad input (the function cannot be
found or run: one ``error:`` line saying why).
"""
from __future__ import annotations

import argparse
import json
import sys

from ._help import paragraph

ADAPTER_HINT = ("FUNCTION receives (z, mu, logvar, dataset_size): z, mu, logvar are (B, D) torch tensors. It returns "
                "per-sample (log_qz, log_prod_qz), (B,) each, or scalars among mi, tc, dimwise_kl, kl_agg (a dict, "
                "a named tuple or an object with those attributes). Wrap other signatures in a few lines: see the "
                "README, 'Audit your own loss'.")


def register(subparsers) -> None:
    from ..auditing.accuracy import DEFAULT_SCENARIOS

    p = subparsers.add_parser(
        "audit", help="which estimator does your function compute, its bug if any, and its bias at your B and N",
        description=paragraph(
            "Runs FUNCTION on 96 fixed fixture batches (posteriors equal to the prior, sharp, broad and "
            "heteroscedastic; B from 2 to 256, N from B to 737,280, D 1 to 10, float32 and float64), compares it "
            "with every registered minibatch estimator and the known bugs (exact within float32 rounding), fits "
            "the known offset signatures where nothing matches (a dropped normaliser, a missing dataset size), "
            "and measures its bias, sd and RMSE against exact references at your batch size and data-set "
            "size. " + ADAPTER_HINT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 correct, 1 known bug, 3 unknown, 2 bad input",
    )
    p.add_argument("function", metavar="FILE.py:FUNCTION",
                   help="the function to audit: path/to/file.py:name or package.module:name (name may be dotted)")
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="your batch size (default 64)")
    p.add_argument("--dataset-size", type=int, default=2048, metavar="N",
                   help="your data-set size for the accuracy part (default 2048; at most 32768)")
    p.add_argument("--D", type=int, default=5, help="latent dimensions of the built-in scenarios (default 5)")
    p.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS), metavar="NAME",
                   help=f"built-in fields of the accuracy part (default: {' '.join(DEFAULT_SCENARIOS)})")
    p.add_argument("--posteriors", metavar="FILE", default=None,
                   help="your own field (.npz/.pt with mu, logvar of shape (N, D)) instead of the scenarios")
    p.add_argument("--replicates", type=int, default=32, metavar="R", help="batches per field (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the accuracy part's batches (default 0)")
    p.add_argument("--no-accuracy", action="store_true", help="classify only (seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..auditing import AuditError, audit, load_function
    from ..scenarios import SCENARIOS

    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        raise ValueError(f"unknown scenario {bad[0]!r}; known scenarios: {', '.join(SCENARIOS)}")
    fn = load_function(args.function)
    try:
        report = audit(fn, batch_size=args.batch_size, dataset_size=args.dataset_size, D=args.D,
                       scenarios=tuple(args.scenarios), posteriors=args.posteriors, replicates=args.replicates,
                       seed=args.seed, check_accuracy=not args.no_accuracy, name=args.function)
    except AuditError as exc:
        raise ValueError(f"{exc}. {ADAPTER_HINT}") from None
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report)
    return report.exit_code
