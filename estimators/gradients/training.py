r"""What the estimator's bias does to a trained model: the digits VAE trained as a beta-TCVAE with each estimator.

Every run trains a :class:`~estimators.gradients.encoders.DigitsVAE` (the vae-digits architecture) on the 1797
digits for a fixed number of Adam steps on minibatches of exactly B images, minimising the beta-TCVAE objective of
Chen et al. (2018)

    loss = E_q[-log p(x|z)] + mi + beta * tc + dimwise_kl,

with mi, tc and dimwise_kl all from one estimator (:func:`estimators.decompose`, data-set size N = 1797) at the
training batch size. The seed fixes the initialisation and the minibatch order, so the runs of different
estimators with one seed are paired. The trained model is then judged by what no estimator decides: the exact
tc and mi of its posteriors on all 1797 images (:func:`estimators.exact_references`, Monte Carlo with an se for
D > 2) and the reconstruction error -log p(x | z = mu(x)) averaged over the images. ``tc_reported`` is what the
estimator itself says the trained model's tc is (the mean of 16 seeded minibatch estimates at the training B).
"""
from __future__ import annotations

import io
import math
import time
from pathlib import Path

import pandas as pd
import torch

from ..decompose import decompose
from ..digits import DIGITS_N
from ..files import write_atomic
from ..log_qz.registry import get_estimator
from ..numerics import kl_to_prior
from ..scenarios.vae_digits import Recipe, load_digits_data
from .encoders import DigitsVAE, train_digits_vae
from .exact import references
from .presets import TrainingPreset
from .study import threads

__all__ = ["train_tcvae", "evaluate_model", "run_training_study", "read_training_csv", "TRAINING_COLUMNS"]

TRAINING_COLUMNS = ("estimator", "batch_size", "seed", "beta", "steps", "latent_dim", "N", "tc", "tc_se", "mi",
                    "mi_se", "dimwise_kl", "avg_kl", "recon", "tc_reported", "mi_reported", "active_dims",
                    "train_seconds", "preset")
KEY = ("estimator", "batch_size", "seed", "beta", "steps", "latent_dim")
TRAINING_COLUMN_DOCS = {
    "estimator": "the estimator of mi, tc and dimwise_kl in the training loss", "batch_size": "training batch size B",
    "seed": "initialisation and minibatch order (shared by the estimators: paired runs)", "beta": "weight of tc",
    "steps": "Adam steps", "latent_dim": "D", "N": "images (1797)",
    "tc": "exact tc of the trained encoder's posteriors on all images", "tc_se": "its Monte Carlo se",
    "mi": "exact mi (index-code mutual information)", "mi_se": "its Monte Carlo se",
    "dimwise_kl": "exact dimension-wise KL", "avg_kl": "mean KL(q(z|x) || p(z)) (closed form)",
    "recon": "-log p(x | z = mu(x)), mean over images (nats)",
    "tc_reported": "what the estimator says tc is: mean of 16 minibatch estimates at the training B",
    "mi_reported": "likewise for mi", "active_dims": "latent dimensions with mean KL to the prior above 0.1 nats",
    "train_seconds": "wall time of the training", "preset": "the preset's name",
}


def _recipe(preset: TrainingPreset, batch_size: int, seed: int) -> Recipe:
    return Recipe(latent_dim=preset.latent_dim, hidden=tuple(preset.hidden), beta=preset.beta, epochs=1,
                  batch_size=batch_size, lr=preset.lr, seed=seed)


def train_tcvae(estimator: str, batch_size: int, seed: int, *, beta: float = 6.0, steps: int = 1500,
                latent_dim: int = 8, hidden: tuple[int, ...] = (128, 128), lr: float = 2e-3,
                progress=None) -> DigitsVAE:
    r"""Train the digits VAE as a beta-TCVAE with ``estimator`` for the decomposition at batch size B.

    Raises:
        ValueError: an unknown estimator, B outside [the estimator's min_batch, 1797], beta or steps not positive.
    """
    info = get_estimator(estimator)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not max(2, info.min_batch) <= batch_size <= DIGITS_N:
        raise ValueError(f"batch_size must be an int in [{max(2, info.min_batch)}, {DIGITS_N}], got {batch_size!r}")
    if info.needs_field or info.needs_k:
        raise ValueError(f"estimator {estimator!r} reads the whole data set: the training study takes minibatch "
                         "estimators only")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    recipe = Recipe(latent_dim=latent_dim, hidden=tuple(hidden), beta=max(float(beta), 1e-12), epochs=1,
                    batch_size=batch_size, lr=lr, seed=seed)

    def loss(model, xb, idx):
        mu, logvar = model.encode(xb)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        terms = decompose(z, mu, logvar, DIGITS_N, estimator)
        return model.recon_nll(xb, z).mean() + terms["mi"] + beta * terms["tc"] + terms["dimwise_kl"]

    return train_digits_vae(recipe, loss=loss, steps=steps, drop_last=True, progress=progress)


def evaluate_model(model: DigitsVAE, estimator: str | None = None, batch_size: int | None = None, *,
                   reference_samples: int = 16, seed: int = 0) -> dict:
    r"""Exact tc, mi (with se), dimwise_kl, avg_kl and the reconstruction error of a trained model on all 1797
    digits; with ``estimator`` and ``batch_size`` also what that estimator reports for tc and mi (16 batches)."""
    x = load_digits_data().double()
    model = model.double()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        recon = float(model.recon_nll(x, mu).mean())
        per_dim_kl = kl_to_prior(mu[:, :, None].transpose(1, 2).reshape(-1, 1),
                                 logvar[:, :, None].transpose(1, 2).reshape(-1, 1)).reshape(mu.shape[1], -1)
        active = int((per_dim_kl.mean(1) > 0.1).sum())
    refs = references(mu, logvar, samples=reference_samples, seed=seed)
    out = {"tc": refs["tc"]["value"], "tc_se": refs["tc"]["se"], "mi": refs["mi"]["value"], "mi_se": refs["mi"]["se"],
           "dimwise_kl": refs["dimwise_kl"]["value"], "avg_kl": refs["avg_kl"]["value"], "recon": recon,
           "active_dims": active, "tc_reported": float("nan"), "mi_reported": float("nan")}
    if estimator is not None:
        g = torch.Generator().manual_seed(seed + 1)
        tcs, mis = [], []
        with torch.no_grad():
            for _ in range(16):
                index = torch.randperm(mu.shape[0], generator=g)[:batch_size]
                m, lv = mu[index], logvar[index]
                z = m + torch.randn(m.shape, generator=g, dtype=m.dtype) * torch.exp(0.5 * lv)
                terms = decompose(z, m, lv, mu.shape[0], estimator)
                tcs.append(float(terms["tc"]))
                mis.append(float(terms["mi"]))
        out["tc_reported"], out["mi_reported"] = sum(tcs) / len(tcs), sum(mis) / len(mis)
    return out


def read_training_csv(path) -> pd.DataFrame:
    r"""Read a training CSV and check its columns; a ValueError naming the file otherwise."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable training CSV ({exc})") from None
    missing = [c for c in TRAINING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a training CSV, missing columns {', '.join(missing)}")
    return df[list(TRAINING_COLUMNS)]


def _write(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(TRAINING_COLUMNS)).to_csv(buf, index=False, float_format="%.17g")
    write_atomic(path, buf.getvalue())


def run_training_study(preset: TrainingPreset, out: str | Path, *, resume: bool = False,
                       progress: bool = True, num_threads: int | None = 1) -> pd.DataFrame:
    r"""Train and evaluate every (estimator, B, seed) of ``preset`` into ``<out>/training.csv`` (atomic after every
    run; ``resume`` keeps the runs already there); return the table. Training always runs on one thread
    (bit-reproducible); ``num_threads`` sets torch's threads for the evaluation (None: leave it)."""
    with threads(num_threads):
        return _run(preset, out, resume=resume, progress=progress)


def _run(preset: TrainingPreset, out, *, resume: bool, progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    for name in preset.estimators:
        get_estimator(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "training.csv"
    rows = read_training_csv(path).to_dict("records") if resume and path.is_file() else []
    done = {tuple(r[k] for k in KEY) for r in rows}
    runs = [(e, B, s) for B in preset.batch_sizes for e in preset.estimators for s in preset.seeds
            if (e, B, s, preset.beta, preset.steps, preset.latent_dim) not in done]
    for estimator, B, seed in tqdm(runs, desc="training study", disable=not progress, dynamic_ncols=True):
        start = time.perf_counter()
        model = train_tcvae(estimator, B, seed, beta=preset.beta, steps=preset.steps, latent_dim=preset.latent_dim,
                            hidden=preset.hidden, lr=preset.lr)
        seconds = time.perf_counter() - start
        ev = evaluate_model(model, estimator, B, reference_samples=preset.reference_samples, seed=seed)
        rows.append({"estimator": estimator, "batch_size": B, "seed": seed, "beta": preset.beta,
                     "steps": preset.steps, "latent_dim": preset.latent_dim, "N": DIGITS_N, **ev,
                     "train_seconds": seconds, "preset": preset.name})
        _write(path, rows)
    if rows:
        _write(path, rows)
    return pd.DataFrame(rows, columns=list(TRAINING_COLUMNS))
