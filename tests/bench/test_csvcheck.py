"""The schema check of a results CSV when it is read: one line naming the file, the line (1-based,
the header is line 1) and the column, from the store, the report, the comparison and the command line."""
import shutil

import pytest

from estimators.bench.compare import compare_results
from estimators.bench.csvcheck import check_csv
from estimators.bench.report import load_results, write_report
from estimators.bench.schema import COLUMN_NAMES
from estimators.bench.store import ResultStore, read_results
from estimators.cli import main


@pytest.fixture
def good(tiny_run, tmp_path):
    """A copy of the TINY run's CSV (80 rows) in a folder of its own."""
    folder = tmp_path / "res"
    folder.mkdir()
    shutil.copy(tiny_run[0] / "t.csv", folder / "t.csv")
    return folder / "t.csv"


def _edit(path, line: int, column: str, value: str):
    """Set one cell (line is 1-based, as an editor shows it; the header is line 1)."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[line - 1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


def _readers(path):
    """Every way a CSV is read: the store, the report, the comparison."""
    return {"read_results": lambda: read_results(path), "store": lambda: ResultStore(path),
            "report": lambda: load_results(path.parent), "compare": lambda: compare_results(path, path)}


@pytest.mark.parametrize("column, value, problem", [
    ("bias", "abc", "'abc' is not a number"),
    ("batch_size", "4.5", "'4.5' is not an integer"),
    ("N", "", "blank, expected an integer"),
    ("reference_se_ok", "yes", "'yes' is not True, False or blank"),
])
def test_a_bad_cell_names_file_line_and_column(good, column, value, problem):
    _edit(good, 17, column, value)
    for who, read in _readers(good).items():
        with pytest.raises(ValueError) as exc:
            read()
        message = str(exc.value)
        assert f"{good} line 17, column {column}: {problem}" in message, who
        assert "\n" not in message, who


def test_a_truncated_last_line(good):
    text = good.read_text()
    good.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # half of the last line, no newline
    n = len(text.splitlines())
    for who, read in _readers(good).items():
        if who == "store":
            continue  # the store owns the file: an append cut short is dropped (below)
        with pytest.raises(ValueError, match=rf"line {n}: \d+ fields, fewer than the {len(COLUMN_NAMES)} columns of "
                                             r"the header \(a truncated line\?\)") as exc:
            read()
        assert str(good) in str(exc.value), who
    store = ResultStore(good)  # reopening for a run drops the cut line and keeps every finished row
    assert len(store.rows) == n - 2 and good.read_text() == "".join(text.splitlines(keepends=True)[:-1])


def test_empty_and_header_only_files(good):
    header = good.read_text().splitlines(keepends=True)[0]
    good.write_text(header)
    assert len(read_results(good)) == 0 and ResultStore(good).rows == {}  # no rows: fine
    assert load_results(good.parent)["t"].empty and compare_results(good, good).ok
    good.write_text("")
    for who, read in _readers(good).items():
        with pytest.raises(ValueError, match="line 1: cannot read it as a CSV: the file is empty") as exc:
            read()
        assert str(good) in str(exc.value), who


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.replace(",bias,", ",bias_x,"), "line 1: unknown column 'bias_x'"),
    (lambda h: h.replace(",rmse,", ",bias,"), "line 1: column 'bias' appears twice in the header"),
])
def test_unknown_and_duplicate_columns(good, edit, message):
    lines = good.read_text().splitlines(keepends=True)
    good.write_text(edit(lines[0]) + "".join(lines[1:]))
    for who in ("read_results", "store", "report"):
        with pytest.raises(ValueError, match=message):
            _readers(good)[who]()


def test_missing_columns(good):
    import pandas as pd

    df = pd.read_csv(good, dtype=str, keep_default_na=False)
    df.drop(columns="sd").to_csv(good, index=False)
    with pytest.raises(ValueError, match="line 1: missing column 'sd'"):
        read_results(good)
    assert compare_results(good, good).ok  # the comparison reports other column sets, it does not refuse them
    df.drop(columns="quantity").to_csv(good, index=False)
    with pytest.raises(ValueError, match="line 1: missing column 'quantity'"):
        compare_results(good, good)


def test_the_committed_report_passes():
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "results" / "standard.csv"
    if not committed.exists():
        pytest.skip("results/standard.csv not generated")
    header, rows = check_csv(committed)
    assert len(header) == len(COLUMN_NAMES) and len(rows) > 1000


def test_commands_say_it_in_one_error_line(good, capsys):
    _edit(good, 17, "bias", "abc")
    want = f"error: {good} line 17, column bias: 'abc' is not a number"
    assert main(["report", "--out", str(good.parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(want) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    args = ["bench", "--scenarios", "gaussian", "--estimators", "naive", "--batch-sizes", "4", "--replicates", "2",
            "--N", "8", "--D", "2", "--reference-samples", "4", "--no-progress", "--out", str(good.parent),
            "--name", "t"]
    before = good.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(want) and len(err.strip().splitlines()) == 1
    assert good.read_bytes() == before  # left as it was
    assert main(["compare", str(good), str(good)]) == 2
    assert capsys.readouterr().err.startswith(want)


def test_the_report_of_a_header_only_csv(good, tmp_path):
    # a folder with only a header-only CSV has no results to report (and says so)
    good.write_text(good.read_text().splitlines(keepends=True)[0])
    with pytest.raises(FileNotFoundError, match="no results CSV"):
        write_report(good.parent, draw=False)
