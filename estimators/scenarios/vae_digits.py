r"""A real posterior field: a small VAE trained on scikit-learn's bundled digits, cached on disk.

The data are the 1797 8x8 images of :func:`sklearn.datasets.load_digits` (shipped with
scikit-learn, no download), scaled to [0, 1] by dividing by 16. The model is an MLP VAE
(Kingma & Welling 2014) with a Bernoulli decoder on those intensities, trained with the
beta-VAE objective (Higgins et al. 2017)

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)),

by Adam on minibatches, from a fixed seed, single-threaded, so the same recipe and torch
version give bit-identical posteriors. After training, the encoder is evaluated in float64 on
all 1797 images; the resulting ``(mu, logvar)`` are what the benchmark uses.

Training takes seconds, but it is done once per recipe: the field is cached as
``vae-digits-<fingerprint>.npz`` in :func:`cache_dir` (``$VAE_ESTIMATORS_CACHE`` or
``~/.cache/vae-aggregate-estimators/``). The fingerprint hashes every field of the
:class:`Recipe`, the torch version and :data:`TRAINER_VERSION` (bumped whenever the training
code changes), so any change of recipe retrains. Cache files are written atomically
(temporary file + ``os.replace``) and checked on load; a stale or unreadable file is retrained.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..digits import DIGITS_N, digits_images
from ..files import CACHE_ENV, atomic_path, cache_dir, read_fingerprinted  # noqa: F401  (CACHE_ENV re-exported: the documented override)
from ..numerics import kl_to_prior
from ..posteriors import Posteriors

__all__ = [
    "Recipe",
    "DEFAULT_RECIPE",
    "DigitsVAE",
    "DIGITS_N",
    "TRAINER_VERSION",
    "beta_for_separation",
    "cache_dir",
    "cache_path",
    "digits_posteriors",
    "fit_digits_vae",
    "load_digits_data",
    "recipe_for",
    "train_vae",
]

PROGRESS_ENV = "VAE_ESTIMATORS_PROGRESS"  # "0": no training progress bar (it shows on a terminal only)
TRAINER_VERSION = 1  # bump when the training code changes in a way that changes its output


@dataclass(frozen=True)
class Recipe:
    r"""Everything that determines a trained VAE (and so its posteriors).

    Args:
        latent_dim: D, the number of latent dimensions.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        beta: weight of the KL term (1 is the plain VAE; larger collapses more dimensions).
        epochs: passes over the 1797 images.
        batch_size: minibatch size.
        lr: Adam learning rate.
        seed: seeds initialisation and minibatch order.
    """

    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128)
    beta: float = 1.0
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recipe.{name} must be a positive int, got {value!r}")
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"Recipe.hidden must be a tuple of positive ints, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("beta", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Recipe.{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Recipe.seed must be a non-negative int, got {self.seed!r}")

    def fingerprint(self) -> str:
        """Hex digest identifying this recipe, the torch version and the trainer version."""
        key = {"recipe": asdict(self), "torch": torch.__version__, "trainer": TRAINER_VERSION,
               "data": "sklearn.datasets.load_digits / 16"}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


DEFAULT_RECIPE = Recipe()

# separation s in [0, 1] -> beta = 2 ** (BETA_LOG2_AT_0 + s * (BETA_LOG2_AT_1 - BETA_LOG2_AT_0))
# Measured with DEFAULT_RECIPE (D = 8, seed 0; log N = 7.49): beta 4 -> mi 7e-5 (every dimension
# collapsed), 1 -> 2.9, 0.5 -> 4.7, 1/4 -> 6.3, 1/16 -> 7.45.
BETA_LOG2_AT_0 = 2.0  # beta = 4
BETA_LOG2_AT_1 = -4.0  # beta = 1/16


def beta_for_separation(separation: float) -> float:
    r"""The beta-VAE weight used for ``separation`` in [0, 1]: log-linear from 4 (at 0) to 1/16 (at 1).

    ``separation = 1/3`` is the plain VAE (beta = 1), the default 0.5 gives beta = 1/2. Larger beta lowers the rate
    (the average KL(q(z|n) || p(z))) of the trained encoder, and with it the mutual information.
    """
    return float(2.0 ** (BETA_LOG2_AT_0 + separation * (BETA_LOG2_AT_1 - BETA_LOG2_AT_0)))


SHIPPED = Path(__file__).with_name("data")  # trained fields shipped with the package, by fingerprint


def cache_path(recipe: Recipe, directory: str | os.PathLike | None = None) -> Path:
    """Where the posteriors of ``recipe`` are cached."""
    return Path(directory if directory is not None else cache_dir()) / f"vae-digits-{recipe.fingerprint()}.npz"


def load_digits_data() -> torch.Tensor:
    """The 1797 digit images as a float32 tensor (1797, 64) with values in [0, 1]."""
    return digits_images(torch.float32)


class DigitsVAE(nn.Module):
    r"""The MLP VAE of the scenarios: encoder n_pixels-h-...-2D (ReLU) to (mu, logvar), decoder to Bernoulli logits.

    The decoder mirrors ``hidden`` with ReLU unless ``decoder_hidden`` and ``decoder_activation`` say otherwise
    (the dSprites model of :mod:`.vae_dsprites`: three tanh layers).
    """

    def __init__(self, n_pixels: int = 64, hidden: tuple[int, ...] = (128, 128), latent_dim: int = 8, *,
                 decoder_hidden: tuple[int, ...] | None = None, decoder_activation=nn.ReLU) -> None:
        super().__init__()

        def mlp(sizes: list[int], activation) -> nn.Sequential:
            layers: list[nn.Module] = []
            for a, b in zip(sizes[:-2], sizes[1:-1]):
                layers += [nn.Linear(a, b), activation()]
            return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))

        decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
        self.latent_dim = latent_dim
        self.encoder = mlp([n_pixels, *hidden, 2 * latent_dim], nn.ReLU)
        self.decoder = mlp([latent_dim, *decoder_hidden, n_pixels], decoder_activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).split(self.latent_dim, dim=-1)
        return mu, logvar

    def recon_nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""-log p(x|z) per row (Bernoulli likelihood of the intensities), (B,)."""
        return nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(1)


def _progress_bar(recipe: Recipe):
    r"""A progress bar with ETA over the epochs, on stderr; disabled when stderr is not a terminal
    or ``$VAE_ESTIMATORS_PROGRESS`` is ``0``. It draws no random numbers."""
    from tqdm.auto import tqdm

    on = os.environ.get(PROGRESS_ENV, "1").strip() != "0" and bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(total=recipe.epochs, desc=f"training vae-digits (D={recipe.latent_dim}, beta={recipe.beta:g})",
                unit="epoch", file=sys.stderr, disable=not on, leave=False, dynamic_ncols=True)


def fit_digits_vae(recipe: Recipe = DEFAULT_RECIPE, *, loss=None, steps: int | None = None, drop_last: bool = False,
                   on_step=None) -> DigitsVAE:
    r"""Train a :class:`DigitsVAE` on the 1797 digits with ``recipe``; the one training loop of the package.

    Adam on shuffled minibatches from ``torch.manual_seed(recipe.seed)``, on one thread (bit-reproducible
    reductions); the global RNG state and thread count are restored afterwards. The objective is the beta-VAE
    loss E_q[-log p(x|z)] + beta KL(q(z|x) || p) unless ``loss(model, xb, idx) -> scalar`` replaces it (the
    gradient study's beta-TCVAE). ``steps`` stops after that many minibatches instead of ``recipe.epochs``
    passes (reshuffling every pass); ``drop_last`` skips each pass's last, smaller minibatch.
    ``on_step(step, loss)`` is called after every step (``loss`` a detached 0-d tensor); it must draw no random
    numbers.

    Returns:
        The trained model (float32, eval mode).
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    x = load_digits_data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = DigitsVAE(x.shape[1], recipe.hidden, recipe.latent_dim)
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
            total = steps if steps is not None else recipe.epochs * math.ceil(x.shape[0] / recipe.batch_size)
            done = 0
            while done < total:
                for idx in torch.randperm(x.shape[0]).split(recipe.batch_size):
                    if done >= total or (drop_last and len(idx) < recipe.batch_size):
                        break
                    xb = x[idx]
                    if loss is None:
                        mu, logvar = model.encode(xb)
                        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                        value = (model.recon_nll(xb, z) + recipe.beta * kl_to_prior(mu, logvar)).mean()
                    else:
                        value = loss(model, xb, idx)
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    opt.step()
                    done += 1
                    if on_step is not None:
                        on_step(done, value.detach())
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_vae(recipe: Recipe = DEFAULT_RECIPE) -> tuple[np.ndarray, np.ndarray]:
    r"""Train the VAE of ``recipe`` on the digits (:func:`fit_digits_vae`) and return its posteriors.

    Deterministic (see :func:`fit_digits_vae`). On a terminal a progress bar over the epochs shows the loss and
    the time left (``VAE_ESTIMATORS_PROGRESS=0`` hides it); it changes no number. The encoder is then evaluated
    in float64 on all 1797 images.

    Returns:
        ``(mu, logvar)``, float64 arrays of shape (1797, recipe.latent_dim).
    """
    x = load_digits_data()
    per_epoch = math.ceil(x.shape[0] / recipe.batch_size)
    with _progress_bar(recipe) as bar:
        total = [0.0]

        def on_step(step: int, value: torch.Tensor) -> None:
            if bar.disable:
                return
            first = (step - 1) % per_epoch * recipe.batch_size
            total[0] += float(value) * min(recipe.batch_size, x.shape[0] - first)
            if step % per_epoch == 0:
                bar.update(1)
                bar.set_postfix_str(f"loss {total[0] / x.shape[0]:.2f}")
                total[0] = 0.0

        model = fit_digits_vae(recipe, on_step=on_step)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in training: the same reductions on every run
    try:
        with torch.no_grad():
            mu, logvar = model.double().encode(x.double())
    finally:
        torch.set_num_threads(threads)
    mu, logvar = mu.numpy(), logvar.numpy()
    if not (np.isfinite(mu).all() and np.isfinite(logvar).all()):
        raise RuntimeError(f"VAE training diverged (non-finite posteriors) for {recipe}")
    return mu, logvar


def _read_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (mu, logvar), or None when the file is missing, unreadable or for another recipe."""
    return read_fingerprinted(path, fingerprint, ("mu", "logvar"))


def _write_cache(path: Path, recipe: Recipe, mu: np.ndarray, logvar: np.ndarray) -> None:
    """Write atomically: a reader sees the old file or the complete new one, never a partial one."""
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, logvar=logvar, fingerprint=np.array(recipe.fingerprint()),
                 recipe=np.array(json.dumps(asdict(recipe), sort_keys=True)),
                 torch_version=np.array(torch.__version__))


def digits_posteriors(recipe: Recipe = DEFAULT_RECIPE, *, directory: str | os.PathLike | None = None,
                      retrain: bool = False) -> Posteriors:
    r"""The posteriors of the digits VAE trained with ``recipe``: shipped, cached, or trained once.

    Training is bit-reproducible on one kind of machine, not across CPUs (BLAS kernels differ), so the
    fields of the recipes the presets use are shipped with the package (:data:`SHIPPED`) and take
    precedence: the benchmark's ``vae-digits`` rows then reproduce on any machine.

    Args:
        recipe: the training recipe (its fingerprint is the cache key).
        directory: cache directory; default :func:`cache_dir`.
        retrain: ignore the shipped and cached fields and train.

    Returns:
        A float64 :class:`Posteriors` of shape (1797, recipe.latent_dim) named ``"vae-digits"``.
        If the cache cannot be written, a warning is issued and the trained field is still returned.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    path = cache_path(recipe, directory)
    cached = None if retrain else (_read_cache(cache_path(recipe, SHIPPED), recipe.fingerprint())
                                   or _read_cache(path, recipe.fingerprint()))
    if cached is None:
        mu, logvar = train_vae(recipe)
        try:
            _write_cache(path, recipe, mu, logvar)
        except OSError as exc:
            warnings.warn(f"could not cache the digits VAE posteriors at {str(path)!r}: {exc}", stacklevel=2)
    else:
        mu, logvar = cached
    return Posteriors(torch.from_numpy(mu), torch.from_numpy(logvar), "vae-digits")


def recipe_for(D: int, separation: float, seed: int, base: Recipe | None = None) -> Recipe:
    """The recipe of the ``vae-digits`` scenario: ``base`` (default :data:`DEFAULT_RECIPE`) with latent
    dimension ``D``, beta from :func:`beta_for_separation` and training seed ``seed``."""
    base = DEFAULT_RECIPE if base is None else base
    return replace(base, latent_dim=D, beta=beta_for_separation(separation), seed=seed)
