"""``python -m estimators gradients``: a tiny end-to-end run of both studies, resume, and one error line on bad input."""
from __future__ import annotations

import pandas as pd
import pytest

from estimators.gradients.runner import COLUMNS
from estimators.gradients.training import TRAINING_COLUMNS


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path / "cache"))


def test_gradients_end_to_end(cli, tmp_path):
    args = ("gradients", "--preset", "quick", "--out", tmp_path, "--estimators", "mss", "mws", "exact",
            "--batch-sizes", "16", "--replicates", "4", "--no-progress")
    code, out, err = cli(*args)
    assert code == 0, err
    assert "gradient study: 12 rows" in out
    df = pd.read_csv(tmp_path / "gradients.csv")
    assert list(df.columns) == list(COLUMNS) and len(df) == 12
    assert (tmp_path / "gradients.png").is_file() and (tmp_path / "gradients.md").is_file()
    before = (tmp_path / "gradients.csv").read_bytes()
    code, out, err = cli(*args, "--resume")
    assert code == 0, err
    assert (tmp_path / "gradients.csv").read_bytes() == before


def test_training_end_to_end(cli, tmp_path):
    code, out, err = cli("gradients", "--training", "--preset", "training-quick", "--out", tmp_path, "--steps", "2",
                         "--seeds", "0", "--estimators", "mss", "--no-progress")
    assert code == 0, err
    df = pd.read_csv(tmp_path / "training.csv")
    assert list(df.columns) == list(TRAINING_COLUMNS) and len(df) == 1
    assert "Training study" in (tmp_path / "gradients.md").read_text()


@pytest.mark.parametrize("argv,needle", [
    (("--preset", "nope"), "--preset"),
    (("--estimators", "nope"), "--estimators"),
    (("--fields", "nope"), "--fields"),
    (("--replicates", "1"), "--replicates"),
    (("--batch-sizes", "0"), "--batch-sizes"),
    (("--training", "--fields", "linear-d2"), "--fields"),
    (("--seeds", "1"), "--seeds"),
])
def test_bad_input_is_one_error_line(cli, tmp_path, argv, needle):
    code, out, err = cli("gradients", "--out", tmp_path, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
