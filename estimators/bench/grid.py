r"""The benchmark grid: scenarios, cells, units, presets and seeds.

A *cell* is one row of the report: (scenario, quantity, estimator, batch_size, k). One estimator
call yields all four aggregate-posterior quantities at once, so the runner works in *units*:
(scenario, estimator, batch_size, k) with the quantities it emits.

Seeds (:func:`derive_seed`, SHA-256 of strings) depend only on the global seed and the unit, so a
unit's numbers do not depend on which other units run, in what order, or in how many processes:

* replicate r's batch (indices and z) comes from ``derive_seed(seed, batch_key, r)``, where the
  batch key names the field, the batch size and the dtype but not the estimator: every estimator
  sees the same R batches (common random numbers), so differences between estimators are not
  blurred by different batches (e.g. mws - naive is then exactly SPEC's constant per replicate);
* an estimator's own draws (iwae's k components) come from ``derive_seed(unit_seed, r)`` with
  ``unit_seed = derive_seed(seed, unit_key)``.

The first R replicates of a longer run are the replicates of a shorter one.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

__all__ = [
    "AGGREGATE_QUANTITIES",
    "LOG_PX",
    "ALL_QUANTITIES",
    "ScenarioSpec",
    "Unit",
    "Preset",
    "PRESETS",
    "derive_seed",
]

AGGREGATE_QUANTITIES = ("mi", "kl_agg", "tc", "dimwise_kl")
LOG_PX = "log_px"
ALL_QUANTITIES = AGGREGATE_QUANTITIES + (LOG_PX,)


def derive_seed(*parts) -> int:
    r"""A 63-bit seed from the string forms of ``parts`` (SHA-256: stable across runs and platforms,
    unlike ``hash()``, which Python salts per process)."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def _fmt_float(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


@dataclass(frozen=True)
class ScenarioSpec:
    r"""Where a field of posteriors (or a log p(x) task) comes from, before it is built.

    Args:
        name: the scenario's label in reports: a name of ``estimators.scenarios.SCENARIOS``,
            the stem of a posterior file, or a name of ``estimators.iwae.LOG_PX_TASKS``.
        kind: ``"aggregate"`` (a field of posteriors) or ``"log_px"`` (an IWAE task).
        N, D: requested size (None: the scenario's default).
        separation: the scenario knob in [0, 1] (None for files and tasks).
        seed: the scenario's own seed.
        path: a posterior file (``.npz``/``.pt``) instead of a named scenario.
    """

    name: str
    kind: str = "aggregate"
    N: int | None = None
    D: int | None = None
    separation: float | None = None
    seed: int = 0
    path: str | None = None


@dataclass(frozen=True)
class Unit:
    r"""One estimator configuration on one built scenario; it yields one row per quantity.

    ``N`` and ``D`` are the built field's actual sizes, so a unit's key can be recomputed from a
    CSV row (resume) without rebuilding anything.
    """

    scenario: str
    kind: str
    N: int
    D: int
    separation: float | None
    scenario_seed: int
    estimator: str
    batch_size: int  # 0 where it does not apply (log_px)
    k: int  # 0 where it does not apply (estimators without a k)
    quantities: tuple[str, ...]
    replicates: int
    dtype: str
    seed: int  # the global seed

    @property
    def key(self) -> str:
        r"""Identity of the unit's random numbers: everything but quantities, replicates and seed."""
        return unit_key(self.scenario, self.N, self.D, self.separation, self.scenario_seed,
                        self.estimator, self.batch_size, self.k, self.dtype)

    @property
    def batch_key(self) -> str:
        r"""Identity of the replicate batches: the field, the batch size and the dtype."""
        return unit_key(self.scenario, self.N, self.D, self.separation, self.scenario_seed,
                        "*", self.batch_size, 0, self.dtype)

    def batch_seed(self, r: int) -> int:
        return derive_seed(self.seed, self.batch_key, r)

    def estimator_seed(self, r: int) -> int:
        return derive_seed(self.unit_seed, r)

    @property
    def field_id(self) -> tuple:
        r"""Which built field (or task) the unit runs on."""
        return (self.scenario, self.separation)

    @property
    def unit_seed(self) -> int:
        return derive_seed(self.seed, self.key)

    def row_id(self, quantity: str) -> tuple:
        r"""Identity of one CSV row, as :func:`row_id_of` computes it from the row."""
        return (self.key, quantity, self.replicates, self.seed)


def unit_key(scenario, N, D, separation, scenario_seed, estimator, batch_size, k, dtype) -> str:
    return (f"scenario={scenario};N={int(N)};D={int(D)};separation={_fmt_float(separation)};"
            f"scenario_seed={int(scenario_seed)};estimator={estimator};batch_size={int(batch_size)};"
            f"k={int(k)};dtype={dtype}")


def row_id_of(row) -> tuple:
    r"""The identity of a CSV row (a mapping with the report's columns): see :meth:`Unit.row_id`."""
    key = unit_key(row["scenario"], row["N"], row["D"], row["separation"], row["scenario_seed"],
                   row["estimator"], row["batch_size"], row["k"], row["dtype"])
    return (key, row["quantity"], int(row["replicates"]), int(row["seed"]))


@dataclass(frozen=True)
class Preset:
    r"""A named benchmark grid.

    ``estimators=None`` means every registered estimator; ``log_px_tasks=None`` every task.
    ``k`` is the list of k for aggregate estimators that take one (``needs_k``); ``log_px_k`` the
    list for the IWAE log p(x) estimators.
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
    jackknife2_max_k: int | None = 256  # the order-2 jackknife costs O(k^2) per estimate
    reference_samples: int = 8
    quadrature_nodes: int = 32
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
            reference_samples=512,  # N S >= 100 B_max R = 102400 (see runner.reference_samples)
        ),
        Preset(
            name="standard",
            description="the README's main job (under 10 minutes on 2 cores)",
            # plus a well-separated field (mi near log N), where naive is capped at log B
            scenarios=(_specs(_CORE, N=2048, D=5) + _specs(("gaussian",), N=2048, D=5, separations=(0.9,))
                       + (ScenarioSpec("vae-digits", separation=0.5),)),
            batch_sizes=(8, 32, 128, 512),
            k=(16, 256),
            replicates=48,
            log_px_k=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            log_px_replicates=256,
            reference_samples=1536,  # N S = 3.1e6 >= 100 B_max R = 2.5e6 (see runner.reference_samples)
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
            jackknife2_max_k=1024,
            reference_samples=4096,  # capped near 1200 at N = 4096 by REFERENCE_BUDGET: B = 2048 cells get flagged
        ),
    )
}
