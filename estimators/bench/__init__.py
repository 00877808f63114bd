r"""The benchmark: a grid of (scenario, quantity, estimator, batch size, k) cells, measured against
exact references, stored in a resumable CSV and reported.

One concept per module, in the order of the data flow:

* :mod:`.grid` -- quantities, scenario specs, unit keys and seeds;
* :mod:`.presets` -- the named grids (``quick``, ``standard``, ``full``);
* :mod:`.schema` -- the CSV's columns, their kinds and meanings;
* :mod:`.metrics` -- bias, sd, rmse, coverage... with standard errors, and what theory predicts;
* :mod:`.reference_cache` -- exact references, cached on disk;
* :mod:`.tasks` -- the two unit kinds (aggregate posterior, log p(x)) behind one interface;
* :mod:`.plan` -- validation of a grid and its units, before anything runs;
* :mod:`.csvcheck` -- the schema check of a CSV when it is read (file, line and column of a problem);
* :mod:`.store` -- the CSV, rewritten atomically after every unit;
* :mod:`.lock` -- one writer per CSV (an exclusive lock held for the whole run);
* :mod:`.runner` -- the run loop;
* :mod:`.compare` -- cell-by-cell comparison of two CSVs;
* :mod:`.report` -- plots, the Markdown summary and the terminal table.

Data flow: :func:`.plan.plan` (validate, build fields) -> :func:`execute` (references, units, CSV)
-> :func:`write_report` (plots, README). (``estimators.bench.plan`` is the module; its function
``plan`` is not re-exported here, so the name keeps meaning the module.) The CLI is ``python -m estimators bench`` / ``report`` /
``compare``.
"""
from .compare import Comparison, compare_results
from .grid import ALL_QUANTITIES, ScenarioSpec, derive_seed
from .metrics import summarize, theory_columns
from .plan import Plan
from .presets import PRESETS, Preset
from .reference_cache import ReferenceCache, compute_reference
from .report import terminal_table, write_report
from .runner import execute, run_unit
from .schema import COLUMN_NAMES, COLUMNS, Column
from .store import ResultStore, read_results
from .tasks import AggregateUnit, LogPxUnit, Unit

__all__ = [
    "Comparison", "compare_results", "ALL_QUANTITIES", "ScenarioSpec", "derive_seed", "summarize", "theory_columns",
    "Plan", "PRESETS", "Preset", "ReferenceCache", "compute_reference", "terminal_table", "write_report",
    "execute", "run_unit", "COLUMN_NAMES", "COLUMNS", "Column", "ResultStore", "read_results",
    "AggregateUnit", "LogPxUnit", "Unit",
]
