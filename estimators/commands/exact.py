r"""``python -m estimators exact FIELD``: the exact references of a posterior field.

Examples::

    python -m estimators exact my_vae.npz
    python -m estimators exact heteroscedastic --N 1000 --D 8 --separation 0.8 --json
    python -m estimators exact big_vae.npz --target-se 0.01     # draws picked by a pilot run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..posteriors import load_posteriors
from ..references import QUANTITIES, exact_references
from ..references.brackets import Z_BRACKET, BracketError
from ..references.monte_carlo import DEFAULT_MAX_TERMS
from ._help import exact_names, paragraph


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "exact", help="exact references (value, se, method) of a posterior file or a built-in scenario",
        description=paragraph(
            "Exact references of a field of diagonal-Gaussian posteriors: avg_kl (closed form), "
            "dimwise_kl (adaptive quadrature), kl_agg (quadrature for D <= 2, else Monte Carlo with control "
            "variates and a standard error, every draw evaluated against all N posteriors; draws from every "
            "posterior, or from a sub-sample with --strata, or as many as --target-se needs), "
            "mi = avg_kl - kl_agg and "
            "tc = kl_agg - dimwise_kl. Special structures (identical posteriors, product grids) get "
            "closed forms. The method is picked automatically and reported. Every quantity also gets a "
            "certified bracket [lower, upper] (pairwise-distance bounds on the mixture entropy, the "
            "moment-matched Gaussian, 0 <= mi <= log N, tc >= 0); a reference outside its bracket by more "
            "than 4 se is a bug, reported as an error with exit code 3."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=exact_names(),
    )
    p.add_argument("field", metavar="FIELD",
                   help="a .npz or .pt file holding arrays mu and logvar of shape (N, D), or a built-in scenario name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they go to stderr, with an ETA, for the quadratures and the Monte Carlo)")
    p.add_argument("--samples", type=int, default=8, metavar="S",
                   help="Monte Carlo draws per posterior for kl_agg (>= 2; default 8): se ~ 1/sqrt(N S), time ~ N^2 S")
    p.add_argument("--strata", type=int, default=None, metavar="M",
                   help="Monte Carlo from M posteriors drawn without replacement (S draws each, each draw still "
                        "evaluated against all N; default: every posterior): time ~ N M S")
    p.add_argument("--target-se", type=float, default=None, metavar="SE",
                   help="the standard error wanted for kl_agg, mi and tc: a pilot run picks the strata and draws "
                        "(--samples and --strata are then ignored); a target beyond --max-terms is an error")
    p.add_argument("--max-terms", type=float, default=DEFAULT_MAX_TERMS, metavar="T",
                   help=f"budget of a --target-se run in kernel terms, draws x N (default {DEFAULT_MAX_TERMS:.0e}: "
                        "about 2 minutes on 2 cores at D = 10)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the Monte Carlo draws (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision the field's mu and logvar are rounded to before computing (default float64); "
                        "the computation itself is always float64, so float32 gives the references of the "
                        "float32-rounded field")
    p.add_argument("--nodes", type=int, default=32, metavar="H",
                   help="Gauss-Legendre nodes per quadrature interval (>= 2; default 32)")
    p.add_argument("--N", type=int, default=None, help="scenario only: number of posteriors (default: the scenario's)")
    p.add_argument("--D", type=int, default=None, help="scenario only: latent dimensions (default: the scenario's)")
    p.add_argument("--separation", type=float, default=None, metavar="X",
                   help="scenario only: 0 collapsed .. 1 well separated (default 0.5)")
    p.add_argument("--scenario-seed", type=int, default=0, metavar="K",
                   help="scenario only: seed of the field itself (default 0)")
    p.set_defaults(run=run)


def _load_field(args):
    """The field named by FIELD: an existing file, else a scenario name; a clear ValueError otherwise."""
    path = Path(args.field)
    scenario_flags = {"--N": args.N, "--D": args.D, "--separation": args.separation}
    if path.exists():
        given = [flag for flag, value in scenario_flags.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to built-in scenarios only, not to the file {args.field!r}")
        return load_posteriors(path)
    from ..scenarios import SCENARIOS, make_scenario

    if args.field not in SCENARIOS:
        raise ValueError(f"FIELD {args.field!r} is neither an existing posterior file (.npz or .pt with arrays mu and "
                         f"logvar) nor a built-in scenario name (one of: {', '.join(SCENARIOS)})")
    separation = 0.5 if args.separation is None else args.separation
    return make_scenario(args.field, N=args.N, D=args.D, separation=separation, seed=args.scenario_seed)


def format_table(result: dict, title: str) -> str:
    """A readable aligned table of the references, with the sizes and a check of the two identities."""
    bracketed = all("lower" in result[q] for q in QUANTITIES)
    head = f"{'quantity':<12}{'value':>16}{'se':>12}  {'method':<11}"
    if bracketed:
        head += f"{'lower':>14}{'upper':>14}{'width':>11}  bounds (lower / upper)"
    lines = [f"exact references of {title} (structure: {result['structure']})", head]
    for q in QUANTITIES:
        entry = result[q]
        line = f"{q:<12}{entry['value']:>16.8f}{entry['se']:>12.2e}  {entry['method']:<11}"
        if bracketed:
            line += (f"{entry['lower']:>14.6f}{entry['upper']:>14.6f}{entry['upper'] - entry['lower']:>11.3g}  "
                     f"{entry['lower_by']} / {entry['upper_by']}")
        lines.append(line.rstrip())
    mc = result.get("monte_carlo")
    if mc:
        pilot = mc["pilot"]
        lines.append(f"Monte Carlo: {mc['strata']} of {mc['population']} posteriors x {mc['samples']} draws"
                     + (f" (target se {mc['target_se']:g}, pilot {pilot['strata']} x {pilot['samples']})"
                        if mc["target_se"] is not None else ""))
    lines.append(f"N = {result['N']}, D = {result['D']}, samples = {result['samples']}, "
                 f"nodes = {result['quadrature_nodes']}, seed = {result['seed']}, dtype = {result['dtype']}, "
                 f"quadrature error <= {result['quadrature_error']:.1e}, seconds = {result['seconds']:.2f}")
    v = {q: result[q]["value"] for q in QUANTITIES}
    first = v["avg_kl"] - (v["mi"] + v["kl_agg"])
    second = v["kl_agg"] - (v["tc"] + v["dimwise_kl"])
    scale = 1e-12 * max(1.0, *(abs(x) for x in v.values()))
    verdict = "both hold" if abs(first) <= scale and abs(second) <= scale else "VIOLATED"
    lines.append(f"identities: avg_kl - (mi + kl_agg) = {first:.1e}, kl_agg - (tc + dimwise_kl) = {second:.1e} "
                 f"({verdict})")
    if bracketed:
        lines.append(f"every reference lies inside its certified bracket (checked to {Z_BRACKET:g} se; "
                     f"bounds: {result.get('bracket_seconds', 0.0):.2f} s; see docs/maths.md, \"Certified brackets\")")
    return "\n".join(lines)


def run(args) -> int:
    field = _load_field(args)
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    try:
        result = exact_references(field.mu, field.logvar, samples=args.samples, quadrature_nodes=args.nodes,
                                  seed=args.seed, dtype=dtype, progress=not args.no_progress, strata=args.strata,
                                  target_se=args.target_se, max_terms=args.max_terms)
    except BracketError as exc:  # a bug, not bad input: loud, and its own exit code
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result, args.field))
    return 0
