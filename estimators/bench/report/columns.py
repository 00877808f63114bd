r"""The CSV schema (:mod:`..schema`) as Markdown: the column table of the results README and the
whole of ``docs/csv.md``.

Regenerate ``docs/csv.md`` with :func:`write_csv_doc` (:data:`REGENERATE` is the command line); a
test checks that the committed file is the generated text.
"""
from __future__ import annotations

from ...files import write_atomic
from ..schema import COLUMNS
from .format import md_table

__all__ = ["columns_table", "csv_doc", "write_csv_doc", "REGENERATE"]

REGENERATE = ('.venv/bin/python -c "from estimators.bench.report.columns import write_csv_doc; '
              "write_csv_doc('docs/csv.md')\"")


def columns_table() -> str:
    r"""One Markdown row per CSV column, in file order: name, kind, meaning."""
    return md_table(["column", "kind", "meaning"],
                    [[f"`{c.name}`", c.kind, c.meaning.replace("|", "\\|")]
                     for c in COLUMNS])


def csv_doc() -> str:
    r"""The text of ``docs/csv.md``."""
    return "\n".join([
        "# The results CSV",
        "",
        "Generated from `estimators/bench/schema.py` (`estimators.bench.report.columns.write_csv_doc`); do not",
        "edit by hand.",
        "",
        "`python -m estimators bench` writes one row per cell (scenario, quantity, estimator, batch_size, k) to",
        "`OUT/NAME.csv`, in this column order. Kinds: `text` (blank = empty string), `int` (0 in `batch_size`",
        "and `k` = not applicable), `float` (written with full precision; blank = undefined, NaN) and `bool`",
        "(`True` / `False`; blank = not checked). All values are in nats. The formulas behind the metrics are",
        "in `docs/maths.md` (\"Benchmark and metrics\").",
        "",
        "Undefined statistics are blank: `frac_negative` and `coverage` where every estimate of a row equals",
        "the reference up to rounding (an exactly computed 0, say: they would count rounding errors),",
        "`rel_bias` where the reference is 0.",
        "",
        columns_table(),
        "",
    ])


def write_csv_doc(path) -> None:
    r"""Write :func:`csv_doc` to ``path`` (normally ``docs/csv.md``)."""
    write_atomic(path, csv_doc())
