r"""``python -m estimators report``: redraw the plots and README.md from the CSVs already in a folder."""
from __future__ import annotations

from pathlib import Path

from ..bench.report import load_results, terminal_table, write_report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="redraw plots and the summary from existing benchmark CSVs",
        description="Read every OUT/*.csv written by `bench` and regenerate OUT/<name>-*.png and OUT/README.md.",
    )
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    p.add_argument("--no-plots", action="store_true",
                   help="rewrite README.md only, showing the plots already in OUT")
    p.set_defaults(run=run)


def run(args) -> int:
    folder = Path(args.out)
    written = write_report(folder, draw=not args.no_plots)
    for name, df in load_results(folder).items():
        if len(df):
            print(f"== {name}.csv")
            print(terminal_table(df))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
