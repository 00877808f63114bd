"""`python -m estimators bench` and `report`: bad input exits 2 with nothing written; a run writes a
tidy CSV, resumes, and `report` regenerates plots and summary from the CSV alone."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimators.bench.report import equal_cost
from estimators.cli import main

SMALL = ["--batch-sizes", "4", "8", "--replicates", "3", "--reference-samples", "16", "--no-progress"]


def _bench(*args):
    return main(["bench", *map(str, args)])


@pytest.mark.parametrize("args, message", [
    (["--scenarios", "nope"], "unknown scenario 'nope'; known scenarios: "),
    (["--estimators", "mss,bogus"], "unknown estimator 'bogus'; known estimators: "),
    (["--quantities", "kl"], "unknown quantity 'kl'; known quantities: "),
    (["--batch-sizes", "25"], "batch size 25 is larger than N = 24"),
    (["--batch-sizes", "1", "--estimators", "mss"], "batch size 1 is too small for estimator 'mss'"),
    (["--batch-sizes", "x"], "--batch-sizes takes integers"),
    (["--replicates", "1"], "replicates must be >= 2, got 1"),
    (["--k", "0", "--estimators", "iwae"], "k must be >= 1, got 0"),
    (["--reference-samples", "1"], "--reference-samples must be >= 2, got 1"),
    (["--N", "0"], "--N must be >= 1, got 0"),
    (["--separation", "2"], "--separation must lie in [0, 1]"),
    (["--name", ".hidden"], "--name must be a plain file name"),
])
def test_bad_grid_exits_2_and_writes_nothing(tmp_path, capsys, field_file, args, message):
    out = tmp_path / "out"
    assert _bench("--posteriors", field_file, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_posterior_files_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.full((5, 2), np.nan), logvar=np.zeros((5, 2)))
    assert _bench("--posteriors", bad, "--out", tmp_path / "o") == 2
    assert "mu holds 10 non-finite (NaN)" in capsys.readouterr().err
    assert _bench("--posteriors", tmp_path / "missing.npz", "--out", tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unwritable_out_exits_2(tmp_path, capsys, field_file):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert _bench("--posteriors", field_file, "--out", blocker / "sub", *SMALL) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # (root may write anywhere)
        assert _bench("--posteriors", field_file, "--out", locked / "sub", *SMALL) == 2
        assert "no write permission" in capsys.readouterr().err
        assert not (locked / "sub").exists()


@pytest.mark.slow
def test_run_resume_and_report(tmp_path, capsys, field_file):
    out = tmp_path / "res"
    assert _bench("--posteriors", field_file, "--out", out, "--estimators", "naive", "mss", "exact", *SMALL) == 0
    printed = capsys.readouterr().out
    csv = out / "myvae.csv"
    df = pd.read_csv(csv)  # tidy: pandas reads it as is
    assert len(df) == 3 * 2 * 4 and set(df["scenario"]) == {"myvae"} and (df["status"] == "ok").all()
    assert set(df["batch_size"]) == {4, 8} and (df["replicates"] == 3).all() and (df["N"] == 24).all()
    assert "lowest RMSE" in printed and "myvae" in printed
    # a posterior file of one's own: every estimator's bias ± se (rmse), per quantity and batch size
    assert "myvae (N = 24, D = 3, R = 3): bias ± se (rmse) of every estimator" in printed
    assert max(len(line) for line in printed.splitlines() if not line.startswith("results: ")) <= 100
    for q in ("mi", "kl_agg", "tc", "dimwise_kl"):
        block = printed.split(f"\n{q}: reference ")[1].split("\n\n")[0].splitlines()
        assert block[1].split() == ["estimator", "B=4", "B=8"]
        assert [line.split()[0] for line in block[2:5]] == ["naive", "mss", "exact"]
        assert all(line.count(" ± ") == 2 for line in block[2:5])
    for name in ("myvae-bias.png", "myvae-pareto.png", "README.md"):
        assert (out / name).stat().st_size > 0
    before = csv.read_bytes()

    # rerun: everything is finished, nothing recomputed, the CSV unchanged
    assert _bench("--posteriors", field_file, "--out", out, "--estimators", "naive", "mss", "exact", *SMALL,
                  "--no-report") == 0
    assert "nothing to run" in capsys.readouterr().err
    assert csv.read_bytes() == before

    # report regenerates plots and summary from the CSV alone
    for name in ("myvae-bias.png", "myvae-pareto.png", "README.md"):
        (out / name).unlink()
    assert main(["report", "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    for name in ("myvae-bias.png", "myvae-pareto.png"):
        assert (out / name).stat().st_size > 0 and name in readme
    best, levels = equal_cost(pd.read_csv(csv), "evaluations")
    row = best[(best["quantity"] == "tc") & (best["level"] == 8)].iloc[0]
    assert "| myvae | " in readme and f"{row['series']} B={int(row['batch_size'])}: " in readme
    assert "exact" not in set(best[best["level"] < math.inf]["estimator"])  # B + N fits no minibatch budget


def test_report_without_csv_exits_2(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "no results CSV" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "missing")]) == 2


@pytest.mark.slow  # a fresh interpreter imports torch
def test_module_entry_point_exit_code():
    proc = subprocess.run([sys.executable, "-m", "estimators", "bench", "--estimators", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown estimator 'nope'")


def test_foreign_csv_is_left_alone(tmp_path, capsys, field_file):
    out = tmp_path / "o"
    out.mkdir()
    (out / "myvae.csv").write_text("a,b\n1,2\n")
    assert _bench("--posteriors", field_file, "--out", out, *SMALL) == 2
    assert "is not a benchmark CSV" in capsys.readouterr().err
    assert (out / "myvae.csv").read_text() == "a,b\n1,2\n"
    assert main(["report", "--out", str(out)]) == 2  # no benchmark CSV there


# --- one writer per CSV --------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TINY_GRID = ["--preset", "quick", "--scenarios", "gaussian", "--batch-sizes", "16", "--replicates", "2", "--N", "32",
             "--reference-samples", "8", "--no-progress", "--no-report"]


def _bench_process(out, estimator, *extra):
    return subprocess.Popen([sys.executable, "-m", "estimators", "bench", *TINY_GRID, "--estimators", estimator,
                             "--out", str(out), "--name", "shared", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _estimators_in(csv):
    return sorted(set(pd.read_csv(csv)["estimator"]))


def test_sequential_runs_into_one_csv_keep_every_row(tmp_path, capsys):
    out = tmp_path / "o"
    for est in ("mss", "naive"):
        assert _bench(*TINY_GRID, "--estimators", est, "--out", out, "--name", "shared") == 0
    df = pd.read_csv(out / "shared.csv")
    assert _estimators_in(out / "shared.csv") == ["mss", "naive"] and len(df) == 2 * 4
    assert (df["status"] == "ok").all()


@pytest.mark.slow  # two fresh interpreters import torch
def test_two_concurrent_runs_with_wait_both_land(tmp_path):
    out = tmp_path / "o"
    procs = [_bench_process(out, est, "--wait") for est in ("mss", "naive")]
    done = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], done
    assert _estimators_in(out / "shared.csv") == ["mss", "naive"]  # no run's rows vanished
    assert len(pd.read_csv(out / "shared.csv")) == 2 * 4


@pytest.mark.slow
def test_a_second_writer_exits_2_naming_the_csv_and_the_holder(tmp_path, capsys):
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom estimators.bench.lock import output_lock\n"
                               "with output_lock(sys.argv[1], command='python -m estimators bench --name shared'):\n"
                               "    print('held', flush=True)\n    sys.stdin.readline()\n", str(out / "shared.csv")],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _bench(*TINY_GRID, "--estimators", "mss", "--out", out, "--name", "shared") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {out / 'shared.csv'} is being written by another run "
                                                   f"(pid {holder.pid}, started at ")
        assert not (out / "shared.csv").exists()  # nothing was run
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert _bench(*TINY_GRID, "--estimators", "mss", "--out", out, "--name", "shared") == 0  # the lock is free again
