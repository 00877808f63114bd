r"""``python -m estimators gradients``: the gradient study (and, with ``--training``, the training study).

Examples::

    python -m estimators gradients --preset standard --out results      # gradients.csv, gradients.png, gradients.md
    python -m estimators gradients --training --out results             # training.csv and its table in gradients.md
    python -m estimators gradients --preset quick --out /tmp/g --estimators mss mws --batch-sizes 16 64
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._help import paragraph


def register(subparsers) -> None:
    from ..gradients.encoders import PROBLEMS
    from ..gradients.presets import PRESETS, TRAINING_PRESETS

    p = subparsers.add_parser(
        "gradients", help="gradient bias, SNR and cosine of every estimator vs the exact gradient; training study",
        description=paragraph(
            "The gradient w.r.t. the encoder's parameters of each quantity's minibatch estimate (what training "
            "back-propagates), over R replicate batches, against the exact gradient of the full-data quantity "
            "(reparameterised Monte Carlo over all N components with the exact log q(z), with an se). Writes "
            "<out>/gradients.csv (one row per field, quantity, estimator, B, k), gradients.png and gradients.md. "
            "With --training: trains the digits VAE as a beta-TCVAE with each estimator and writes "
            "<out>/training.csv and its table in gradients.md."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=paragraph(f"fields: {', '.join(PROBLEMS)}. gradient presets: "
                         + "; ".join(f"{n} ({p.description})" for n, p in PRESETS.items())
                         + ". training presets: " + "; ".join(f"{n} ({p.description})"
                                                               for n, p in TRAINING_PRESETS.items())),
    )
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"gradient preset ({', '.join(PRESETS)}; default standard) or, with --training, "
                        f"training preset ({', '.join(TRAINING_PRESETS)}; default training)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: results for the standard and training presets, "
                        "results/.partial/<preset> for the smoke presets, so they never overwrite the committed files)")
    p.add_argument("--resume", action="store_true", help="keep the cells already in the CSV and run the rest")
    p.add_argument("--training", action="store_true", help="run the training study instead of the gradient study")
    p.add_argument("--fields", nargs="+", default=None, metavar="FIELD", help="override the preset's fields")
    p.add_argument("--estimators", nargs="+", default=None, metavar="NAME", help="override the preset's estimators")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, metavar="B",
                   help="override the preset's batch sizes")
    p.add_argument("--replicates", type=int, default=None, metavar="R", help="override R (gradient study)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="S", help="override the seeds (training)")
    p.add_argument("--steps", type=int, default=None, help="override the training steps (training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _positive(name: str, values) -> None:
    if values is not None and any(v < 1 for v in (values if isinstance(values, list) else [values])):
        raise ValueError(f"{name} must be positive, got {values}")


def run(args) -> int:
    from ..gradients.encoders import PROBLEMS
    from ..gradients.presets import PRESETS, TRAINING_PRESETS
    from ..gradients.report import write_report
    from ..log_qz import ESTIMATORS

    _positive("--batch-sizes", args.batch_sizes)
    _positive("--seeds", [s + 1 for s in args.seeds] if args.seeds is not None else None)
    _positive("--steps", args.steps)
    if args.estimators is not None:
        unknown = [e for e in args.estimators if e not in ESTIMATORS]
        if unknown:
            raise ValueError(f"--estimators: unknown {', '.join(unknown)}; known: {', '.join(ESTIMATORS)}")
    start = time.perf_counter()
    committed = ("standard", "training")
    chosen = args.preset or ("training" if args.training else "standard")
    out = Path(args.out if args.out is not None else
               ("results" if chosen in committed else f"results/.partial/{chosen}"))
    if args.training:
        from ..gradients.training import run_training_study

        name = args.preset or "training"
        if name not in TRAINING_PRESETS:
            raise ValueError(f"--preset with --training must be one of {', '.join(TRAINING_PRESETS)}, got {name!r}")
        if args.fields is not None or args.replicates is not None:
            raise ValueError("--fields and --replicates apply to the gradient study, not to --training")
        preset = TRAINING_PRESETS[name]
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in
                   (("estimators", args.estimators), ("batch_sizes", args.batch_sizes), ("seeds", args.seeds),
                    ("steps", args.steps)) if v is not None}
        preset = preset.with_(**changes)
        table = run_training_study(preset, out, resume=args.resume, progress=not args.no_progress)
        write_report(out, training=table)
        print(f"training study: {len(table)} runs -> {out / 'training.csv'} ({time.perf_counter() - start:.1f} s)")
        return 0
    from ..gradients.runner import run_gradient_study

    name = args.preset or "standard"
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    if args.seeds is not None or args.steps is not None:
        raise ValueError("--seeds and --steps apply to --training only")
    _positive("--replicates", args.replicates)
    if args.replicates is not None and args.replicates < 2:
        raise ValueError(f"--replicates must be at least 2, got {args.replicates}")
    if args.fields is not None:
        unknown = [f for f in args.fields if f not in PROBLEMS]
        if unknown:
            raise ValueError(f"--fields: unknown {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    preset = PRESETS[name]
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in
               (("fields", args.fields), ("estimators", args.estimators), ("batch_sizes", args.batch_sizes),
                ("replicates", args.replicates)) if v is not None}
    preset = preset.with_(**changes)
    table = run_gradient_study(preset, out, resume=args.resume, progress=not args.no_progress)
    write_report(out, df=table)
    print(f"gradient study: {len(table)} rows -> {out / 'gradients.csv'}, gradients.png, gradients.md "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
