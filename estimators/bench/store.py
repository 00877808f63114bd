r"""Results on disk: the tidy CSV (rewritten atomically after every finished unit, so a long run
never loses work and resumes where it stopped) and the cache of exact references.

Atomic write: the whole CSV goes to a temporary file in the same folder, is flushed to disk and
then renamed over the old one with ``os.replace`` (atomic on POSIX), so a reader or a crash never
sees a half-written file. Floats are written with ``repr`` precision and read back with pandas'
round-trip parser, so a resumed run's rows are bit-identical to those it wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import row_id_of

__all__ = ["COLUMNS", "ResultStore", "read_results", "write_atomic", "ReferenceCache", "check_writable",
           "probe_writable"]

# Column order of the CSV. SPEC requires the first block; the rest are documented in report.py.
COLUMNS = [
    "scenario", "quantity", "estimator", "N", "D", "batch_size", "k", "replicates",
    "reference", "reference_se", "reference_method", "mean", "bias", "bias_se", "sd", "rmse",
    "time_per_call_s",
    "rel_bias", "rel_bias_se", "sd_se", "rmse_se", "frac_negative", "frac_negative_se",
    "coverage", "coverage_se", "reference_se_ok", "reference_samples",
    "log_N", "log_B", "mws_offset", "bias_sign_theory", "bias_sign_ok", "predicted_bias",
    "family", "published_variant", "separation", "scenario_seed", "dtype", "seed", "unit_seed",
    "status", "error",
]


_TEXT = ("scenario", "quantity", "estimator", "reference_method", "bias_sign_theory", "family", "dtype",
         "status", "error")
# pandas >= 3 parses floats exactly by default (and deprecates the option); older ones need it.
_ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    r"""Read a results CSV exactly as written (round-trip floats); empty frame if it is missing."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path, dtype={c: str for c in _TEXT}, **_ROUND_TRIP)
    for col in _TEXT:  # text columns stay text ("0" is a sign, "1e3" a scenario name), blanks ""
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), "")
    return df


def write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    r"""Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    mode = "wb" if isinstance(text, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def probe_writable(folder: str | os.PathLike) -> None:
    r"""Check, without creating anything, that ``folder`` is or can become a writable folder."""
    path = Path(folder).absolute()
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"--out {str(folder)!r} is not a writable folder: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(folder)!r} is not a writable folder: no write permission on {str(existing)!r}")


def check_writable(folder: str | os.PathLike) -> Path:
    r"""Create ``folder`` if needed and prove it writable, or raise a ValueError naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"--out {str(folder)!r} is not a writable folder: {exc.strerror or exc}") from exc
    return folder


class ResultStore:
    r"""The rows of one results CSV, keyed by row identity (see :func:`grid.row_id_of`).

    Rows not produced by the current grid are kept untouched. :meth:`put` replaces rows with the
    same identity and rewrites the file atomically.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[tuple, dict] = {}
        df = read_results(self.path)
        missing = [c for c in ("scenario", "N", "D", "separation", "scenario_seed", "estimator", "batch_size", "k",
                               "dtype", "quantity", "replicates", "seed", "status") if c not in df.columns]
        if len(df.columns) and missing:
            raise ValueError(f"{str(self.path)!r} exists but is not a benchmark CSV (no column {missing[0]!r}); "
                             "choose another --name or --out")
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

    def flush(self, order: list[tuple] | None = None) -> None:
        r"""Rewrite the CSV: rows whose ids are in ``order`` first, in that order, then the rest."""
        ids = list(self.rows)
        if order is not None:
            rank = {rid: i for i, rid in enumerate(order)}
            ids.sort(key=lambda rid: (0, rank[rid]) if rid in rank else (1, 0))
        df = pd.DataFrame([self.rows[rid] for rid in ids])
        df = df.reindex(columns=COLUMNS + [c for c in df.columns if c not in COLUMNS])
        write_atomic(self.path, df.to_csv(index=False))

    def frame(self) -> pd.DataFrame:
        return read_results(self.path)


def _source_hash(module) -> str:
    r"""Hash of a module's source file: a cached value is stale once the code that made it changes."""
    try:
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:16]
    except (OSError, AttributeError, TypeError):
        return "unknown"


class ReferenceCache:
    r"""Exact references on disk, keyed by the posterior arrays themselves (float64 bytes), the
    reference settings and the source of the module that computed them."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def key(self, mu, logvar, settings: dict, module=None) -> str:
        h = hashlib.sha256()
        for a in (mu, logvar):
            arr = np.ascontiguousarray(np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64))
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        h.update(json.dumps(settings, sort_keys=True).encode())
        h.update(_source_hash(module).encode())
        return h.hexdigest()[:24]

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a corrupt cache entry is recomputed

    def put(self, key: str, value: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / f"{key}.json", json.dumps(_jsonable(value), indent=1, sort_keys=True))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
