"""Command line: ``python -m estimators {exact,bench,report,compare,audit} ...``.

Each subcommand lives in ``estimators/commands/<name>.py`` with ``register(subparsers)`` and
``run(args) -> int``. Bad input (ValueError, FileNotFoundError, KeyError from validation, an
unusable path) is reported as one ``error: ...`` line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("exact", "bench", "report", "compare", "audit", "gradients", "mig", "dsprites")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m estimators",
        description="Estimators of VAE aggregate-posterior quantities: exact references and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for the records of a run (bench's lock)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; rerun the same command to resume", file=sys.stderr)
        return 130
