r"""The canonical real field: a VAE trained on the procedural dSprites (N = 737,280), cached on disk.

The data are the images of :mod:`estimators.scenarios.dsprites_data`, rendered on the fly. The model is
the MLP VAE Chen et al. (2018, "Isolating Sources of Disentanglement in VAEs") used for dSprites:
encoder 4096-1200-1200-2D with ReLU, decoder D-1200-1200-1200-4096 with tanh, Bernoulli logits, D = 10.
Two recipes (:data:`RECIPES`):

* ``"beta-vae"``: the plain VAE, ``E_q[-log p(x|z)] + beta KL(q(z|x) || N(0, I))`` with beta = 1;
* ``"beta-tcvae"``: ``E_q[-log p(x|z)] + mi + beta tc + dimwise_kl`` with beta = 6, the three terms
  estimated on each minibatch by :func:`estimators.decompose` with ``estimator="mss"`` (minibatch
  stratified sampling) and the data-set size N.

Training is Adam on minibatches drawn from a seeded stream of image indices (a fresh permutation of the grid
per epoch, a pure function of the seed and the epoch), with reparameterisation noise seeded per step, on a
fixed number of threads (:attr:`Recipe.threads`), so a recipe gives bit-identical weights on one machine. It
checkpoints model, optimiser and step atomically every :data:`CHECKPOINT_SECONDS`; a rerun resumes from the
checkpoint and ends bit-identical to an uninterrupted run. Afterwards the encoder is evaluated in float64 on all
N images; ``(mu, logvar)`` and a report (reconstruction error, KL per dimension, active dimensions, timings) are
cached as ``vae-dsprites-<fingerprint>.npz`` in :func:`estimators.files.cache_dir`. The fingerprint hashes the
recipe (grid included), the torch version, :data:`TRAINER_VERSION` and the renderer's version.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..decompose import decompose
from ..files import atomic_path, cache_dir, read_fingerprinted
from ..numerics import kl_to_prior
from ..posteriors import Posteriors
from .dsprites_data import FACTOR_NAMES, FULL_GRID, RENDER_VERSION, TINY_GRID, Grid
from .vae_digits import DigitsVAE

__all__ = [
    "Recipe", "RECIPES", "TINY_RECIPES", "OBJECTIVES", "TRAINER_VERSION", "DspritesVAE", "cache_path",
    "checkpoint_path", "dsprites_factors", "dsprites_posteriors", "export_posteriors", "model_report",
    "train_model", "encode_grid", "scenario_recipes", "GRID_ENV",
]

PROGRESS_ENV = "VAE_ESTIMATORS_PROGRESS"  # "0": no progress bars by default
GRID_ENV = "VAE_ESTIMATORS_DSPRITES"  # "tiny": the dsprites scenarios use TINY_RECIPES (the test suite sets it)
TRAINER_VERSION = 1  # bump when the training or encoding code changes in a way that changes its output
OBJECTIVES = ("beta-vae", "beta-tcvae")
TC_ESTIMATOR = "mss"  # the decomposition's estimator in the beta-TCVAE objective
CHECKPOINT_SECONDS = 60.0
RENDER_STEPS = 16  # steps whose minibatches are rendered at once (rendering is cheaper in bulk)
ENCODE_BATCH = 4096
RECON_SUBSET = 32768  # images (seeded, fixed) on which the reconstruction error is measured
ACTIVE_KL = 0.01  # nats: a dimension whose mean KL(q(z_d|x) || N(0, 1)) exceeds this is active
NAMES = {"beta-vae": "dsprites", "beta-tcvae": "dsprites-tcvae"}


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Recipe.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Recipe:
    r"""Everything that determines a trained dSprites VAE (and so its posteriors).

    Args:
        grid: the factor grid the images come from.
        hidden: widths of the encoder's hidden layers (ReLU).
        decoder_hidden: widths of the decoder's hidden layers (tanh).
        latent_dim: D.
        objective: ``"beta-vae"`` (beta weighs the KL) or ``"beta-tcvae"`` (beta weighs the total correlation,
            mi and dimwise_kl at weight 1, all from ``decompose(..., estimator="mss")``).
        beta: the weight.
        steps: Adam steps.
        batch_size: images per step (at most the grid's N).
        lr: Adam learning rate.
        seed: seeds initialisation, the index stream and the noise.
        threads: torch threads while training and encoding (a fixed count: reductions are bit-reproducible).
    """

    grid: Grid = FULL_GRID
    hidden: tuple[int, ...] = (1200, 1200)
    decoder_hidden: tuple[int, ...] = (1200, 1200, 1200)
    latent_dim: int = 10
    objective: str = "beta-vae"
    beta: float = 1.0
    steps: int = 8000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.grid, Grid):
            raise ValueError(f"Recipe.grid must be a Grid, got {type(self.grid).__name__}")
        for name in ("latent_dim", "steps", "batch_size", "threads"):
            _positive_int(name, getattr(self, name))
        for name in ("hidden", "decoder_hidden"):
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) >= 1
                    and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in value)):
                raise ValueError(f"Recipe.{name} must be a non-empty tuple of positive ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"Recipe.objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        for name in ("beta", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Recipe.{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Recipe.seed must be a non-negative int, got {self.seed!r}")
        min_batch = 2 if self.objective == "beta-tcvae" else 1  # mss needs two samples
        if not min_batch <= self.batch_size <= self.grid.N:
            raise ValueError(f"Recipe.batch_size must lie in [{min_batch}, {self.grid.N}] (the grid's N), "
                             f"got {self.batch_size}")

    @property
    def name(self) -> str:
        """The field's name: ``"dsprites"`` (beta-VAE) or ``"dsprites-tcvae"``."""
        return NAMES[self.objective]

    def as_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """Hex digest identifying this recipe, the torch version, the trainer and the renderer."""
        key = {"recipe": asdict(self), "torch": torch.__version__, "trainer": TRAINER_VERSION,
               "render": RENDER_VERSION, "tc_estimator": TC_ESTIMATOR}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


# The full recipes. Time budget on 2 threads (AVX-512, sgemm ~300-350 GFLOP/s): a step of 256 images takes ~0.08 s
# (the MLP costs ~85 MFLOP per image forward and backward), so 8000 steps (2.05M images, 2.8 epochs) train in about
# 11-12 minutes; encoding the 737,280 images in float64 takes about a minute and a half.
RECIPES = {
    "beta-vae": Recipe(objective="beta-vae", beta=1.0),
    "beta-tcvae": Recipe(objective="beta-tcvae", beta=6.0),
}
# The same code on the 768-image tiny grid with a small MLP, for CI (a second or two each).
TINY_RECIPES = {
    name: replace(recipe, grid=TINY_GRID, hidden=(64,), decoder_hidden=(64,), latent_dim=4, steps=300,
                  batch_size=64, threads=1)
    for name, recipe in RECIPES.items()
}


def scenario_recipes() -> dict[str, Recipe]:
    r"""The recipes behind the scenarios ``dsprites`` and ``dsprites-tcvae``: :data:`RECIPES`, or :data:`TINY_RECIPES`
    when the environment variable ``VAE_ESTIMATORS_DSPRITES`` is ``tiny`` (how the test suite runs the scenario path
    in seconds instead of training for half an hour)."""
    value = os.environ.get(GRID_ENV, "").strip().lower()
    if value not in ("", "full", "tiny"):
        raise ValueError(f"environment variable {GRID_ENV} must be 'full', 'tiny' or unset, got {value!r}")
    return TINY_RECIPES if value == "tiny" else RECIPES


class DspritesVAE(DigitsVAE):
    r"""The MLP VAE of Chen et al. (2018) for dSprites: ReLU encoder to (mu, logvar), tanh decoder to Bernoulli logits."""

    def __init__(self, n_pixels: int, hidden: tuple[int, ...], decoder_hidden: tuple[int, ...],
                 latent_dim: int) -> None:
        super().__init__(n_pixels, hidden, latent_dim, decoder_hidden=decoder_hidden, decoder_activation=nn.Tanh)


def _model(recipe: Recipe) -> DspritesVAE:
    return DspritesVAE(recipe.grid.size ** 2, recipe.hidden, recipe.decoder_hidden, recipe.latent_dim)


def _derived_seed(seed: int, tag: str, counter: int) -> int:
    """An independent 63-bit seed for stream ``tag`` at ``counter`` (epoch or step): a hash, not an offset."""
    digest = hashlib.sha256(f"{seed}/{tag}/{counter}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def batch_indices(recipe: Recipe, step: int, _cache: dict = {}) -> torch.Tensor:  # noqa: B006 (one epoch memoised)
    r"""The image indices of minibatch ``step``: a slice of epoch ``step // (N // B)``'s seeded permutation
    (the incomplete last batch of each epoch is dropped). A pure function of the recipe's seed and ``step``."""
    N, B = recipe.grid.N, recipe.batch_size
    per_epoch = N // B
    epoch, offset = divmod(step, per_epoch)
    key = (N, recipe.seed, epoch)
    if _cache.get("key") != key:
        g = torch.Generator().manual_seed(_derived_seed(recipe.seed, "epoch", epoch))
        _cache.update(key=key, perm=torch.randperm(N, generator=g))
    return _cache["perm"][offset * B:(offset + 1) * B]


def _step_noise(recipe: Recipe, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(_derived_seed(recipe.seed, "noise", step))
    return torch.randn(recipe.batch_size, recipe.latent_dim, generator=g)


def _loss(recipe: Recipe, model: DspritesVAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    mu, logvar = model.encode(x)
    z = mu + eps * torch.exp(0.5 * logvar)
    recon = model.recon_nll(x, z).mean()
    if recipe.objective == "beta-vae":
        return recon + recipe.beta * kl_to_prior(mu, logvar).mean()
    terms = decompose(z, mu, logvar, dataset_size=recipe.grid.N, estimator=TC_ESTIMATOR)
    return recon + terms["mi"] + recipe.beta * terms["tc"] + terms["dimwise_kl"]


def _progress_on(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get(PROGRESS_ENV, "1").strip() != "0" and bool(getattr(sys.stderr, "isatty", lambda: False)())


def _bar(total: int, desc: str, unit: str, on: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not on, leave=False,
                dynamic_ncols=True, mininterval=1.0)


def cache_path(recipe: Recipe, directory: str | os.PathLike | None = None) -> Path:
    """Where the posteriors and report of ``recipe`` are cached."""
    return Path(directory if directory is not None else cache_dir()) / f"vae-dsprites-{recipe.fingerprint()}.npz"


def checkpoint_path(recipe: Recipe, directory: str | os.PathLike | None = None) -> Path:
    """Where the training of ``recipe`` checkpoints (removed once its posteriors are cached)."""
    return Path(directory if directory is not None else cache_dir()) / f"vae-dsprites-{recipe.fingerprint()}.ckpt.pt"


def _read_checkpoint(path: Path | None, recipe: Recipe):
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != recipe.fingerprint() or not 0 <= int(state["step"]) <= recipe.steps:
            return None
        return state
    except Exception:  # corrupt or foreign file: start over (and overwrite it at the next checkpoint)
        return None


def _write_checkpoint(path: Path, recipe: Recipe, step: int, model, opt, seconds: float) -> None:
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": recipe.fingerprint(), "step": step, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "train_seconds": seconds}, tmp)


class _Threads:
    """Run with ``n`` torch threads and the global RNG untouched; restore both afterwards."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        self.rng = torch.random.fork_rng(devices=[])
        self.rng.__enter__()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)
        return self.rng.__exit__(*exc)


def train_model(recipe: Recipe, *, checkpoint: str | os.PathLike | None = None, progress: bool | None = None,
                stop_after: int | None = None, checkpoint_seconds: float = CHECKPOINT_SECONDS):
    r"""Train the VAE of ``recipe``, resuming from ``checkpoint`` when it holds a state of this recipe.

    Every ``checkpoint_seconds`` (at a step boundary) and at the end, model, optimiser, step and training time are
    written atomically to ``checkpoint`` (when given). The result does not depend on where training was
    interrupted: minibatch indices and noise are pure functions of the seed and the step.

    Args:
        recipe: the recipe.
        checkpoint: checkpoint file (None: none).
        progress: a progress bar with ETA over the steps on stderr (None: on a terminal unless
            ``$VAE_ESTIMATORS_PROGRESS`` is ``0``); it changes no number.
        stop_after: stop once this many steps are done (counted from 0, not from the resumed step), write the
            checkpoint and return None: a stand-in for an interruption.
        checkpoint_seconds: seconds between checkpoints.

    Returns:
        ``(model, train_seconds)``: the trained float32 model and the training time summed over resumes; None
        when stopped by ``stop_after``.
    """
    ckpt = Path(checkpoint) if checkpoint is not None else None
    grid = recipe.grid
    with _Threads(recipe.threads):
        torch.manual_seed(recipe.seed)
        model = _model(recipe)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=True)  # one pass over the parameters
        state = _read_checkpoint(ckpt, recipe)
        step, seconds = 0, 0.0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, seconds = int(state["step"]), float(state["train_seconds"])
        end = recipe.steps if stop_after is None else min(recipe.steps, max(stop_after, step))
        on = _progress_on(progress)
        desc = f"training {recipe.name} ({recipe.objective}, beta={recipe.beta:g}, D={recipe.latent_dim})"
        started = last_save = time.perf_counter()
        ema = None
        with _bar(recipe.steps, desc, "step", on, initial=step) as bar:
            while step < end:
                block = list(range(step, min(step + RENDER_STEPS, end)))
                images = grid.render(torch.cat([batch_indices(recipe, t) for t in block]))
                images = images.reshape(len(block), recipe.batch_size, -1).float()
                for i, t in enumerate(block):
                    loss = _loss(recipe, model, images[i], _step_noise(recipe, t))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step = t + 1
                    if on:
                        value = float(loss.detach())
                        ema = value if ema is None else 0.98 * ema + 0.02 * value
                        bar.update(1)
                        if step % 20 == 0:
                            bar.set_postfix_str(f"loss {ema:.2f}")
                if not math.isfinite(float(loss.detach())):
                    raise RuntimeError(f"training diverged (non-finite loss at step {step}) for {recipe}")
                now = time.perf_counter()
                if ckpt is not None and now - last_save >= checkpoint_seconds and step < end:
                    _write_checkpoint(ckpt, recipe, step, model, opt, seconds + now - started)
                    last_save = now
        seconds += time.perf_counter() - started
        if ckpt is not None:
            _write_checkpoint(ckpt, recipe, step, model, opt, seconds)
    if step < recipe.steps:
        return None
    return model, seconds


def encode_grid(recipe: Recipe, model: DspritesVAE, *, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    r"""Encode every image of the grid in float64 and measure the model.

    Returns:
        ``(mu, logvar, report)``: float64 arrays (N, D) and a dict with ``kl_per_dim`` (mean over the N images of
        KL(q(z_d|x) || N(0, 1)), nats), ``kl`` (their sum), ``active_dims`` (dimensions with mean KL above
        :data:`ACTIVE_KL`), and on a fixed seeded subset of :data:`RECON_SUBSET` images (all when N is smaller)
        ``recon_nll`` (mean -log p(x|z = mu) per image, nats), ``recon_nll_sampled`` (the same at one z ~ q(z|x)),
        ``pixel_error`` (fraction of pixels whose decoded probability at z = mu is on the wrong side of 1/2) and
        ``elbo`` (-(recon_nll_sampled + kl) on the subset), and ``encode_seconds``.
    """
    grid, D = recipe.grid, recipe.latent_dim
    started = time.perf_counter()
    mu = torch.empty(grid.N, D, dtype=torch.float64)
    logvar = torch.empty(grid.N, D, dtype=torch.float64)
    on = _progress_on(progress)
    with _Threads(recipe.threads), torch.no_grad():
        model = copy.deepcopy(model).double()
        batches = range(0, grid.N, ENCODE_BATCH)
        with _bar(len(batches), f"encoding {recipe.name} ({grid.N:,} images, float64)", "batch", on) as bar:
            for lo in batches:
                index = torch.arange(lo, min(lo + ENCODE_BATCH, grid.N))
                mu[index], logvar[index] = model.encode(grid.render(index).reshape(len(index), -1).double())
                bar.update(1)
        if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
            raise RuntimeError(f"the trained encoder gives non-finite posteriors for {recipe}")
        kl_dims = (0.5 * (mu * mu + logvar.exp() - 1.0 - logvar)).mean(0)
        # the reconstruction error on a fixed subset (the decoder costs more than the encoder)
        g = torch.Generator().manual_seed(_derived_seed(recipe.seed, "recon", 0))
        subset = torch.randperm(grid.N, generator=g)[:RECON_SUBSET].sort().values
        nll, nll_sampled, wrong = 0.0, 0.0, 0.0
        for chunk in subset.split(ENCODE_BATCH):
            x = grid.render(chunk).reshape(len(chunk), -1).double()
            m, lv = mu[chunk], logvar[chunk]
            logits = model.decoder(m)
            nll += float(nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum"))
            wrong += float(((logits > 0) != (x > 0.5)).sum())
            z = m + torch.randn(m.shape, generator=g, dtype=m.dtype) * torch.exp(0.5 * lv)
            nll_sampled += float(model.recon_nll(x, z).sum())
        n = len(subset)
        kl_subset = float(kl_to_prior(mu[subset], logvar[subset]).mean())
    report = {
        "kl_per_dim": [float(k) for k in kl_dims],
        "kl": float(kl_dims.sum()),
        "active_dims": int((kl_dims > ACTIVE_KL).sum()),
        "recon_nll": nll / n,
        "recon_nll_sampled": nll_sampled / n,
        "pixel_error": wrong / (n * grid.size ** 2),
        "elbo": -(nll_sampled / n + kl_subset),
        "recon_images": n,
        "encode_seconds": time.perf_counter() - started,
    }
    return mu.numpy(), logvar.numpy(), report


def _as_report(text) -> dict:
    return json.loads(str(text))


def _read_cache(path: Path, fingerprint: str):
    """The cached (mu, logvar, report), or None when the file is missing, unreadable or for another recipe."""
    cached = read_fingerprinted(path, fingerprint, ("mu", "logvar", "report"))
    if cached is None:
        return None
    try:
        return cached[0], cached[1], _as_report(cached[2])
    except ValueError:  # a corrupt report: retrain and overwrite, as for a corrupt file
        return None


def _write_cache(path: Path, recipe: Recipe, mu: np.ndarray, logvar: np.ndarray, report: dict) -> None:
    """Write atomically: a reader sees the old file or the complete new one, never a partial one."""
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, logvar=logvar, fingerprint=np.array(recipe.fingerprint()),
                 recipe=np.array(json.dumps(asdict(recipe), sort_keys=True)),
                 report=np.array(json.dumps(report, sort_keys=True)), torch_version=np.array(torch.__version__))


SHIPPED = Path(__file__).with_name("data")  # fields shipped with the package, by fingerprint (none by default)


def _check_recipe(recipe) -> None:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")


def _field(recipe: Recipe, directory, retrain: bool, progress: bool | None):
    """(mu, logvar, report) of ``recipe``: shipped, cached, or trained (resuming a checkpoint) and cached."""
    _check_recipe(recipe)
    path = cache_path(recipe, directory)
    cached = None if retrain else (_read_cache(cache_path(recipe, SHIPPED), recipe.fingerprint())
                                   or _read_cache(path, recipe.fingerprint()))
    if cached is not None:
        return cached
    ckpt = checkpoint_path(recipe, directory)
    if retrain and ckpt.is_file():
        ckpt.unlink()
    model, seconds = train_model(recipe, checkpoint=ckpt, progress=progress)
    mu, logvar, report = encode_grid(recipe, model, progress=progress)
    report.update(train_seconds=seconds, steps=recipe.steps, threads=recipe.threads,
                  seconds_per_step=seconds / recipe.steps, fingerprint=recipe.fingerprint(), name=recipe.name)
    try:
        _write_cache(path, recipe, mu, logvar, report)
        ckpt.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not cache the dSprites VAE posteriors at {str(path)!r}: {exc}", stacklevel=3)
    return mu, logvar, report


def dsprites_posteriors(recipe: Recipe = RECIPES["beta-vae"], *, directory: str | os.PathLike | None = None,
                        retrain: bool = False, progress: bool | None = None) -> Posteriors:
    r"""The posteriors of all N images under the VAE trained with ``recipe``: shipped, cached, or trained once.

    Training (about 12 minutes for a full recipe on 2 threads) resumes from a checkpoint of an interrupted run.

    Args:
        recipe: the training recipe (its fingerprint is the cache key); :data:`RECIPES` or :data:`TINY_RECIPES`.
        directory: cache directory; default :func:`estimators.files.cache_dir`.
        retrain: ignore the shipped and cached fields (and any checkpoint) and train.
        progress: progress bars over the steps and the encoding (None: on a terminal only).

    Returns:
        A float64 :class:`Posteriors` (N, D) in the grid's index order, named ``"dsprites"`` (beta-VAE) or
        ``"dsprites-tcvae"``. If the cache cannot be written, a warning is issued and the field is still returned.
    """
    mu, logvar, _ = _field(recipe, directory, retrain, progress)
    return Posteriors(torch.from_numpy(mu), torch.from_numpy(logvar), recipe.name)


def model_report(recipe: Recipe = RECIPES["beta-vae"], *, directory: str | os.PathLike | None = None,
                 progress: bool | None = None, train: bool = True) -> dict:
    r"""What the trained model of ``recipe`` achieves: ``recon_nll``, ``recon_nll_sampled``, ``pixel_error``, ``elbo``,
    ``kl_per_dim``, ``kl``, ``active_dims`` (mean KL above 0.01 nats), ``train_seconds``, ``seconds_per_step``,
    ``encode_seconds``, ``steps``, ``threads``, ``name``, ``fingerprint`` and ``recipe``; see :func:`encode_grid`.

    Args:
        train: train the recipe if it is not cached yet; False: a ValueError instead.
    """
    _check_recipe(recipe)
    if not train:
        fingerprint = recipe.fingerprint()
        cached = (_read_cache(cache_path(recipe, SHIPPED), fingerprint)
                  or _read_cache(cache_path(recipe, directory), fingerprint))
        if cached is None:
            raise ValueError(f"the {recipe.name} recipe ({recipe.objective}, fingerprint {fingerprint}) is not trained "
                             f"yet (no {cache_path(recipe, directory)}): run python -m estimators dsprites train")
    _, _, report = _field(recipe, directory, False, progress)
    return dict(report, recipe=recipe.as_dict())


def dsprites_factors(grid: Grid = FULL_GRID) -> torch.Tensor:
    """The factor indices of every image of ``grid`` in index order, (N, 5) int64 (see :data:`FACTOR_NAMES`)."""
    return grid.factors(torch.arange(grid.N))


def export_posteriors(recipe: Recipe, path: str | os.PathLike, *, directory: str | os.PathLike | None = None,
                      progress: bool | None = None) -> Path:
    r"""Write the field of ``recipe`` (training it if needed) to ``path`` (.npz), atomically.

    Keys: ``mu``, ``logvar`` (N, D float64), ``factors`` (N, 5 int64), ``factor_names`` (str), ``factor_sizes``
    (5 int64), ``recipe`` (JSON), ``fingerprint`` and ``report`` (JSON). :func:`estimators.load_posteriors` reads it
    (it uses ``mu`` and ``logvar``), and so does ``python -m estimators bench --posteriors``.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"path must end in .npz, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; expected a .npz file name")
    mu, logvar, report = _field(recipe, directory, False, progress)
    grid = recipe.grid
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, logvar=logvar, factors=dsprites_factors(grid).numpy(),
                 factor_names=np.array(FACTOR_NAMES), factor_sizes=np.array(grid.factor_sizes, dtype=np.int64),
                 recipe=np.array(json.dumps(asdict(recipe), sort_keys=True)),
                 fingerprint=np.array(recipe.fingerprint()), report=np.array(json.dumps(report, sort_keys=True)))
    return path
