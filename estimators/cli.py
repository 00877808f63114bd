"""Command line: ``python -m estimators {exact,bench,report} ...``.

Each subcommand lives in ``estimators/commands/<name>.py`` with ``register(subparsers)`` and
``run(args) -> int``. Bad input (ValueError, FileNotFoundError, KeyError from validation) is
reported as one ``error: ...`` line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("exact", "bench", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m estimators",
        description="Estimators of VAE aggregate-posterior quantities: exact references and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"commands.{name}"):
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


class UsageError(Exception):
    """Raised by a subcommand for bad input that is not a ValueError (exit code 2)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, PermissionError, IsADirectoryError, UsageError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; rerun the same command to resume", file=sys.stderr)
        return 130
