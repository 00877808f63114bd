r"""Named benchmark grids: ``quick`` (a smoke run), ``standard`` (the committed report), ``paper`` (the published
dSprites setting, committed as ``results/paper.*``), ``density_ratio`` and ``full``.

The ``standard`` preset is what ``scripts/main.sh`` recomputes and compares with the committed
``results/standard.csv``: changing it changes the report.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .grid import ALL_QUANTITIES, ScenarioSpec

__all__ = ["Preset", "PRESETS"]


@dataclass(frozen=True)
class Preset:
    r"""A named benchmark grid.

    ``estimators=None`` means every registered estimator; ``log_px_tasks=None`` every task.
    ``k`` is the list of k for aggregate estimators that take one (``EstimatorInfo.needs_k``);
    ``log_px_k`` the list for the log p(x) estimators, each run at the k >= its ``min_k``;
    ``pairwise_max_k`` caps k for the log p(x) estimators with a (k, k) temporary per estimate
    (``LogPxEstimator.pairwise``: the order-2 jackknife costs O(k^2)).

    Direct estimators (``estimators.direct.DIRECT_ESTIMATORS``; ``direct_estimators=None``: all, ``()``:
    none): the moment estimators run at ``batch_sizes`` with ``replicates``; the density ratio at each of
    ``density_ratio_steps`` (training steps, the ``k`` column) with training batch
    ``density_ratio_batch_size`` and ``density_ratio_replicates`` independent trainings.
    """

    name: str
    scenarios: tuple[ScenarioSpec, ...]
    batch_sizes: tuple[int, ...]
    k: tuple[int, ...]
    replicates: int
    estimators: tuple[str, ...] | None = None
    quantities: tuple[str, ...] = ALL_QUANTITIES
    log_px_tasks: tuple[str, ...] | None = None
    log_px_k: tuple[int, ...] = (1, 4, 16, 64)
    log_px_replicates: int = 200
    pairwise_max_k: int | None = 256
    reference_samples: int = 8
    reference_target_se: float | None = None  # the reference's se wanted (a pilot picks its draws); None: samples
    quadrature_nodes: int = 32
    direct_estimators: tuple[str, ...] | None = None
    density_ratio_steps: tuple[int, ...] = (300,)
    density_ratio_batch_size: int = 256
    density_ratio_replicates: int = 8
    dtype: str = "float64"
    description: str = ""

    def with_(self, **changes) -> "Preset":
        return replace(self, **changes)


def _specs(names, N, D, separations=(0.5,)) -> tuple[ScenarioSpec, ...]:
    return tuple(ScenarioSpec(n, N=N, D=D, separation=s) for n in names for s in separations)


_CORE = ("collapsed", "grid", "gaussian", "clustered", "heteroscedastic")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="quick",
            description="smoke run, under a minute: two small scenarios, two batch sizes",
            scenarios=_specs(("gaussian", "heteroscedastic"), N=256, D=3),
            batch_sizes=(16, 64),
            k=(16,),
            replicates=16,
            log_px_tasks=("fa-d2-mismatched", "fa-d8-diagonal"),
            log_px_k=(1, 4, 16),
            log_px_replicates=64,
            reference_samples=512,  # N S >= 100 B_max R = 102400 (see plan.reference_samples)
            density_ratio_steps=(100,),
            density_ratio_replicates=3,
        ),
        Preset(
            name="standard",
            description="the committed report, recomputed by scripts/main.sh (about 5 minutes on 2 cores)",
            # plus a well-separated field (mi near log N), where naive is capped at log B
            scenarios=(_specs(_CORE, N=2048, D=5) + _specs(("gaussian",), N=2048, D=5, separations=(0.9,))
                       + (ScenarioSpec("vae-digits", separation=0.5),)),
            batch_sizes=(8, 32, 128, 512),
            k=(16, 256),
            replicates=48,
            log_px_k=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            log_px_replicates=256,
            reference_samples=1536,  # N S = 3.1e6 >= 100 B_max R = 2.5e6 (see plan.reference_samples)
            density_ratio_steps=(300,),  # about 0.4 s a training here: 8 per field
            density_ratio_replicates=8,
        ),
        Preset(
            name="density_ratio",
            description="density-ratio TC study: bias against training steps and true tc (5 minutes)",
            scenarios=_specs(("gaussian",), N=2048, D=5, separations=(0.1, 0.3, 0.5, 0.7, 0.9)),
            batch_sizes=(256,),
            k=(),
            replicates=6,
            estimators=(),
            quantities=("tc",),
            log_px_tasks=(),
            reference_samples=1536,
            direct_estimators=("density_ratio",),
            density_ratio_steps=(30, 100, 300, 1000, 3000),
            density_ratio_replicates=10,  # Student-t claims at 1e-4 (tests/bench/test_committed_density_ratio.py)
        ),
        Preset(
            name="paper",
            description="dSprites at B = 64 .. 2048, full-N references (30 min once the VAEs are trained)",
            scenarios=_specs(("dsprites", "dsprites-tcvae"), N=None, D=None),
            batch_sizes=(64, 256, 1024, 2048),
            k=(16,),
            replicates=16,
            log_px_tasks=(),
            reference_target_se=0.01,
            density_ratio_steps=(300,),
            density_ratio_replicates=4,
        ),
        Preset(
            name="full",
            description="everything: three separations per scenario, more batch sizes and replicates",
            scenarios=(_specs(_CORE, N=4096, D=6, separations=(0.1, 0.5, 0.9))
                       + _specs(("vae-digits",), N=None, D=None, separations=(0.1, 0.5, 0.9))),
            batch_sizes=(2, 8, 32, 128, 512, 2048),
            k=(4, 16, 64, 256, 1024),
            replicates=256,
            log_px_k=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            log_px_replicates=1024,
            pairwise_max_k=1024,
            reference_samples=4096,  # capped near 1200 at N = 4096 by REFERENCE_BUDGET: B = 2048 cells get flagged
        ),
    )
}
