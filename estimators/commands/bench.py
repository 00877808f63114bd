r"""``python -m estimators bench``: run a benchmark grid into a resumable tidy CSV, then report.

Examples::

    python -m estimators bench --preset quick
    python -m estimators bench --preset standard --out results/
    python -m estimators bench --posteriors my_vae.npz --estimators mss stratified --batch-sizes 64 256
    python -m estimators bench --preset standard --workers 2             # a local dask cluster
    python -m estimators bench --preset full --scheduler tcp://host:8786  # an existing one (many machines)
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..bench.executor import SERIAL, add_cluster_arguments, executor_from_args
from ..bench.lock import output_lock
from ..bench.plan import plan
from ..bench.presets import PRESETS
from ..bench.report import terminal_table, write_report
from ..bench.runner import execute
from ..bench.store import ResultStore, read_results
from ..validation import as_int
from ._help import bench_names, paragraph


def _names(values: list[str] | None) -> list[str] | None:
    r"""Accept both ``--x a b`` and ``--x a,b``."""
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _ints(values: list[str] | None, flag: str) -> tuple[int, ...] | None:
    names = _names(values)
    if names is None:
        return None
    try:
        return tuple(int(v) for v in names)
    except ValueError:
        raise ValueError(f"{flag} takes integers, got {' '.join(values)!r}") from None


def probe_writable(folder: str | os.PathLike) -> None:
    r"""Check, without creating anything, that ``folder`` is or can become a writable folder
    (a ValueError naming it otherwise), so a bad ``--out`` fails before any work."""
    path = Path(folder).absolute()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"--out {str(folder)!r} is not a writable folder: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(folder)!r} is not a writable folder: no write permission on {str(existing)!r}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure every estimator's bias, variance and speed against exact references",
        description=paragraph(
            "Run a benchmark grid (scenario x estimator x batch size x k, R replicates each) and write "
            "one tidy CSV row per (scenario, quantity, estimator, batch_size, k) cell to OUT/NAME.csv, "
            "then plots and OUT/README.md. Finished cells are kept: rerunning resumes."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets (--preset):\n" + "\n".join(f"  {n:<9} {p.description}" for n, p in PRESETS.items())
               + "\n" + bench_names()
               + "\n\nOne run at a time writes a CSV: a second run on the same OUT/NAME.csv stops with an error"
                 "\n(exit 2) naming the first, or waits for it with --wait."
                 "\n\nScale-out (dask.distributed): --workers K runs the units on K local worker processes,"
                 "\n--scheduler ADDRESS on an existing cluster's workers (started with `dask scheduler` and"
                 "\n`dask worker ADDRESS` on each machine); the CSV is the same as in one process (every column"
                 "\nbut time_per_call_s). A unit whose worker dies is run again on another; one whose workers"
                 "\nkeep dying is recorded as status error, and rerunning the command retries it.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="base grid (default: quick)")
    p.add_argument("--posteriors", nargs="+", metavar="FIELD",
                   help=".npz/.pt file(s) with arrays mu, logvar (N, D); scenario name = file stem")
    p.add_argument("--scenarios", nargs="+", metavar="NAME", help="scenario or log p(x) task names (a b or a,b)")
    p.add_argument("--estimators", nargs="+", metavar="NAME", help="estimator names")
    p.add_argument("--quantities", nargs="+", metavar="NAME", help="mi kl_agg tc dimwise_kl log_px")
    p.add_argument("--batch-sizes", nargs="+", metavar="B", help="batch sizes")
    p.add_argument("--k", nargs="+", metavar="K", help="k for estimators that take one (iwae; log p(x))")
    p.add_argument("--replicates", type=int, metavar="R", help="replicate batches per cell (>= 2)")
    p.add_argument("--N", type=int, help="data points of the named scenarios")
    p.add_argument("--D", type=int, help="latent dimensions of the named scenarios")
    p.add_argument("--separation", nargs="+", metavar="S", help="scenario knob(s) in [0, 1]")
    p.add_argument("--reference-samples", type=int, metavar="S",
                   help="Monte Carlo draws per component of the references")
    p.add_argument("--dtype", choices=("float32", "float64"), help="precision of the estimators (default float64)")
    p.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument("--name", help="CSV name in OUT (default: the preset, or the posterior file stem)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the plots and README")
    p.add_argument("--wait", action="store_true",
                   help="if another run is writing OUT/NAME.csv, wait for it to finish (default: exit 2)")
    add_cluster_arguments(p)
    p.set_defaults(run=run)


def _preset_from_args(args):
    preset = PRESETS[args.preset]
    changes = {}
    if args.batch_sizes is not None:
        changes["batch_sizes"] = _ints(args.batch_sizes, "--batch-sizes")
    if args.k is not None:
        k = _ints(args.k, "--k")
        changes["k"] = changes["log_px_k"] = k
    if args.replicates is not None:
        changes["replicates"] = changes["log_px_replicates"] = args.replicates
    if args.reference_samples is not None:
        changes["reference_samples"] = as_int("--reference-samples", args.reference_samples, 2)
    if args.dtype is not None:
        changes["dtype"] = args.dtype
    return preset.with_(**changes) if changes else preset


def run(args) -> int:
    executor = executor_from_args(args)  # a bad --workers fails here, before any work
    preset = _preset_from_args(args)
    posteriors = args.posteriors
    if posteriors:
        for f in posteriors:
            if not Path(f).is_file():
                raise FileNotFoundError(f"posterior file {f!r} does not exist (expected .npz or .pt with mu, logvar)")
    name = args.name or ("-".join(Path(f).stem for f in posteriors) if posteriors else preset.name)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"--name must be a plain file name, got {name!r}")
    probe_writable(args.out)  # before any work, and without creating anything
    for flag, v in (("--N", args.N), ("--D", args.D)):
        if v is not None:
            as_int(flag, v, 1)
    separations = None
    if args.separation is not None:
        try:
            separations = [float(v) for v in _names(args.separation)]
        except ValueError:
            raise ValueError(f"--separation takes numbers in [0, 1], got {' '.join(args.separation)!r}") from None
        if any(not 0.0 <= v <= 1.0 for v in separations):
            raise ValueError(f"--separation must lie in [0, 1], got {separations}")
    the_plan = plan(preset, posteriors=posteriors, scenarios=_names(args.scenarios),
                    estimators=_names(args.estimators), quantities=_names(args.quantities),
                    N=args.N, D=args.D, separations=separations, seed=args.seed)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731  stdout is kept for the table
    csv_path = Path(args.out) / (name + ".csv")
    command = "python -m estimators " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    # One writer per CSV, from before it is read to after the report is drawn (see bench/lock.py).
    with output_lock(csv_path, wait=args.wait, command=command, log=log):
        ResultStore(csv_path)  # an existing CSV that fails the schema check: one error line, before any work
        log(f"bench {name}: {len(the_plan.units)} units ({sum(len(u.quantities) for u in the_plan.units)} cells) "
            f"-> {csv_path}")
        with executor:  # starts the local cluster or connects (an unreachable scheduler: one error line)
            if executor is not SERIAL:
                log(f"running on {executor.describe()}")
            path = execute(the_plan, args.out, name, progress=not args.no_progress, log=log, executor=executor)
        if not args.no_report:
            write_report(args.out)
        # A posterior file of one's own: every estimator's bias, not only the best one.
        print(terminal_table(read_results(path), every_estimator=bool(posteriors)))
    print(f"results: {path}" + ("" if args.no_report else f"; plots and summary: {Path(args.out) / 'README.md'}"))
    return 0
