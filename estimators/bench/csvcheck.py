r"""The schema check of a results CSV when it is read (by the store, the report and the comparison).

A file that is not what :mod:`.store` writes -- empty, cut short by a crash or a full disk, edited
by hand, or written by another version of the benchmark -- is rejected with one line that names
the file, the line (1-based, as a text editor numbers it; the header is line 1) and the column::

    results/standard.csv line 17, column bias: 'abc' is not a number

Checked: the file is UTF-8 text with a header line; the header names no column twice and holds
the identity columns of a row (:data:`IDENTITY_COLUMNS`); every row has as many fields as the
header (a shorter last line is a truncated file); every cell of a known column has its kind
(:mod:`.schema`): ``int`` an integer, ``float`` a number or blank, ``bool`` ``True``, ``False`` or
blank. With ``strict`` (the store and the report), the header must also hold exactly the
schema's columns; the comparison reads other column sets and reports them as differences.

A header-only file is fine: a CSV with no rows.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from .schema import COLUMN_NAMES, column

__all__ = ["check_csv", "is_foreign", "IDENTITY_COLUMNS", "CSVError"]

# What a file needs to be a benchmark CSV: the columns of a row's identity (grid.row_id_of) and its status.
IDENTITY_COLUMNS = ("scenario", "N", "D", "separation", "scenario_seed", "estimator", "batch_size", "k", "dtype",
                    "quantity", "replicates", "seed", "status")
_INT = re.compile(r"[+-]?\d+(\.0*)?")  # "4", and "4.0" as pandas writes an int column that once held a NaN
_BOOL = {"True", "False", ""}


class CSVError(ValueError):
    r"""A results CSV that fails the schema check (a ValueError: the command line reports it as one
    ``error:`` line, exit code 2)."""


def _where(path, line: int | None = None, col: str | None = None) -> str:
    text = str(path)
    if line is not None:
        text += f" line {line}"
    if col is not None:
        text += f", column {col}"
    return text


def _cell_problem(kind: str, text: str) -> str | None:
    r"""Why ``text`` is not a cell of ``kind`` (None if it is)."""
    if kind == "float":
        if text == "":
            return None
        try:
            float(text)
        except ValueError:
            return f"{text!r} is not a number"
        if "_" in text or text != text.strip():  # float() accepts "1_0" and " 1"; a CSV reader does not
            return f"{text!r} is not a number"
        return None
    if kind == "int":
        if text == "":
            return "blank, expected an integer"
        if not _INT.fullmatch(text):
            return f"{text!r} is not an integer"
        return None
    if kind == "bool":
        return None if text in _BOOL else f"{text!r} is not True, False or blank"
    return None


def check_csv(path: str | os.PathLike, *, strict: bool = True) -> tuple[list[str], list[list[str]]]:
    r"""Check the results CSV at ``path`` against the schema; its header and rows, as text.

    Args:
        path: an existing file.
        strict: the header must hold exactly the schema's columns (any order); otherwise only the
            identity columns are required and unknown columns are read as text.

    Raises:
        CSVError (a ValueError): one line naming the file, the line and the column of the first
            problem (see the module docstring).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise CSVError(f"{_where(path, 1)}: cannot read it as a CSV: the file is empty (no header line)")
            rows, lines = [], []
            last = reader.line_num
            for fields in reader:
                start, last = last + 1, reader.line_num
                if fields:  # blank lines are skipped, as pandas does
                    rows.append(fields)
                    lines.append(start)
    except IsADirectoryError:
        raise CSVError(f"{path}: cannot read it as a CSV: it is a folder") from None
    except UnicodeDecodeError as exc:
        raise CSVError(f"{path}: cannot read it as a CSV: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise CSVError(f"{_where(path, reader.line_num)}: cannot read it as a CSV: {exc}") from None
    except PermissionError:
        raise CSVError(f"{path}: cannot read it as a CSV: no read permission") from None

    seen = set()
    for name in header:
        if name == "":
            raise CSVError(f"{_where(path, 1)}: a column without a name in the header")
        if name in seen:
            raise CSVError(f"{_where(path, 1)}: column {name!r} appears twice in the header")
        seen.add(name)
    missing = [c for c in IDENTITY_COLUMNS if c not in seen]
    if len(missing) == len(IDENTITY_COLUMNS):
        raise CSVError(f"{path} is not a benchmark CSV: line 1 (the header) has no column {missing[0]!r}")
    if strict:
        missing = [c for c in COLUMN_NAMES if c not in seen]
        unknown = [c for c in header if c not in COLUMN_NAMES]
        if unknown:
            raise CSVError(f"{_where(path, 1)}: unknown column {unknown[0]!r} (not in the results schema, "
                           "see docs/csv.md)")
    if missing:
        raise CSVError(f"{_where(path, 1)}: missing column {missing[0]!r} (a benchmark CSV has "
                       f"{'every schema column' if strict else 'the identity columns'}, see docs/csv.md)")

    kinds = [column(name).kind if name in COLUMN_NAMES else "text" for name in header]
    checked = [(i, name, kind) for i, (name, kind) in enumerate(zip(header, kinds)) if kind != "text"]
    width = len(header)
    for fields, line in zip(rows, lines):
        if len(fields) != width:
            what = "fewer" if len(fields) < width else "more"
            hint = " (a truncated line?)" if len(fields) < width else ""
            raise CSVError(f"{_where(path, line)}: {len(fields)} fields, {what} than the {width} columns of the "
                           f"header{hint}")
        for i, name, kind in checked:
            problem = _cell_problem(kind, fields[i])
            if problem is not None:
                raise CSVError(f"{_where(path, line, name)}: {problem}")
    return header, rows



def is_foreign(path: str | os.PathLike) -> bool:
    r"""Whether ``path`` is a readable CSV of someone else: a header line without any identity column.

    An empty or unreadable file is not foreign (:func:`check_csv` then says what is wrong with it)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return header is not None and not set(header) & set(IDENTITY_COLUMNS)
