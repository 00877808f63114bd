"""The one CSV schema: the committed report's header, kinds, meanings, and the generated docs/csv.md."""
from pathlib import Path

import pytest

from estimators.bench.report.columns import REGENERATE, columns_table, csv_doc
from estimators.bench.schema import COLUMN_NAMES, COLUMNS, KINDS, Column, column, columns_of_kind

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_the_committed_header():
    header = (ROOT / "results" / "standard.csv").read_text().splitlines()[0]
    assert header.split(",") == COLUMN_NAMES


def test_every_column_has_a_kind_and_a_meaning():
    assert len(set(COLUMN_NAMES)) == len(COLUMNS)
    for c in COLUMNS:
        assert c.kind in KINDS and c.meaning.strip(), c.name
    assert column("bias").kind == "float" and column("k").kind == "int" and column("status").kind == "text"
    assert set(columns_of_kind("bool")) == {"reference_se_ok", "bias_sign_ok", "published_variant"}
    with pytest.raises(KeyError, match="no column 'nope'"):
        column("nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        Column("x", "complex", "")


def test_the_column_table_lists_every_column_in_order():
    rows = columns_table().splitlines()[2:]
    assert [r.split(" | ")[0].strip("| `") for r in rows] == COLUMN_NAMES


def test_committed_csv_doc_is_the_generated_text():
    path = ROOT / "docs" / "csv.md"
    assert path.is_file() and path.read_text() == csv_doc(), f"docs/csv.md is stale; regenerate: {REGENERATE}"
