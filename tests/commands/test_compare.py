"""``python -m estimators compare``: exit 0 when every cell agrees, 1 with every difference listed,
2 with one error line when a file cannot be read."""
import subprocess
import sys
from pathlib import Path

import pytest

from estimators.bench.schema import COLUMN_NAMES

COMMITTED = Path(__file__).resolve().parents[2] / "results" / "standard.csv"


@pytest.fixture
def pair(tmp_path):
    """A 30-row slice of the committed report, and a copy of it."""
    lines = COMMITTED.read_text().splitlines(keepends=True)[:31]
    a, b = tmp_path / "new.csv", tmp_path / "committed.csv"
    a.write_text("".join(lines))
    b.write_text("".join(lines))
    return a, b


def test_identical_files_agree(cli, pair):
    code, out, err = cli("compare", *pair, "--ignore", "time_per_call_s")
    assert code == 0 and err == ""
    lines = out.splitlines()
    n = len(COLUMN_NAMES) - 1  # time_per_call_s ignored
    assert lines[0].startswith(f"{30 * n} of {30 * n} cells agree (30 rows x {n} columns")
    assert "ignored: time_per_call_s" in lines[0] and "<= 1e-09 + 1e-09 |committed|" in lines[0]
    assert lines[-1] == "agree"


def test_a_perturbed_cell_is_listed_and_exits_1(cli, pair):
    new, committed = pair
    lines = new.read_text().splitlines(keepends=True)
    cells = lines[4].split(",")
    rmse = COLUMN_NAMES.index("rmse")
    cells[rmse] = repr(float(cells[rmse]) * (1 + 1e-6))  # rmse of row 4, far beyond the noise
    lines[4] = ",".join(cells)
    new.write_text("".join(lines))
    code, out, err = cli("compare", new, committed)
    assert code == 1 and err == ""
    n = len(COLUMN_NAMES)
    assert out.splitlines()[0].startswith(f"{30 * n - 1} of {30 * n} cells agree")
    listed = [line for line in out.splitlines() if line.startswith("  row 4 (")]
    assert len(listed) == 1 and ": rmse: new " in listed[0] and "!= committed" in listed[0]
    assert cli("compare", new, committed, "--rtol", "1e-5")[0] == 0  # within a looser tolerance


def test_missing_and_extra_rows_are_listed(cli, pair):
    new, committed = pair
    lines = new.read_text().splitlines(keepends=True)
    new.write_text("".join(lines[:3] + lines[4:]))
    code, out, _ = cli("compare", new, committed)
    assert code == 1 and "row missing from the new file: row 3 (" in out
    code, out, _ = cli("compare", committed, new)
    assert code == 1 and "extra row in the new file: row 3 (" in out


def test_unreadable_file_is_one_error_line(cli, pair, tmp_path):
    for bad in (tmp_path / "missing.csv", tmp_path):
        code, out, err = cli("compare", bad, pair[1])
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n")
    code, _, err = cli("compare", tmp_path / "foreign.csv", pair[1])
    assert code == 2 and "is not a benchmark CSV" in err
    code, _, err = cli("compare", *pair, "--atol", "nan")
    assert code == 2 and "atol must be a finite number >= 0" in err


@pytest.mark.slow  # a fresh interpreter imports torch
def test_module_entry_point_exit_codes(pair, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "estimators", "compare", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    assert run(*pair).returncode == 0
    done = run(tmp_path / "nope.csv", pair[1])
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "does not exist" in done.stderr
