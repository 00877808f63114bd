"""The report: row selection, the Pareto front, plots and README from a CSV alone, and generated
text that cites only documents the user has."""
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from estimators.bench.report import equal_cost, latest_cells, pareto_front, terminal_table, write_report
from estimators.bench.report.format import fmt
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
    assert sorted(p.name for p in written) == ["README.md", "t-bias.png", "t-cost.png", "t-pareto.png"]  # no log_px
    readme = (folder / "README.md").read_text()
    for p in written[:-1]:
        assert p.stat().st_size > 0 and f"![{p.name}]({p.name})" in readme
    df = read_results(folder / "t.csv")
    best, levels = equal_cost(df, "evaluations")
    assert levels == [4.0, 12.0, math.inf]  # TINY's batch sizes, then any cost
    row = best[(best["quantity"] == "tc") & (best["level"] == 12)].iloc[0]
    assert f"{row['series']} B={int(row['batch_size'])}: {fmt(row['rmse'], row['rmse_se'])}" in readme
    assert "| scenario | ≤ 4 encoder evals | ≤ 12 encoder evals | any cost |" in readme
    # iwae (k = 3) costs B (1 + k), exact B + N = B + 40: only the minibatch estimators fit B = 4 and 12
    assert set(best[best["level"] < math.inf]["estimator"]) <= {"naive", "mws", "mss"}
    assert "### At the largest batch size (B = 12)" in readme and "| estimator | mi bias | mi RMSE |" in readme
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


@pytest.mark.slow
def test_plots_are_byte_stable_and_unchanged_files_are_left_alone(report_folder, tmp_path):
    from estimators.bench.report import PLOTS

    folder, _ = report_folder
    df = read_results(folder / "t.csv")
    for suffix, plot in PLOTS.items():
        if suffix in ("log_px", "direct", "density_ratio"):
            continue  # no log_px rows, and no direct estimators, in TINY (tests/bench/test_direct.py has them)
        path = tmp_path / f"t-{suffix}.png"
        assert plot(df, path)
        first, stat = path.read_bytes(), path.stat()
        assert b"matplotlib version" not in first and b"Software" not in first  # no version, no timestamp
        assert plot(df, path)
        again = path.stat()
        assert path.read_bytes() == first, suffix  # the same data, the same bytes
        assert (again.st_mtime_ns, again.st_ino) == (stat.st_mtime_ns, stat.st_ino), suffix  # not rewritten
    # the whole report: redrawn from unchanged data, no file of it is touched
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir() if p.is_file()}
    write_report(folder)
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_a_big_report_draws_its_plots_in_parallel_processes_with_the_same_bytes(report_folder, tmp_path,
                                                                                monkeypatch):
    import concurrent.futures

    from estimators.bench.report import summary

    folder, _ = report_folder
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    for where in (serial, parallel):
        where.mkdir()
        shutil.copy(folder / "t.csv", where / "t.csv")
    write_report(serial)
    pools = []

    class Spy(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(summary, "PARALLEL_ROWS", 0)  # the tiny report counts as big
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    write_report(parallel)
    assert pools  # the plots did go to worker processes
    pngs = sorted(p.name for p in serial.glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in parallel.glob("*.png"))
    for name in pngs + ["README.md"]:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name


def test_blank_frac_negative_and_coverage_are_reported(tmp_path):
    # an exactly computed 0 (collapsed field): frac_negative and coverage undefined, rel_bias too
    from estimators.bench.report import summary_markdown
    from estimators.bench.store import ResultStore
    from estimators.bench.tasks import AggregateUnit

    rows = []
    for est, bias in (("mss", 0.0), ("naive", 0.25)):
        unit = AggregateUnit("collapsed", 40, 3, 0.5, 0, est, 8, None, ("mi",), 4, "float64", 0)
        row = unit.base_row("mi")
        row.update(reference=0.0, reference_se=0.0, reference_method="closed", mean=bias, bias=bias, bias_se=0.0,
                   sd=0.0, rmse=bias, rmse_se=0.0, time_per_call_s=1e-3, reference_se_ok=True, sd_se=0.0)
        rows.append(row)
    ResultStore(tmp_path / "z.csv").put(rows)
    df = read_results(tmp_path / "z.csv")
    assert df[["frac_negative", "coverage", "rel_bias"]].isna().all().all()
    text = summary_markdown({"z": df}, {})
    assert "| mi | mss | 0 |" in text and "nan" not in text.lower().replace("nats", "")
    table = terminal_table(df, every_estimator=True)
    assert "nan" not in table.lower().replace("nats", "") and "mss" in table and "naive" in table
    assert write_report(tmp_path, draw=False)


@pytest.mark.slow
def test_every_estimator_table_fits_100_columns(full):
    from estimators.bench.report.terminal import estimator_tables

    lines = estimator_tables(full)
    assert lines and max(len(line) for line in lines) <= 100
    text = "\n".join(lines)
    for series in ("naive", "mws", "mss", "iwae k=3", "exact"):
        assert f"\n  {series} " in text, series
    for q in ("mi", "kl_agg", "tc", "dimwise_kl"):
        assert f"\n{q}: reference " in text
    # a cell is bias ± se (rmse): the mss row of gaussian's mi at B=4 and B=12
    row = full[(full.scenario == "gaussian") & (full.quantity == "mi") & (full.estimator == "mss")]
    assert text.count(" ± ") >= 2 * 4 * 5 * 2 and f"({row['rmse'].iloc[0]:.3g})" in text
    narrow = estimator_tables(full, width=40)  # columns that do not fit are split over several tables
    assert max(len(line) for line in narrow if line.startswith("  ")) <= 40 and len(narrow) > len(lines)
