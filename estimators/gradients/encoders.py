r"""Parametric encoders theta -> (mu_n(theta), logvar_n(theta)) on a fixed data set: what the gradient study differentiates.

An :class:`EncoderProblem` is a data set ``x`` (N, P) and an encoder module mapping it to the N posteriors
q(z|n) = Normal(mu_n, diag exp(logvar_n)); its parameters theta are everything ``encoder.parameters()`` holds, in
that order, flattened (:meth:`EncoderProblem.flat_grad`). Two kinds are built in:

* :func:`linear_problem` -- mu = X A + a, logvar = X C + c on a seeded synthetic data set X ~ N(0, I_P)
  (``linear-d2``, ``linear-d5``: D = 2 has exact quadrature references, so finite differences can check the
  exact gradient);
* :func:`digits_problem` -- the encoder of the ``vae-digits`` scenario's recipe (an MLP 64-128-128-2D, trained
  as a beta-VAE on scikit-learn's 1797 digits by :func:`train_digits_vae`, the same loop as
  :func:`estimators.scenarios.vae_digits.train_vae`). Its float64 parameters ship with the package
  (``estimators/gradients/data/``, by recipe fingerprint) so the gradient study reproduces on any machine;
  other recipes are trained on first use (seconds) and cached in :func:`estimators.files.cache_dir`.

Everything is float64.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..files import atomic_path, cache_dir, read_fingerprinted
from ..posteriors import Posteriors
from ..scenarios.vae_digits import DigitsVAE, Recipe, fit_digits_vae, load_digits_data, recipe_for

__all__ = ["EncoderProblem", "LinearEncoder", "DigitsVAE", "linear_problem", "digits_problem", "train_digits_vae",
           "make_problem", "PROBLEMS", "DIGITS_RECIPE", "save_digits_encoder"]

DIGITS_RECIPE = recipe_for(8, 0.5, 0)  # the benchmark's vae-digits field (separation 0.5, D = 8, seed 0)
SHIPPED = Path(__file__).with_name("data")


@dataclass(frozen=True)
class EncoderProblem:
    r"""A fixed data set and an encoder: the N posteriors as a differentiable function of theta.

    Attributes:
        name: the field's name in reports (``linear-d2``, ``vae-digits``, ...).
        x: the data set, (N, P) float64.
        encoder: a module with ``encoder(x) -> (mu, logvar)``, each (N, D); its parameters are theta.
        description: one line for reports.
    """

    name: str
    x: Tensor
    encoder: nn.Module
    description: str = ""

    @property
    def N(self) -> int:
        return int(self.x.shape[0])

    @property
    def D(self) -> int:
        with torch.no_grad():
            return int(self.encoder(self.x[:1])[0].shape[1])

    @property
    def params(self) -> list[Tensor]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    def posteriors(self, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""(mu, logvar) of all N points (or of ``rows``), differentiable in theta."""
        return self.encoder(self.x if rows is None else self.x[rows])

    def field(self) -> Posteriors:
        r"""The N posteriors as a detached float64 :class:`~estimators.Posteriors`."""
        with torch.no_grad():
            mu, logvar = self.posteriors()
        return Posteriors(mu.detach().clone(), logvar.detach().clone(), self.name)

    def flat_grad(self, output: Tensor, retain_graph: bool = True) -> Tensor:
        r"""d output / d theta as one flat (P,) float64 vector (zeros for parameters output does not reach)."""
        grads = torch.autograd.grad(output, self.params, retain_graph=retain_graph, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(self.params, grads)])

    def get_flat(self) -> Tensor:
        r"""theta as one flat (P,) vector (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    def set_flat(self, theta: Tensor) -> None:
        r"""Overwrite theta with the flat (P,) vector ``theta``."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        if theta.shape != (self.num_params,):
            raise ValueError(f"theta must have shape ({self.num_params},), got {tuple(theta.shape)}")
        with torch.no_grad():
            offset = 0
            for p in self.params:
                p.copy_(theta[offset:offset + p.numel()].view_as(p))
                offset += p.numel()


class LinearEncoder(nn.Module):
    r"""mu = x A + a, logvar = x C + c: a linear Gaussian encoder of P inputs and D latent dimensions."""

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.zeros(in_features, latent_dim, dtype=torch.float64))
        self.a = nn.Parameter(torch.zeros(latent_dim, dtype=torch.float64))
        self.C = nn.Parameter(torch.zeros(in_features, latent_dim, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(latent_dim, dtype=torch.float64))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x @ self.A + self.a, x @ self.C + self.c


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def linear_problem(N: int = 2048, D: int = 2, P: int = 6, *, seed: int = 0, scale: float = 1.0,
                   logvar_mean: float = -2.0, logvar_scale: float = 0.3, prior: bool = False) -> EncoderProblem:
    r"""A seeded synthetic data set X ~ N(0, I_P) (N, P) with a linear encoder mu = X A + a, logvar = X C + c.

    A has iid N(0, scale^2 / P) entries (so mu has about unit scale per dimension and tc > 0 since the columns
    of A correlate through X), a ~ N(0, 0.1^2), C iid N(0, logvar_scale^2 / P), c = logvar_mean + N(0, 0.1^2).
    With ``prior=True`` every parameter is 0: every posterior is the prior N(0, I) (mi = tc = kl_agg = 0, a
    minimum of each, so every gradient is 0 in expectation).

    Raises:
        ValueError: N, D or P not a positive int, non-finite scales.
    """
    N, D, P = _positive_int("N", N, 2), _positive_int("D", D), _positive_int("P", P)
    seed = _positive_int("seed", seed, 0)
    for name, value in (("scale", scale), ("logvar_mean", logvar_mean), ("logvar_scale", logvar_scale)):
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, P, generator=g, dtype=torch.float64)
    enc = LinearEncoder(P, D)
    if not prior:
        with torch.no_grad():
            enc.A.copy_(torch.randn(P, D, generator=g, dtype=torch.float64) * scale / math.sqrt(P))
            enc.a.copy_(0.1 * torch.randn(D, generator=g, dtype=torch.float64))
            enc.C.copy_(torch.randn(P, D, generator=g, dtype=torch.float64) * logvar_scale / math.sqrt(P))
            enc.c.copy_(logvar_mean + 0.1 * torch.randn(D, generator=g, dtype=torch.float64))
    name = f"linear-d{D}" + ("-prior" if prior else "")
    return EncoderProblem(name, x, enc, f"linear encoder mu = X A + a, logvar = X C + c on X ~ N(0, I_{P}), "
                                        f"N = {N}, D = {D}" + (", every posterior the prior" if prior else ""))


class _EncoderOf(nn.Module):
    r"""The encoder half of a :class:`DigitsVAE` as a module ``x -> (mu, logvar)``."""

    def __init__(self, vae: DigitsVAE) -> None:
        super().__init__()
        self.net = vae.encoder
        self.latent_dim = vae.latent_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x).split(self.latent_dim, dim=-1)
        return mu, logvar


def train_digits_vae(recipe: Recipe = DIGITS_RECIPE, *, loss: Callable | None = None, steps: int | None = None,
                     drop_last: bool = False, progress: Callable | None = None) -> DigitsVAE:
    r"""Train a :class:`DigitsVAE` on the 1797 digits with ``recipe`` and return the model (float32, eval mode).

    The loop is :func:`estimators.scenarios.vae_digits.fit_digits_vae` (without ``loss``, the scenario's own
    training, so the shipped field and this encoder agree bit for bit); ``progress(step)`` is called after every
    step.
    """
    on_step = None if progress is None else (lambda step, _value: progress(step))
    return fit_digits_vae(recipe, loss=loss, steps=steps, drop_last=drop_last, on_step=on_step)


def _encoder_file(recipe: Recipe, directory) -> Path:
    return Path(directory) / f"digits-encoder-{recipe.fingerprint()}.npz"


def _read_encoder(path: Path, model: DigitsVAE, fingerprint: str) -> bool:
    names = tuple(model.encoder.state_dict())
    arrays = read_fingerprinted(path, fingerprint, tuple(f"p:{k}" for k in names))
    if arrays is None:
        return False
    try:
        model.encoder.load_state_dict({k: torch.from_numpy(a) for k, a in zip(names, arrays)})
        return True
    except Exception:  # foreign shapes: retrain
        return False


def digits_problem(recipe: Recipe = DIGITS_RECIPE, *, directory: str | os.PathLike | None = None,
                   retrain: bool = False) -> EncoderProblem:
    r"""The trained encoder of the digits VAE of ``recipe`` (default: the benchmark's ``vae-digits`` field) on the
    1797 images, in float64: shipped, cached or trained once (:func:`train_digits_vae`)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    model = DigitsVAE(64, recipe.hidden, recipe.latent_dim)
    fingerprint = recipe.fingerprint()
    path = _encoder_file(recipe, directory if directory is not None else cache_dir())
    found = not retrain and (_read_encoder(_encoder_file(recipe, SHIPPED), model, fingerprint)
                             or _read_encoder(path, model, fingerprint))
    if not found:
        model = train_digits_vae(recipe)
        try:
            save_digits_encoder(model, recipe, path)
        except OSError as exc:
            warnings.warn(f"could not cache the digits encoder at {str(path)!r}: {exc}", stacklevel=2)
    encoder = _EncoderOf(model).double()
    encoder.requires_grad_(True)
    return EncoderProblem("vae-digits", load_digits_data().double(), encoder,
                          f"encoder of a beta-VAE (beta = {recipe.beta:g}, D = {recipe.latent_dim}) on the 1797 digits")


def save_digits_encoder(model: DigitsVAE, recipe: Recipe, path: str | os.PathLike) -> None:
    r"""Write the encoder's parameters (float64) with the recipe's fingerprint, atomically."""
    arrays = {f"p:{k}": v.detach().double().numpy() for k, v in model.encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        np.savez(tmp, fingerprint=np.array(recipe.fingerprint()), **arrays)


def _renamed(problem: EncoderProblem, name: str) -> EncoderProblem:
    return EncoderProblem(name, problem.x, problem.encoder, problem.description)


PROBLEMS: dict[str, Callable[[], EncoderProblem]] = {
    "linear-d2": lambda: linear_problem(2048, 2, seed=0),
    "linear-d5": lambda: linear_problem(2048, 5, seed=1),
    "linear-d2-small": lambda: _renamed(linear_problem(256, 2, seed=2), "linear-d2-small"),
    "vae-digits": digits_problem,
}


def make_problem(name: str) -> EncoderProblem:
    r"""The built-in encoder problem ``name`` (one of :data:`PROBLEMS`); a fresh copy each call."""
    if name not in PROBLEMS:
        raise ValueError(f"field must be one of {', '.join(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name]()
