"""Plain helpers of the benchmark tests: a tiny grid, running it, comparing two runs."""
from __future__ import annotations

import pandas as pd

from estimators.bench import runner
from estimators.bench.grid import AGGREGATE_QUANTITIES, ScenarioSpec
from estimators.bench.plan import plan
from estimators.bench.presets import Preset
from estimators.bench.store import read_results

TIMING = ["time_per_call_s"]  # the only column allowed to differ between runs

TINY = Preset(
    name="tiny",
    scenarios=(ScenarioSpec("gaussian", N=40, D=3, separation=0.6),
               ScenarioSpec("clustered", N=40, D=3, separation=0.7)),
    batch_sizes=(4, 12),
    k=(3,),
    replicates=5,
    quantities=AGGREGATE_QUANTITIES,
    reference_samples=64,
)
ESTIMATORS = ["naive", "mws", "mss", "iwae", "exact"]
CELL = ["scenario", "quantity", "estimator", "batch_size", "k"]


def run_grid(out, name="t", preset=TINY, **kw) -> pd.DataFrame:
    """Plan and run ``preset`` into ``out/name.csv`` quietly; the CSV as read back."""
    kw.setdefault("estimators", ESTIMATORS)
    path = runner.execute(plan(preset, **kw), out, name, progress=False, log=lambda m: None)
    return read_results(path)


def assert_same_cells(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Two runs hold bit-identical rows for the same cells (timing aside)."""
    a = a.set_index(CELL).sort_index().drop(columns=TIMING)
    b = b.set_index(CELL).sort_index().drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def cells_of(full: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``full`` for the cells of ``df``."""
    return full.merge(df[CELL])
