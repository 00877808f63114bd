r"""The benchmark grid's identities: quantities, scenario specs, unit keys and seeds.

A *cell* is one row of the report: (scenario, quantity, estimator, batch_size, k). One estimator
call yields all four aggregate-posterior quantities at once, so the runner works in *units*
(:mod:`.tasks`): one estimator configuration on one scenario, with the quantities it emits.

Seeds (:func:`derive_seed`, SHA-256 of strings) depend only on the global seed and the unit, so a
unit's numbers do not depend on which other units run, in what order, or in how many processes:

* replicate r's batch (indices and z) comes from ``derive_seed(seed, batch_key, r)``, where the
  batch key names the field, the batch size and the dtype but not the estimator: every estimator
  sees the same R batches (common random numbers), so differences between estimators are not
  blurred by different batches (e.g. mws - naive is then exactly its constant per replicate, see
  docs/maths.md, "Published variants");
* an estimator's own draws (iwae's k components) come from ``derive_seed(unit_seed, r)`` with
  ``unit_seed = derive_seed(seed, unit_key)``.

The first R replicates of a longer run are the replicates of a shorter one. The key strings are
part of the results: changing their format changes every number of the report.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

__all__ = ["AGGREGATE_QUANTITIES", "LOG_PX", "ALL_QUANTITIES", "ScenarioSpec", "derive_seed", "unit_key",
           "row_id_of"]

AGGREGATE_QUANTITIES = ("mi", "kl_agg", "tc", "dimwise_kl")
LOG_PX = "log_px"
ALL_QUANTITIES = AGGREGATE_QUANTITIES + (LOG_PX,)


def derive_seed(*parts) -> int:
    r"""A 63-bit seed from the string forms of ``parts`` (SHA-256: stable across runs and platforms,
    unlike ``hash()``, which Python salts per process)."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class ScenarioSpec:
    r"""Where a field of posteriors comes from, before it is built.

    Args:
        name: the scenario's label in reports: a name of ``estimators.scenarios.SCENARIOS`` or the
            stem of a posterior file.
        N, D: requested size (None: the scenario's default).
        separation: the scenario knob in [0, 1] (None for files).
        seed: the scenario's own seed.
        path: a posterior file (``.npz``/``.pt``) instead of a named scenario.
    """

    name: str
    N: int | None = None
    D: int | None = None
    separation: float | None = None
    seed: int = 0
    path: str | None = None

    @property
    def field_id(self) -> tuple:
        r"""Which built field this spec makes (two specs with one id would be one field)."""
        return (self.name, self.separation)


def _fmt_float(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def unit_key(scenario, N, D, separation, scenario_seed, estimator, batch_size, k, dtype) -> str:
    r"""The identity string of a unit's random numbers (0 for a batch size or k that does not apply)."""
    return (f"scenario={scenario};N={int(N)};D={int(D)};separation={_fmt_float(separation)};"
            f"scenario_seed={int(scenario_seed)};estimator={estimator};batch_size={int(batch_size)};"
            f"k={int(k)};dtype={dtype}")


def row_id_of(row) -> tuple:
    r"""The identity of a CSV row (a mapping with the report's columns): see :meth:`.tasks.Unit.row_id`."""
    key = unit_key(row["scenario"], row["N"], row["D"], row["separation"], row["scenario_seed"],
                   row["estimator"], row["batch_size"], row["k"], row["dtype"])
    return (key, row["quantity"], int(row["replicates"]), int(row["seed"]))
