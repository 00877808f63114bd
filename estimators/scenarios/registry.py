r"""The registry of scenarios: named, seeded, parameterised fields of encoder posteriors.

Every scenario is a function ``build(N, D, separation, seed) -> Posteriors`` registered in
:data:`SCENARIOS`; :func:`make_scenario` validates the arguments and calls it. ``separation`` in
[0, 1] runs from collapsed (0: mi = I(n; z) near 0) to well separated (1: mi near log N). The
synthetic builders are in :mod:`.synthetic`, the trained VAEs in :mod:`.vae_digits` and
:mod:`.vae_dsprites`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..digits import DIGITS_N
from ..posteriors import Posteriors
from ..validation import as_int
from . import synthetic, vae_digits, vae_dsprites

__all__ = ["Scenario", "SCENARIOS", "make_scenario"]


@dataclass(frozen=True)
class Scenario:
    r"""A registered posterior field.

    Args:
        name: registry key, also the ``name`` of the returned :class:`Posteriors`.
        description: one line for reports.
        build: ``build(N, D, separation, seed) -> Posteriors`` (arguments already validated).
        default_N, default_D: sizes used when :func:`make_scenario` gets ``None``.
        known_tc_zero: the field is a product grid at every separation: tc = 0 exactly.
        prior_at_zero: at separation 0 every posterior equals the prior N(0, I), so mi, kl_agg,
            tc, dimwise_kl and avg_kl are all 0 exactly.
        real: posteriors of a trained model rather than a synthetic construction.
        max_N: largest N the scenario can produce (``None``: unbounded).
    """

    name: str
    description: str
    build: Callable[[int, int, float, int], Posteriors]
    default_N: int
    default_D: int
    known_tc_zero: bool = False
    prior_at_zero: bool = True
    real: bool = False
    max_N: int | None = None


def _subsample(field: Posteriors, N: int, name: str, seed: int) -> Posteriors:
    """N of the field's rows, chosen by ``seed`` and kept in data order (the whole field when N is its size)."""
    if N >= field.N:
        return field
    index = torch.randperm(field.N, generator=synthetic.scenario_generator(name, seed))[:N].sort().values
    return field.subset(index)


def _dsprites(objective: str):
    def build(N: int, D: int, separation: float, seed: int) -> Posteriors:
        recipe = vae_dsprites.scenario_recipes()[objective]
        name = recipe.name
        if D != recipe.latent_dim:
            raise ValueError(f"D must be {recipe.latent_dim} for scenario {name!r} (the trained VAE's latent size), "
                             f"got {D}")
        if separation != 0.5:
            raise ValueError(f"scenario {name!r} is one trained model: separation must be 0.5 (the default), "
                             f"got {separation}")
        return _subsample(vae_dsprites.dsprites_posteriors(recipe), N, name, seed)
    return build


def _vae_digits(N: int, D: int, separation: float, seed: int) -> Posteriors:
    return _subsample(vae_digits.digits_posteriors(vae_digits.recipe_for(D, separation, seed)), N, "vae-digits", seed)


_DSPRITES = vae_dsprites.scenario_recipes()
_DSPRITES_N = next(iter(_DSPRITES.values())).grid.N
_DSPRITES_D = next(iter(_DSPRITES.values())).latent_dim
_TINY = " (the tiny CI grid: VAE_ESTIMATORS_DSPRITES=tiny)" if _DSPRITES is vae_dsprites.TINY_RECIPES else ""

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("collapsed", "centres iid N(0, I) with isotropic noise; every posterior is the prior at "
                 "separation 0", synthetic.collapsed, 2000, 6),
        Scenario("grid", "product grid of jittered means, per-dimension variance: tc = 0 exactly",
                 synthetic.grid, 2000, 6, known_tc_zero=True),
        Scenario("gaussian", "means from a randomly correlated Gaussian, shared isotropic variance: tc > 0",
                 synthetic.gaussian, 2000, 6),
        Scenario("clustered", f"means around {synthetic.N_CLUSTERS} cluster centres, shared isotropic variance",
                 synthetic.clustered, 2000, 6),
        Scenario("heteroscedastic", "per-point variances over orders of magnitude (logvar about -10..1), "
                 "inactive dimensions equal to the prior", synthetic.heteroscedastic, 2000, 8),
        Scenario("vae-digits", "posteriors of a beta-VAE trained on scikit-learn's digits; separation sets "
                 "beta (4 at 0 .. 1/16 at 1), seed the training seed", _vae_digits,
                 DIGITS_N, 8, prior_at_zero=False, real=True, max_N=DIGITS_N),
        Scenario("dsprites", f"posteriors of a VAE (beta 1, the beta-TCVAE paper's MLP) on all {_DSPRITES_N:,} "
                 f"procedural dSprites images{_TINY}; trained once (about 25 minutes on 2 cores) and cached; a "
                 "smaller N subsamples by seed", _dsprites("beta-vae"), _DSPRITES_N, _DSPRITES_D,
                 prior_at_zero=False, real=True, max_N=_DSPRITES_N),
        Scenario("dsprites-tcvae", f"posteriors of a beta-TCVAE (beta 6 on the tc, estimated with mss) on all "
                 f"{_DSPRITES_N:,} procedural dSprites images{_TINY}; trained once and cached like dsprites",
                 _dsprites("beta-tcvae"), _DSPRITES_N, _DSPRITES_D, prior_at_zero=False, real=True,
                 max_N=_DSPRITES_N),
    ]
}


def make_scenario(name: str, *, N: int | None = None, D: int | None = None, separation: float = 0.5,
                  seed: int = 0) -> Posteriors:
    r"""Build the posterior field of scenario ``name``.

    Args:
        name: a key of :data:`SCENARIOS`.
        N: number of posteriors (default: the scenario's ``default_N``). The trained fields take
            at most their data set's size (``vae-digits`` 1797, ``dsprites`` 737,280) and subsample
            deterministically (seeded by ``seed``) when N is smaller.
        D: latent dimension (default: the scenario's ``default_D``); for ``vae-digits`` the latent
            size of the trained VAE (a new D trains and caches a new model); ``dsprites`` and
            ``dsprites-tcvae`` have D = 10 only.
        separation: in [0, 1]; 0 collapsed (mi near 0), 1 well separated (mi near log N). The
            dsprites fields are single trained models and take the default 0.5 only.
        seed: non-negative int; the same arguments always give the same field.

    Returns:
        A float64 :class:`Posteriors` of shape (N, D) whose ``name`` is the scenario name.

    Example::

        >>> field = make_scenario("grid", N=64, D=3, separation=0.8)
        >>> field.N, field.D
        (64, 3)
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    N = scenario.default_N if N is None else as_int("N", N, 1)
    D = scenario.default_D if D is None else as_int("D", D, 1)
    if scenario.max_N is not None and N > scenario.max_N:
        raise ValueError(f"N must be <= {scenario.max_N} for scenario {name!r}, got {N}")
    if isinstance(separation, bool) or not isinstance(separation, (int, float)):
        raise TypeError(f"separation must be a float in [0, 1], got {type(separation).__name__}")
    separation = float(separation)
    if not 0.0 <= separation <= 1.0:  # also rejects NaN
        raise ValueError(f"separation must be in [0, 1], got {separation}")
    seed = as_int("seed", seed, 0)
    field = scenario.build(N, D, separation, seed)
    return Posteriors(field.mu, field.logvar, name)
