"""The study runner: a tidy CSV (pandas reads it, one row per cell and quantity), resume skips finished cells,
equal gradients are marked, and the report is written (byte-stable plot)."""
from __future__ import annotations

import pandas as pd
import pytest

from estimators.gradients import runner
from estimators.gradients.presets import PRESETS
from estimators.gradients.report import write_report
from estimators.gradients.runner import COLUMNS, read_gradients_csv, run_gradient_study

TINY = PRESETS["quick"].with_(estimators=("exact", "naive", "mws", "mss", "tc_no_constant"), batch_sizes=(8,),
                              replicates=4, exact_groups=4, exact_samples=1, boot=20)


def test_tidy_csv_resume_and_report(tmp_path, monkeypatch):
    table = run_gradient_study(TINY, tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "gradients.csv")
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == len(TINY.estimators) * 4
    assert not df.duplicated(["field", "quantity", "estimator", "batch_size", "k"]).any()
    assert set(df["quantity"]) == {"grad_mi", "grad_kl_agg", "grad_tc", "grad_dimwise_kl"}
    same = dict(zip(df["estimator"] + df["quantity"], df["same_gradient_as"].fillna("")))
    assert same["mwsgrad_tc"] == "naive" and same["tc_no_constantgrad_tc"] == "naive" and same["mssgrad_tc"] == ""
    pd.testing.assert_frame_equal(read_gradients_csv(tmp_path / "gradients.csv"), table)

    def fail(*a, **k):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(runner, "estimator_gradients", fail)
    again = run_gradient_study(TINY, tmp_path, resume=True, progress=False)
    pd.testing.assert_frame_equal(again, table)

    write_report(tmp_path)
    png = (tmp_path / "gradients.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "grad_tc" in (tmp_path / "gradients.md").read_text()
    write_report(tmp_path)
    assert (tmp_path / "gradients.png").read_bytes() == png  # byte-stable


def test_a_csv_of_another_kind_is_a_clear_error(tmp_path):
    (tmp_path / "gradients.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a gradients CSV"):
        read_gradients_csv(tmp_path / "gradients.csv")
    with pytest.raises(ValueError, match="unknown"):
        run_gradient_study(TINY.with_(estimators=("nope",)), tmp_path / "x", progress=False)
