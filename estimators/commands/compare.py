r"""``python -m estimators compare NEW.csv COMMITTED.csv``: do two results CSVs agree, cell by cell?

Examples::

    python -m estimators compare results/.reproduce/standard.csv results/standard.csv --ignore time_per_call_s
    python -m estimators compare a.csv b.csv --rtol 1e-6 --atol 0

Exit status: 0 when every cell of COMMITTED agrees, 1 when any differs (each is listed), 2 when a
file cannot be read (one ``error:`` line).
"""
from __future__ import annotations

import argparse

from ..bench.compare import ATOL, RTOL, compare_results


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="compare two results CSVs cell by cell (exit 1 if any cell differs)",
        description="Match the rows of NEW and COMMITTED by cell identity and compare every cell of COMMITTED: "
                    "numbers within |new - committed| <= ATOL + RTOL |committed| (NaN = NaN), text and bool "
                    "exactly. Missing or extra rows and columns, and a different row or column order, are "
                    "reported and count as disagreement.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 all cells agree, 1 some differ, 2 a file cannot be read",
    )
    p.add_argument("new", metavar="NEW.csv", help="the recomputed results")
    p.add_argument("committed", metavar="COMMITTED.csv", help="the results to agree with")
    p.add_argument("--ignore", nargs="+", action="extend", default=[], metavar="COLUMN",
                   help="columns left out, e.g. time_per_call_s (machine-dependent)")
    p.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance of numbers (default {RTOL:g})")
    p.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance of numbers (default {ATOL:g})")
    p.add_argument("--max-list", type=int, default=50, metavar="M",
                   help="list at most M disagreements of each kind (default 50)")
    p.set_defaults(run=run)


def run(args) -> int:
    result = compare_results(args.new, args.committed, ignore=args.ignore, rtol=args.rtol, atol=args.atol)
    print("\n".join(result.lines(limit=max(args.max_list, 0))))
    return 0 if result.ok else 1
