"""Cell-by-cell comparison of two results CSVs: agreement within the stated tolerance, every
difference located, missing and extra rows and columns, order, and unreadable files."""
from pathlib import Path

import pytest

from estimators.bench.compare import compare_results
from estimators.bench.schema import COLUMN_NAMES

NCOL = len(COLUMN_NAMES)  # columns of the schema

COMMITTED = Path(__file__).resolve().parents[2] / "results" / "standard.csv"


@pytest.fixture
def committed(tmp_path):
    """The header and 40 rows of the committed report (aggregate and log p(x) rows)."""
    lines = COMMITTED.read_text().splitlines(keepends=True)
    rows = lines[1:21] + [line for line in lines if ",log_px," in line][:20]
    path = tmp_path / "committed.csv"
    path.write_text(lines[0] + "".join(rows))
    return path


def _edit(src: Path, dst: Path, row: int, col: str, value: str) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[row].rstrip("\n").split(",")
    cells[header.index(col)] = value
    lines[row] = ",".join(cells) + "\n"
    dst.write_text("".join(lines))
    return dst


def test_identical_files_agree(committed):
    r = compare_results(committed, committed)
    assert r.ok and r.agree == r.cells == 40 * NCOL and not r.differences
    assert r.lines()[0].startswith(f"{40 * NCOL} of {40 * NCOL} cells agree (40 rows x {NCOL} columns")
    assert r.lines()[-1] == "agree"


def test_noise_within_the_tolerance_agrees_and_is_reported(committed, tmp_path):
    lines = committed.read_text().splitlines()
    value = float(lines[3].split(",")[lines[0].split(",").index("bias")])  # row 3's bias
    noisy = _edit(committed, tmp_path / "noisy.csv", 3, "bias", repr(value * (1 + 1e-12)))
    r = compare_results(noisy, committed)
    assert r.ok and r.largest_rel[1] == "bias" and 0 < r.largest_rel[0] < 1e-11
    assert any(line.startswith("largest relative difference") for line in r.lines())


def test_a_perturbed_cell_is_located(committed, tmp_path):
    bad = _edit(committed, tmp_path / "bad.csv", 5, "mean", "1.5")
    r = compare_results(bad, committed)
    assert not r.ok and r.agree == r.cells - 1 and len(r.differences) == 1
    d = r.differences[0]
    assert d.column == "mean" and d.new == "1.5" and d.cell.startswith("row 5 (scenario=collapsed")
    assert "1 cell(s) differ:" in r.lines() and r.lines()[-1] == "DIFFER"
    # beyond atol + rtol |b| only: a looser tolerance accepts it
    assert compare_results(bad, committed, rtol=10.0).ok


def test_text_bool_and_blank_cells_compare_exactly(committed, tmp_path):
    for col, value in (("reference_method", "closed"), ("reference_se_ok", "False"), ("coverage", "")):
        r = compare_results(_edit(committed, tmp_path / "x.csv", 2, col, value), committed)
        assert [d.column for d in r.differences] == [col], col


def test_ignored_columns_are_left_out(committed, tmp_path):
    slow = _edit(committed, tmp_path / "slow.csv", 4, "time_per_call_s", "1000.0")
    assert not compare_results(slow, committed).ok
    r = compare_results(slow, committed, ignore=["time_per_call_s"])
    from estimators.bench.schema import COLUMN_NAMES
    assert r.ok and r.cells == 40 * (len(COLUMN_NAMES) - 1) and "ignored: time_per_call_s" in r.lines()[0]
    with pytest.raises(ValueError, match="cannot ignore column 'nope'"):
        compare_results(slow, committed, ignore=["nope"])


def test_missing_extra_and_reordered_rows(committed, tmp_path):
    lines = committed.read_text().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:7] + lines[8:]))  # row 7 dropped
    r = compare_results(short, committed)
    assert not r.ok and len(r.missing_rows) == 1 and r.missing_rows[0].startswith("row 7 (")
    assert r.agree == r.cells - NCOL
    r = compare_results(committed, short)
    assert not r.ok and len(r.extra_rows) == 1 and r.agree == r.cells
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("".join(lines[:2] + [lines[3], lines[2]] + lines[4:]))
    r = compare_results(swapped, committed)
    assert not r.ok and r.agree == r.cells and r.row_order.startswith("position 2:")
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("".join(lines + lines[1:2]))
    assert compare_results(doubled, committed).duplicate_rows


def test_missing_and_extra_columns(committed, tmp_path):
    import pandas as pd

    df = pd.read_csv(committed, dtype=str, keep_default_na=False)
    df.drop(columns="sd").assign(extra="1").to_csv(tmp_path / "cols.csv", index=False)
    r = compare_results(tmp_path / "cols.csv", committed)
    assert not r.ok and r.missing_columns == ["sd"] and r.extra_columns == ["extra"]
    assert r.agree == r.cells - 40
    df[list(df.columns[::-1])].to_csv(tmp_path / "rev.csv", index=False)
    r = compare_results(tmp_path / "rev.csv", committed)
    assert not r.ok and r.agree == r.cells and r.column_order


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "cannot read"),
    (b"\xff\xfe\x00garbage", "cannot read"),
    ("a,b\n1,2\n", "is not a benchmark CSV"),
])
def test_unreadable_files_raise_one_clear_error(committed, tmp_path, content, message):
    path = tmp_path / "x.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        compare_results(path, committed)
    with pytest.raises(ValueError, match="cannot read"):
        compare_results(tmp_path, committed)  # a folder
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        compare_results(committed, committed, rtol=-1.0)


@pytest.fixture
def trained(tmp_path):
    """The header and the committed report's density-ratio rows (a trained discriminator each)."""
    lines = COMMITTED.read_text().splitlines(keepends=True)
    rows = [line for line in lines if ",density_ratio," in line]
    assert rows, "the committed report has density-ratio rows"
    path = tmp_path / "trained.csv"
    path.write_text(lines[0] + "".join(rows))
    return path


def _cell(path: Path, row: int, col: str) -> float:
    lines = path.read_text().splitlines()
    return float(lines[row].split(",")[lines[0].split(",").index(col)])


def test_trained_rows_compare_their_statistics_within_their_standard_errors(trained, tmp_path):
    from estimators.bench.compare import Z_TRAINED

    mean, se = _cell(trained, 1, "mean"), _cell(trained, 1, "bias_se")
    limit = Z_TRAINED * se * 2 ** 0.5  # the same se in both files
    near = _edit(trained, tmp_path / "near.csv", 1, "mean", repr(mean + 0.9 * limit))
    near = _edit(near, near, 1, "bias_se", repr(se * 1.3))  # a spread: not compared
    r = compare_results(near, trained)
    assert r.ok and r.statistical > 0
    assert any("statistics of network trainings" in line for line in r.lines())
    far = _edit(trained, tmp_path / "far.csv", 1, "mean", repr(mean + 1.1 * limit))
    r = compare_results(far, trained)
    assert not r.ok and [d.column for d in r.differences] == ["mean"]
    # the cell identity and everything but the statistics stay exact
    other = _edit(trained, tmp_path / "other.csv", 1, "reference", repr(_cell(trained, 1, "reference") + 1e-6))
    assert [d.column for d in compare_results(other, trained).differences] == ["reference"]


def test_rows_of_estimators_that_train_nothing_stay_exact(committed, tmp_path):
    mean, se = _cell(committed, 5, "mean"), _cell(committed, 5, "bias_se")
    moved = _edit(committed, tmp_path / "moved.csv", 5, "mean", repr(mean + 0.01 * se + 1e-6))
    r = compare_results(moved, committed)
    assert not r.ok and r.statistical == 0
