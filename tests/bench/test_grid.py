"""Identities of the grid: seeds are SHA-256 of strings, unit keys have a fixed format (the
committed report's seeds depend on it), and a CSV row gives back its unit's identity."""
import hashlib

from estimators.bench.grid import ScenarioSpec, derive_seed, row_id_of, unit_key
from estimators.bench.tasks import AggregateUnit, LogPxUnit

AGG = AggregateUnit("collapsed", 2048, 5, 0.5, 0, "naive", 8, None, ("mi", "kl_agg"), 48, "float64", 0)
PX = LogPxUnit("fa-d2-exact", 2, "iwae", 1, 256, "float64", 0)


def test_derive_seed_is_sha256_of_the_parts():
    want = int.from_bytes(hashlib.sha256(b"0|abc|3").digest()[:8], "little") & (2**63 - 1)
    assert derive_seed(0, "abc", 3) == want
    assert derive_seed(0, "abc", 3) != derive_seed(1, "abc", 3)


def test_unit_key_format_is_pinned():
    assert AGG.key == ("scenario=collapsed;N=2048;D=5;separation=0.5;scenario_seed=0;estimator=naive;"
                       "batch_size=8;k=0;dtype=float64")
    assert PX.key == ("scenario=fa-d2-exact;N=1;D=2;separation=;scenario_seed=0;estimator=iwae;"
                      "batch_size=0;k=1;dtype=float64")
    assert unit_key("s", 3, 2, None, 1, "e", 4, 0, "float32") == _reference_key()


def _reference_key():
    return "scenario=s;N=3;D=2;separation=;scenario_seed=1;estimator=e;batch_size=4;k=0;dtype=float32"


def test_unit_seeds_of_the_committed_report():
    # the first row of each kind in results/standard.csv (column unit_seed)
    assert AGG.unit_seed == 6839148038127874880
    assert PX.unit_seed == 5750768939686252250


def test_batches_are_shared_by_estimators_and_ks():
    other = AggregateUnit("collapsed", 2048, 5, 0.5, 0, "iwae", 8, 16, ("mi",), 48, "float64", 0)
    assert other.batch_key == AGG.batch_key and other.batch_seed(3) == AGG.batch_seed(3)
    assert other.unit_seed != AGG.unit_seed and other.estimator_seed(0) != AGG.estimator_seed(0)
    assert AGG.batch_seed(0) != AGG.batch_seed(1)
    px_k4 = LogPxUnit("fa-d2-exact", 2, "iwae_jackknife1", 4, 256, "float64", 0)
    assert px_k4.batch_seed(0) == PX.batch_seed(0)  # common random numbers across estimators and k


def test_a_row_gives_back_its_units_identity():
    for unit in (AGG, PX):
        for q in unit.quantities:
            row = unit.base_row(q)
            assert row_id_of(row) == unit.row_id(q)
    assert ScenarioSpec("gaussian", separation=0.9).field_id == ("gaussian", 0.9)
