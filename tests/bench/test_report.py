"""The report: row selection, the Pareto front, plots and README from a CSV alone, and generated
text that cites only documents the user has."""
import shutil

import numpy as np
import pandas as pd
import pytest

from estimators.bench.report import best_by_rmse, latest_cells, pareto_front, terminal_table, write_report
from estimators.bench.schema import COLUMN_NAMES
from estimators.bench.store import read_results


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(3)
    t, e = rng.uniform(size=40), rng.uniform(size=40)
    front = set(pareto_front(t, e).tolist())
    brute = {i for i in range(40) if not any((t[j] <= t[i]) and (e[j] <= e[i]) and j != i for j in range(40))}
    assert front == brute


def test_latest_cells_keeps_the_most_replicates_of_finished_rows():
    base = {"scenario": "s", "separation": 0.5, "quantity": "mi", "estimator": "naive", "batch_size": 8, "k": 0,
            "dtype": "float64"}
    df = pd.DataFrame([dict(base, replicates=10, status="ok", bias=1.0), dict(base, replicates=20, status="ok", bias=2.0),
                       dict(base, replicates=30, status="error", bias=np.nan), dict(base, replicates=5, status="ok",
                                                                                     bias=3.0)])
    assert latest_cells(df)["bias"].tolist() == [2.0]


@pytest.fixture(scope="module")
def report_folder(tiny_run, tmp_path_factory):
    """A folder holding only the TINY run's CSV, and the report written from it."""
    folder = tmp_path_factory.mktemp("report")
    shutil.copy(tiny_run[0] / "t.csv", folder / "t.csv")
    written = write_report(folder)
    return folder, written


@pytest.mark.slow
def test_report_from_the_csv_alone(report_folder):
    folder, written = report_folder
    assert sorted(p.name for p in written) == ["README.md", "t-bias.png", "t-pareto.png"]  # no log_px rows
    readme = (folder / "README.md").read_text()
    for p in written[:-1]:
        assert p.stat().st_size > 0 and f"![{p.name}]({p.name})" in readme
    best = best_by_rmse(read_results(folder / "t.csv"))
    row = best[(best["quantity"] == "tc") & (best["batch_size"] == 12)].iloc[0]
    assert f"{row['series']} ({row['rmse']:.3g})" in readme
    assert "exact" not in set(best["estimator"])  # the full-N evaluation is not a minibatch choice
    assert "- cells: 80 finished, 0 failed" in readme
    assert "reference_se <= bias_se / 10, see docs/maths.md" in readme
    for name in COLUMN_NAMES:  # the column table comes from the schema
        assert f"| `{name}` |" in readme
    for banned in ("SPEC", "PERF.md"):
        assert banned not in readme
    table = terminal_table(read_results(folder / "t.csv"))
    assert table.startswith("lowest RMSE") and "clustered" in table


@pytest.mark.slow
def test_readme_only_leaves_the_plots_alone(report_folder):
    folder, _ = report_folder
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    written = write_report(folder, draw=False)
    assert [p.name for p in written] == ["README.md"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} == before
    assert "![t-bias.png](t-bias.png)" in (folder / "README.md").read_text()


def test_no_code_or_generated_text_cites_documents_users_do_not_have():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [*(root / "estimators" / "bench").rglob("*.py"), *(root / "estimators" / "commands").glob("*.py"),
             root / "estimators" / "cli.py", root / "scripts" / "main.sh", root / "docs" / "csv.md"]
    for path in files:
        text = path.read_text()
        for banned in ("SPEC", "PERF.md"):
            assert banned not in text, f"{path.relative_to(root)} cites {banned}"
