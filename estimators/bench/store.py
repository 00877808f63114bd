r"""The results CSV: one tidy row per cell. Each finished unit's rows are appended to the file (one
write of whole lines, flushed to disk), so a long run never loses work and resumes where it stopped;
the run ends by rewriting the file once, atomically, in the grid's order. Rewriting the whole CSV after
every unit had cost a sixth of the standard preset's time, and grew with the square of the units.

A crash in the middle of an append leaves at most one partial last line: it is dropped when the
file is opened again (that unit simply runs again). A row appended for a cell that is already in the
file (an error row being retried) supersedes the earlier one.

Columns come in the order of :mod:`.schema`. Floats are written with ``repr`` precision and read
back with pandas' round-trip parser, and text columns are read as text, so a resumed run's rows
are bit-identical to those it wrote. Every read is checked against the schema first
(:mod:`.csvcheck`): a truncated, hand-edited or foreign file is one clear error naming the file,
line and column, never a silent NaN or a traceback later.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..files import write_atomic
from .csvcheck import IDENTITY_COLUMNS, check_csv
from .grid import row_id_of
from .schema import COLUMN_NAMES, columns_of_kind

__all__ = ["ResultStore", "read_results", "IDENTITY_COLUMNS"]

TEXT_COLUMNS = columns_of_kind("text")
# pandas >= 3 parses floats exactly by default (and deprecates the option); older ones need it.
_ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    r"""Read a results CSV exactly as written (round-trip floats); empty frame if it is missing.

    Raises:
        ValueError: the file fails the schema check (:func:`.csvcheck.check_csv`, strict): one line
            naming the file, the line and the column.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMN_NAMES)
    check_csv(path, strict=True)
    try:
        df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, **_ROUND_TRIP)
    except (OSError, ValueError, pd.errors.ParserError) as exc:  # after the check: not expected
        raise ValueError(f"{path}: cannot read it as a CSV: {str(exc).strip().splitlines()[0]}") from None
    for col in TEXT_COLUMNS:  # text columns stay text ("0" is a sign, "1e3" a scenario name), blanks ""
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), "")
    return df


def _drop_partial_last_line(path: Path) -> None:
    """Remove an unterminated last line (an append cut short), rewriting the file atomically."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        write_atomic(path, data[:data.rfind(b"\n") + 1].decode("utf-8"))


class ResultStore:
    r"""The rows of one results CSV, keyed by row identity (see :func:`.grid.row_id_of`).

    Rows not produced by the current grid are kept untouched. :meth:`append` adds a unit's rows to the
    file (a later row supersedes an earlier one of the same cell); :meth:`flush` rewrites it, in order,
    atomically; :meth:`put` is both.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[tuple, dict] = {}
        _drop_partial_last_line(self.path)
        try:
            df = read_results(self.path)
        except ValueError as exc:
            raise ValueError(f"{exc}; fix or remove the file, or choose another --name or --out") from None
        for rec in df.to_dict("records"):
            self.rows[row_id_of(rec)] = rec

    def is_done(self, unit) -> bool:
        r"""Whether every quantity of ``unit`` has a row with status ok (an error row is retried)."""
        for q in unit.quantities:
            row = self.rows.get(unit.row_id(q))
            if row is None or row.get("status") != "ok":
                return False
        return True

    def put(self, rows: list[dict], order: list[tuple] | None = None) -> None:
        for row in rows:
            self.rows[row_id_of(row)] = row
        self.flush(order)

    def append(self, rows: list[dict]) -> None:
        r"""Record ``rows`` and append them to the CSV as whole lines, flushed to disk (header first if new)."""
        for row in rows:
            self.rows[row_id_of(row)] = row
        if not rows:
            return
        if any(c not in COLUMN_NAMES for row in rows for c in row) or not self._header_is_the_schema():
            self.flush()  # columns beyond the schema, or a file written in another column order: rewrite
            return
        new = not self.path.is_file() or self.path.stat().st_size == 0
        text = pd.DataFrame(rows).reindex(columns=COLUMN_NAMES).to_csv(index=False, header=new)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def _header_is_the_schema(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with open(self.path, encoding="utf-8", newline="") as fh:
            return fh.readline().rstrip("\r\n") == ",".join(COLUMN_NAMES)

    def flush(self, order: list[tuple] | None = None) -> None:
        r"""Rewrite the CSV: rows whose ids are in ``order`` first, in that order, then the rest."""
        ids = list(self.rows)
        if order is not None:
            rank = {rid: i for i, rid in enumerate(order)}
            ids.sort(key=lambda rid: (0, rank[rid]) if rid in rank else (1, 0))
        df = pd.DataFrame([self.rows[rid] for rid in ids])
        df = df.reindex(columns=COLUMN_NAMES + [c for c in df.columns if c not in COLUMN_NAMES])
        write_atomic(self.path, df.to_csv(index=False))
