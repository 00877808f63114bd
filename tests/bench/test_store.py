"""The CSV store: schema column order, exact round trip (floats and text), rows kept by identity,
atomic rewrites, and a foreign CSV left alone."""
import math
import os

import pytest

from estimators.bench.schema import COLUMN_NAMES
from estimators.bench.store import ResultStore, read_results
from estimators.bench.tasks import AggregateUnit, LogPxUnit


def _rows():
    agg = AggregateUnit("1e3", 40, 3, 0.6, 0, "mss", 4, None, ("mi", "tc"), 5, "float64", 0)
    px = LogPxUnit("fa-d2-exact", 2, "iwae", 4, 8, "float64", 0)
    rows = [agg.base_row("mi"), agg.base_row("tc"), px.base_row("log_px")]
    for i, row in enumerate(rows):
        row.update(mean=0.1 + 1 / 3 + i, bias=math.pi * 1e-17, bias_sign_theory="0" if i else "+",
                   bias_sign_ok=None if i == 1 else True, reference_se_ok=True)
    return (agg, px), rows


def test_round_trip_is_exact_and_in_schema_order(tmp_path):
    (agg, px), rows = _rows()
    store = ResultStore(tmp_path / "r.csv")
    store.put(rows)
    df = read_results(tmp_path / "r.csv")
    assert list(df.columns) == COLUMN_NAMES
    assert df["mean"].tolist() == [r["mean"] for r in rows] and df["bias"].tolist() == [math.pi * 1e-17] * 3
    assert df["scenario"].tolist() == ["1e3", "1e3", "fa-d2-exact"]  # text stays text
    assert df["bias_sign_theory"].tolist() == ["+", "0", "0"] and df["error"].tolist() == ["", "", ""]
    assert math.isnan(df["separation"].iloc[2]) and df["k"].tolist() == [0, 0, 4]
    assert df["batch_size"].tolist() == [4, 4, 0]
    again = ResultStore(tmp_path / "r.csv")
    assert again.is_done(agg) and again.is_done(px)
    before = (tmp_path / "r.csv").read_bytes()
    again.flush()
    assert (tmp_path / "r.csv").read_bytes() == before  # reading and rewriting changes nothing


def test_rows_are_replaced_by_identity_and_ordered(tmp_path):
    (agg, px), rows = _rows()
    store = ResultStore(tmp_path / "r.csv")
    store.put(rows[:2])
    order = [px.row_id("log_px"), agg.row_id("tc"), agg.row_id("mi")]
    changed = dict(rows[0], mean=7.0)
    store.put([rows[2], changed], order)
    df = read_results(tmp_path / "r.csv")
    assert df["quantity"].tolist() == ["log_px", "tc", "mi"] and df["mean"].iloc[2] == 7.0
    # an error row is not done: it is retried
    store.put([dict(rows[2], status="error", error="boom")], order)
    assert not ResultStore(tmp_path / "r.csv").is_done(px)


def test_writes_are_atomic(tmp_path, monkeypatch):
    # a crash after the new text is written but before it replaces the file leaves the old file
    _, rows = _rows()
    store = ResultStore(tmp_path / "r.csv")
    store.put(rows)
    before = (tmp_path / "r.csv").read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put([dict(rows[0], mean=99.0)])
    assert (tmp_path / "r.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]  # no temporary left behind


def test_missing_and_foreign_files(tmp_path):
    assert list(read_results(tmp_path / "none.csv").columns) == COLUMN_NAMES
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a benchmark CSV"):
        ResultStore(tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_text() == "a,b\n1,2\n"


def test_append_writes_whole_lines_and_reads_back_exactly(tmp_path):
    """Appended rows read back bit-identical; the final flush gives the same file as rewriting every time."""
    (agg, px), rows = _rows()
    store = ResultStore(tmp_path / "a.csv")
    store.append(rows[:2])
    store.append(rows[2:])
    text = (tmp_path / "a.csv").read_text()
    assert text.count("\n") == 4 and text.startswith(",".join(COLUMN_NAMES) + "\n")  # one header, three rows
    again = ResultStore(tmp_path / "a.csv")
    assert again.is_done(agg) and again.is_done(px)
    ResultStore(tmp_path / "p.csv").put(rows)
    again.flush()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()


def test_a_later_appended_row_supersedes_and_a_cut_line_is_dropped(tmp_path):
    (agg, px), rows = _rows()
    path = tmp_path / "a.csv"
    store = ResultStore(path)
    store.append([dict(rows[2], status="error", error="boom")])
    store.append(rows[:2])
    store.append([rows[2]])  # the retried cell, now ok
    with open(path, "a") as fh:  # a crash in the middle of the next append
        fh.write("1e3,mi,mss,40,3,4,0,5,0.5")
    reopened = ResultStore(path)
    assert reopened.is_done(px) and reopened.is_done(agg) and len(reopened.rows) == 3
    assert path.read_text().endswith("\n")  # the partial line is gone, the finished rows kept
    assert len(read_results(path)) == 4  # the superseded error row is still a line until the final flush
    reopened.flush()
    assert len(read_results(path)) == 3


def test_append_to_a_file_in_another_column_order_rewrites_it(tmp_path):
    (agg, px), rows = _rows()
    path = tmp_path / "a.csv"
    ResultStore(path).put(rows[:2])
    cols = COLUMN_NAMES[::-1]
    import pandas as pd
    df = pd.read_csv(path, dtype=str, keep_default_na=False)[cols]
    df.to_csv(path, index=False)
    store = ResultStore(path)
    store.append(rows[2:])
    assert path.read_text().splitlines()[0] == ",".join(COLUMN_NAMES) and len(read_results(path)) == 3
