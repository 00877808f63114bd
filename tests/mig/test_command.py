"""``python -m estimators mig FILE.npz``: the exact table, the study's files, JSON, and one error line on bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.mig.fields import grid_field


@pytest.fixture
def factor_file(tmp_path):
    mu, lv, f = grid_field((2, 3, 4), D=3, seed=0)
    path = tmp_path / "toy.npz"
    np.savez(path, mu=mu.numpy(), logvar=lv.numpy(), factors=f.numpy(), factor_names=np.array(["a", "b", "c"]))
    return path


def test_exact_only(cli, factor_file):
    code, out, err = cli("mig", factor_file, "--replicates", "0")
    assert code == 0, err
    assert "exact MIG of" in out and "MIG over a, b, c =" in out and "## MIG" not in out


def test_json(cli, factor_file):
    code, out, err = cli("mig", factor_file, "--replicates", "0", "--json", "--factors-in-mig", "b", "c")
    assert code == 0, err
    ref = json.loads(out)
    assert ref["factors_in_mig"] == ["b", "c"] and len(ref["mi"]) == 3 and len(ref["mi"][0]) == 3


def test_study_writes_the_report(cli, factor_file, tmp_path):
    code, out, err = cli("mig", factor_file, "--samples", "4", "8", "--replicates", "2", "--out", tmp_path / "r",
                         "--no-progress", "--dtype", "float32")
    assert code == 0, err
    assert "| beta_tcvae | 4 |" in out and "| paired | 8 |" in out and err == ""
    df = pd.read_csv(tmp_path / "r" / "mig.csv")
    assert set(df["n_samples"]) == {4, 8} and (tmp_path / "r" / "mig.png").is_file()


def test_bad_input_is_one_error_line(cli, factor_file, tmp_path):
    mu, lv, _ = grid_field((2, 3, 4), D=3, seed=0)
    no_factors = tmp_path / "nofactors.npz"
    np.savez(no_factors, mu=mu.numpy(), logvar=lv.numpy())
    float_factors = tmp_path / "float.npz"
    np.savez(float_factors, mu=mu.numpy(), logvar=lv.numpy(), factors=np.zeros((24, 2)))
    cases = [((no_factors,), "factors"), ((float_factors,), "factors"), ((tmp_path / "missing.npz",), "does not exist"),
             ((factor_file, "--replicates", "1"), "--replicates"), ((factor_file, "--samples", "0"), "--samples"),
             ((factor_file, "--estimators", "nope"), "--estimators"),
             ((factor_file, "--factors-in-mig", "zz"), "--factors-in-mig")]
    for argv, needle in cases:
        code, out, err = cli("mig", *argv)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (argv, err)
        assert lines[0].startswith("error: ") and needle in lines[0], (argv, err)
