r"""``python -m estimators dsprites {train,export,samples,report}``: the procedural dSprites and its VAEs.

Examples::

    python -m estimators dsprites train --recipe all               # both full recipes, ~30 min on 2 cores, resumable
    python -m estimators dsprites export --recipe beta-tcvae --out dsprites-tcvae.npz
    python -m estimators dsprites report --recipe beta-vae
    python -m estimators dsprites samples --out docs/dsprites-samples.png
    python -m estimators dsprites train --tiny --recipe all        # the CI grid: seconds
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._help import paragraph

ACTIONS = ("train", "export", "samples", "report")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dsprites", help="the procedural dSprites (737,280 images) and the VAEs trained on it",
        description=paragraph(
            "train: train the VAE of a recipe (beta-vae: beta 1; beta-tcvae: beta 6 on the total correlation, "
            "estimated with mss) once and cache its posteriors of every image with a report; an interrupted run "
            "resumes from its checkpoint. export: write a recipe's field to a .npz (mu, logvar, factors, "
            "factor_names, factor_sizes, recipe) that every command taking a posterior file accepts. report: the "
            "trained model's reconstruction error, KL per dimension and active dimensions. samples: a PNG of "
            "sample images. --tiny: the 768-image CI grid and its small recipes."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="beta-vae, beta-tcvae or all (default: all for train and report, beta-vae for export)")
    p.add_argument("--tiny", action="store_true", help="the tiny grid and recipes (as CI runs them)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="export: the .npz to write (default <field name>.npz); samples: the PNG "
                        "(default docs/dsprites-samples.png)")
    p.add_argument("--retrain", action="store_true", help="train: ignore the cached field and any checkpoint")
    p.add_argument("--json", action="store_true", help="report: one JSON object per recipe")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (on stderr, with an ETA)")
    p.set_defaults(run=run)


def _recipes(args, default: str) -> list:
    from ..scenarios.vae_dsprites import RECIPES, TINY_RECIPES

    table = TINY_RECIPES if args.tiny else RECIPES
    name = args.recipe or default
    if name == "all":
        return list(table.values())
    if name not in table:
        raise ValueError(f"--recipe must be one of {', '.join(table)} or all, got {name!r}")
    return [table[name]]


def _summary(report: dict) -> str:
    kl = ", ".join(f"{k:.3g}" for k in report["kl_per_dim"])
    return (f"{report['name']}: recon {report['recon_nll']:.2f} nats/image (sampled z {report['recon_nll_sampled']:.2f}), "
            f"pixel error {100 * report['pixel_error']:.3f}%, KL {report['kl']:.2f} nats, active dims "
            f"{report['active_dims']}/{len(report['kl_per_dim'])} (KL per dim: {kl}); trained "
            f"{report['steps']} steps in {report['train_seconds']:.0f} s ({report['seconds_per_step']:.3f} s/step, "
            f"{report['threads']} threads), encoded in {report['encode_seconds']:.0f} s")


def run(args) -> int:
    from ..scenarios import vae_dsprites as vd
    from ..scenarios.dsprites_data import FULL_GRID, TINY_GRID, sample_grid_png

    progress = not args.no_progress
    if args.action == "samples":
        if args.recipe is not None:
            raise ValueError("--recipe does not apply to samples")
        out = Path(args.out if args.out is not None else "docs/dsprites-samples.png")
        if out.suffix.lower() != ".png":
            raise ValueError(f"--out must end in .png for samples, got {str(out)!r}")
        changed = sample_grid_png(out, TINY_GRID if args.tiny else FULL_GRID)
        print(f"samples -> {out}" + ("" if changed else " (unchanged)"))
        return 0
    if args.action == "train":
        for recipe in _recipes(args, "all"):
            start = time.perf_counter()
            vd.dsprites_posteriors(recipe, retrain=args.retrain, progress=progress)
            report = vd.model_report(recipe, progress=progress)
            print(_summary(report) + f" [{time.perf_counter() - start:.0f} s; cache {vd.cache_path(recipe)}]",
                  flush=True)
        return 0
    if args.action == "report":
        for recipe in _recipes(args, "all"):
            report = vd.model_report(recipe, train=False)
            print(json.dumps(report, sort_keys=True) if args.json else _summary(report))
        return 0
    # export
    recipes = _recipes(args, "beta-vae")
    if len(recipes) > 1:
        raise ValueError("export writes one recipe's field: give --recipe beta-vae or beta-tcvae")
    recipe = recipes[0]
    out = Path(args.out if args.out is not None else f"{recipe.name}.npz")
    path = vd.export_posteriors(recipe, out, progress=progress)
    print(f"{recipe.name}: {recipe.grid.N:,} posteriors (D = {recipe.latent_dim}) with factors -> {path}")
    return 0
