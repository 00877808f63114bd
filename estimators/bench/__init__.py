r"""The benchmark: grid of (scenario, quantity, estimator, batch size, k) cells, the runner that
measures each estimator's bias, variance and speed against exact references, the resumable CSV
store and the report (plots and a Markdown summary).

Data flow: :func:`plan` (validate, build fields) -> :func:`execute` (references, units, CSV) ->
:func:`write_report` (plots, README). The CLI is ``python -m estimators bench`` / ``report``.
"""
from .grid import ALL_QUANTITIES, PRESETS, Preset, ScenarioSpec, Unit, derive_seed
from .metrics import summarize, theory_columns
from .report import terminal_table, write_report
from .runner import Plan, execute, plan, run_unit
from .store import COLUMNS, ResultStore, read_results

__all__ = [
    "ALL_QUANTITIES", "PRESETS", "Preset", "ScenarioSpec", "Unit", "derive_seed",
    "summarize", "theory_columns", "terminal_table", "write_report",
    "Plan", "execute", "plan", "run_unit", "COLUMNS", "ResultStore", "read_results",
]
