r"""Named grids of the gradient study (``quick``, ``standard``) and of the training study (``training``, ``training-quick``).

``standard`` is what the committed ``results/gradients.*`` show: every registered estimator at B in
{16, 64, 256, 1024} on three fields (two linear encoders, D = 2 and 5, and the vae-digits encoder); about three
minutes on 2 cores. ``training`` trains the digits VAE as a beta-TCVAE once per (estimator, B, seed).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..decompose import QUANTITIES

__all__ = ["GradientPreset", "TrainingPreset", "PRESETS", "TRAINING_PRESETS"]


@dataclass(frozen=True)
class GradientPreset:
    r"""A grid of the gradient study.

    Attributes:
        name: the preset's name (a CSV column).
        fields: names in :data:`estimators.gradients.encoders.PROBLEMS`.
        batch_sizes: B values (a cell is skipped where B > N or B < the estimator's min_batch).
        replicates: R, replicate batches per cell.
        k: the k values of estimators that take one (``iwae``).
        exact_groups, exact_samples: groups and draws per component of the exact gradient.
        boot: bootstrap resamples of the metrics' ses.
        estimators: names, or None for every registered estimator (so new ones are included automatically).
        quantities: subset of mi, kl_agg, tc, dimwise_kl.
        seed: global seed.
    """

    name: str
    fields: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    replicates: int
    k: tuple[int, ...] = (256,)
    exact_groups: int = 32
    exact_samples: int = 4
    boot: int = 200
    estimators: tuple[str, ...] | None = None
    quantities: tuple[str, ...] = QUANTITIES
    seed: int = 0
    description: str = ""

    def with_(self, **changes) -> "GradientPreset":
        return replace(self, **changes)


@dataclass(frozen=True)
class TrainingPreset:
    r"""A grid of the training study: the digits VAE trained as a beta-TCVAE.

    Attributes:
        estimators: the TC penalty's estimator of each run (also used for mi and dimwise_kl, as in Chen et al.).
        batch_sizes: training batch sizes.
        seeds: training seeds (initialisation and minibatch order; shared by the estimators: paired runs).
        beta: weight of tc (mi and dimwise_kl have weight 1).
        steps: optimisation steps of every run (the same for every B).
        latent_dim, hidden, lr: the model (the vae-digits recipe's architecture).
        reference_samples: Monte Carlo draws per component of the exact references of the trained fields.
    """

    name: str
    estimators: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    beta: float = 6.0
    steps: int = 1500
    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128)
    lr: float = 2e-3
    reference_samples: int = 16
    description: str = ""

    def with_(self, **changes) -> "TrainingPreset":
        return replace(self, **changes)


PRESETS: dict[str, GradientPreset] = {p.name: p for p in (
    GradientPreset("quick", fields=("linear-d2-small",), batch_sizes=(16, 64), replicates=8, exact_groups=8,
                   exact_samples=2, boot=50, k=(64,), description="smoke run, seconds: one small field, two B"),
    GradientPreset("standard", fields=("linear-d2", "linear-d5", "vae-digits"), batch_sizes=(16, 64, 256, 1024),
                   replicates=32, description="the committed report: every estimator, three fields, four B"),
)}

TRAINING_PRESETS: dict[str, TrainingPreset] = {p.name: p for p in (
    TrainingPreset("training", estimators=("mws", "mss", "stratified", "mss_shipped", "mss_per_dim"),
                   batch_sizes=(64, 256), seeds=(0, 1, 2), description="the committed training study"),
    TrainingPreset("training-quick", estimators=("mws", "mss"), batch_sizes=(64,), seeds=(0, 1), steps=30,
                   latent_dim=3, hidden=(32,), reference_samples=4, description="smoke run of the training study"),
)}
