r"""Cell-by-cell comparison of two results CSVs: a recomputed report against the committed one.

Rows are matched by their cell identity (the unit-key columns, the quantity, replicates and seed),
columns by name. Each cell is compared by its column's kind (:mod:`.schema`):

* ``int`` and ``float``: equal within floating-point noise, ``|new - committed| <= atol + rtol
  |committed|``; NaN (a blank cell) equals NaN, and infinities equal themselves;
* ``text`` and ``bool``, and columns the schema does not know: the same text.

Rows missing from the new file, columns missing from it, and a different order of the rows or of
the columns are disagreements too; rows or columns only in the new file are reported as extra.
Both files are read as text, so what is compared is exactly what is written.

Rows of estimators that train a network (the density ratio's discriminator: ``needs_steps`` in
:data:`estimators.direct.DIRECT_ESTIMATORS`) are reproducible on one kind of CPU only: the matrix
products' rounding depends on the vector instructions, and a training amplifies it (1e-4 nats after
300 steps, measured between an AVX-512 and an AVX2 machine). Their statistics are compared as such:
``mean``, ``bias`` and ``rel_bias`` within :data:`Z_TRAINED` combined standard errors (``bias_se``,
``rel_bias_se`` of both files), ``sd``, ``rmse``, ``frac_negative`` and ``coverage`` within Z_TRAINED
combined se's of their own; the standard-error columns are estimates of a spread from a few trainings
and are not compared. Every other cell of those rows (the cell identity, the reference, counts and
text) is compared as usual.

"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import pandas as pd

from .csvcheck import IDENTITY_COLUMNS, check_csv
from .schema import COLUMN_NAMES, column

__all__ = ["Difference", "Comparison", "compare_results", "read_text_csv", "RTOL", "ATOL", "Z_TRAINED",
           "trained_estimators"]

RTOL = 1e-9
ATOL = 1e-9
Z_TRAINED = 4.4  # two-sided 1e-5 per cell: a handful of such cells per report, a false alarm per ~10^4 runs
# the columns of a trained row compared within Z_TRAINED combined se's, and the se column of each
_TRAINED_STATISTICS = {"mean": "bias_se", "bias": "bias_se", "rel_bias": "rel_bias_se", "sd": "sd_se",
                       "rmse": "rmse_se", "frac_negative": "frac_negative_se", "coverage": "coverage_se"}
_TRAINED_SPREADS = ("bias_se", "rel_bias_se", "sd_se", "rmse_se", "frac_negative_se", "coverage_se")
_REL_FLOOR = 1e-6  # relative differences are reported for |committed| >= this (below it they measure rounding)
_LABEL = ("scenario", "separation", "quantity", "estimator", "batch_size", "k")


def _kind(name: str) -> str:
    return column(name).kind if name in COLUMN_NAMES else "text"


def read_text_csv(path: str | os.PathLike) -> pd.DataFrame:
    r"""A benchmark CSV with every cell as written (text; blank = ""), or one clear error.

    The file is checked against the schema (:func:`.csvcheck.check_csv`, not strict: columns the
    schema does not know, and missing ones other than the identity columns, are compared and
    reported, not refused).

    Raises:
        FileNotFoundError: no such file. ValueError: not a readable benchmark CSV (one line naming
        the file, the line and the column).
    """
    header, rows = check_csv(path, strict=False)
    return pd.DataFrame(rows, columns=header, dtype=object)


def _number(text: str) -> float | None:
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _key_part(name: str, text: str) -> str:
    if _kind(name) in ("int", "float"):
        x = _number(text)
        if x is not None:
            return "" if math.isnan(x) else repr(x)
    return text


@dataclass(frozen=True)
class Difference:
    r"""One cell that differs: where (row label and column) and both texts."""

    cell: str
    column: str
    new: str
    committed: str


@dataclass
class Comparison:
    r"""The outcome of :func:`compare_results`; :attr:`ok` when every committed cell agrees."""

    new_path: str
    committed_path: str
    rtol: float
    atol: float
    ignored: list[str]
    rows: int = 0  # rows of the committed file
    columns: list[str] = field(default_factory=list)  # compared columns of the committed file
    agree: int = 0
    differences: list[Difference] = field(default_factory=list)
    missing_rows: list[str] = field(default_factory=list)  # in the committed file only
    extra_rows: list[str] = field(default_factory=list)  # in the new file only
    duplicate_rows: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    row_order: str = ""  # where the order of the common rows first differs ("" if it does not)
    column_order: str = ""
    largest_abs: tuple = (0.0, "", "")  # (|new - committed| / tolerance, column, cell) over the agreeing numbers
    largest_rel: tuple = (0.0, "", "")  # (|new - committed| / |committed|, column, cell) where |committed| >= 1e-6
    statistical: int = 0  # cells of trained rows compared within Z_TRAINED se's, or left out (their se's)

    @property
    def cells(self) -> int:
        r"""Cells of the committed file that are compared (every column but the ignored ones)."""
        return self.rows * len(self.columns)

    @property
    def ok(self) -> bool:
        return (self.agree == self.cells and not self.differences and not self.missing_rows
                and not self.extra_rows and not self.duplicate_rows and not self.missing_columns
                and not self.extra_columns and not self.row_order and not self.column_order)

    def lines(self, limit: int = 50) -> list[str]:
        r"""A readable report: the agreement line, the largest differences, then every disagreement
        (at most ``limit`` of each kind)."""
        rule = (f"numbers within |new - committed| <= {self.atol:g} + {self.rtol:g} |committed|, NaN = NaN; "
                "text and bool exactly")
        ignored = f"; ignored: {', '.join(self.ignored)}" if self.ignored else ""
        out = [f"{self.agree} of {self.cells} cells agree ({self.rows} rows x {len(self.columns)} columns of "
               f"{self.committed_path}{ignored}; {rule})"]
        if self.statistical:
            out.append(f"{self.statistical} of them statistics of network trainings (CPU-dependent rounding): "
                       f"their means, sd, rmse and fractions within {Z_TRAINED:g} combined se, their se's not compared")
        if self.largest_abs[1]:
            value, col, cell = self.largest_abs
            out.append(f"largest difference among agreeing numbers: {value:.3g} of the tolerance ({col}, {cell})")
        if self.largest_rel[1]:
            value, col, cell = self.largest_rel
            out.append(f"largest relative difference where |committed| >= {_REL_FLOOR:g}: {value:.3g} ({col}, {cell})")
        if self.column_order:
            out.append(f"columns in a different order: {self.column_order}")
        if self.row_order:
            out.append(f"rows in a different order: {self.row_order}")
        for title, items in (("column missing from the new file", self.missing_columns),
                             ("extra column in the new file", self.extra_columns),
                             ("row missing from the new file", self.missing_rows),
                             ("extra row in the new file", self.extra_rows),
                             ("duplicate row", self.duplicate_rows)):
            out += [f"{title}: {item}" for item in items[:limit]]
            if len(items) > limit:
                out.append(f"... and {len(items) - limit} more ({title})")
        if self.differences:
            out.append(f"{len(self.differences)} cell(s) differ:")
            out += [f"  {d.cell}: {d.column}: new {d.new or '(blank)'} != committed {d.committed or '(blank)'}"
                    for d in self.differences[:limit]]
            if len(self.differences) > limit:
                out.append(f"  ... and {len(self.differences) - limit} more")
        out.append("agree" if self.ok else "DIFFER")
        return out


def _agree(kind: str, new: str, old: str, rtol: float, atol: float) -> tuple[bool, float | None]:
    r"""Whether two cell texts agree, and |new - old| where both are finite numbers."""
    if new == old:
        return True, 0.0 if kind in ("int", "float") and old not in ("", "nan") else None
    if kind in ("int", "float"):
        a, b = _number(new), _number(old)
        if a is not None and b is not None:
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b), None
            if math.isinf(a) or math.isinf(b):
                return a == b, None
            diff = abs(a - b)
            return diff <= atol + rtol * abs(b), diff
    return False, None


def trained_estimators() -> frozenset[str]:
    r"""The estimators whose rows are compared statistically: those that train a network."""
    from ..direct import DIRECT_ESTIMATORS

    return frozenset(name for name, info in DIRECT_ESTIMATORS.items() if info.needs_steps)


def _agree_trained(column: str, cur: dict, old: dict) -> bool | None:
    r"""A trained row's statistic within Z_TRAINED combined se's (True / False), or None where the rule
    does not apply (the cell is then compared as usual)."""
    se_col = _TRAINED_STATISTICS.get(column)
    if se_col is None or se_col not in cur or se_col not in old:
        return None
    values = [_number(x) for x in (cur[column], old[column], cur[se_col], old[se_col])]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    a, b, se_a, se_b = values
    return abs(a - b) <= Z_TRAINED * math.hypot(se_a, se_b)


def _order_mismatch(a: list, b: list, label) -> str:
    r"""Where two orderings of the same items first differ ("" if they do not)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"position {i + 1}: {label(x)} in the new file, {label(y)} in the committed one"
    return ""


def compare_results(new: str | os.PathLike, committed: str | os.PathLike, *, ignore=(), rtol: float = RTOL,
                    atol: float = ATOL) -> Comparison:
    r"""Compare the results CSV ``new`` with ``committed`` cell by cell (see the module docstring).

    Args:
        new, committed: the two CSVs (``committed`` is the one the tolerances are relative to).
        ignore: columns left out (e.g. ``time_per_call_s``, which depends on the machine).
        rtol, atol: the tolerance of numeric cells, both >= 0.

    Raises:
        FileNotFoundError, ValueError: a file that does not exist or is not a benchmark CSV; a bad
        tolerance.
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    ignore = list(dict.fromkeys(ignore))
    a, b = read_text_csv(new), read_text_csv(committed)
    unknown = [c for c in ignore if c not in a.columns and c not in b.columns]
    if unknown:
        raise ValueError(f"cannot ignore column {unknown[0]!r}: neither file has it")
    result = Comparison(str(new), str(committed), float(rtol), float(atol), ignore)

    cols_a = [c for c in a.columns if c not in ignore]
    cols_b = [c for c in b.columns if c not in ignore]
    result.columns = cols_b
    result.rows = len(b)
    result.missing_columns = [c for c in cols_b if c not in set(cols_a)]
    result.extra_columns = [c for c in cols_a if c not in set(cols_b)]
    common_cols = [c for c in cols_b if c in set(cols_a)]
    result.column_order = _order_mismatch([c for c in cols_a if c in set(common_cols)], common_cols, repr)

    key_cols = [c for c in IDENTITY_COLUMNS if c != "status"]

    def keyed(df: pd.DataFrame) -> tuple[dict, list, list]:
        rows: dict[tuple, dict] = {}
        order, dupes = [], []
        for i, rec in enumerate(df.to_dict("records")):
            key = tuple(_key_part(c, rec[c]) for c in key_cols)
            label = f"row {i + 1} (" + ", ".join(f"{c}={rec[c]}" for c in _LABEL if rec.get(c, "") != "") + ")"
            if key in rows:
                dupes.append(label)
            else:
                rows[key] = {"label": label, "rec": rec}
                order.append(key)
        return rows, order, dupes

    rows_a, order_a, dup_a = keyed(a)
    rows_b, order_b, dup_b = keyed(b)
    result.duplicate_rows = [f"{x} of {new}" for x in dup_a] + [f"{x} of {committed}" for x in dup_b]
    result.missing_rows = [rows_b[k]["label"] for k in order_b if k not in rows_a]
    result.extra_rows = [rows_a[k]["label"] for k in order_a if k not in rows_b]
    common = [k for k in order_b if k in rows_a]
    result.row_order = _order_mismatch([k for k in order_a if k in rows_b], common,
                                       lambda k: rows_b[k]["label"])

    kinds = {c: _kind(c) for c in common_cols}
    trained = trained_estimators()
    best_abs, best_rel = result.largest_abs, result.largest_rel
    for k in common:
        old, cur = rows_b[k]["rec"], rows_a[k]["rec"]
        label = rows_b[k]["label"]
        statistical = old.get("estimator") in trained
        for c in common_cols:
            if statistical and c in _TRAINED_SPREADS:
                result.agree += 1  # a spread estimated from a few trainings: not compared
                result.statistical += 1
                continue
            close = _agree_trained(c, cur, old) if statistical else None
            if close is not None:
                result.statistical += 1
                if close:
                    result.agree += 1
                else:
                    result.differences.append(Difference(label, c, cur[c], old[c]))
                continue
            ok, diff = _agree(kinds[c], cur[c], old[c], rtol, atol)
            if not ok:
                result.differences.append(Difference(label, c, cur[c], old[c]))
                continue
            result.agree += 1
            if diff:
                scale = abs(float(old[c]))
                used = diff / (atol + rtol * scale) if atol + rtol * scale > 0 else math.inf
                if used > best_abs[0]:
                    best_abs = (used, c, f"{label}: new {cur[c]}, committed {old[c]}")
                if scale >= _REL_FLOOR and diff / scale > best_rel[0]:
                    best_rel = (diff / scale, c, label)
    result.largest_abs, result.largest_rel = best_abs, best_rel
    return result
