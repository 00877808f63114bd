"""``python -m estimators exact --target-se / --strata / --max-terms``, and a preset's ``reference_target_se``."""
from __future__ import annotations

import json

from estimators.bench.plan import plan
from estimators.bench.presets import PRESETS
from estimators.cli import main
from estimators.references.monte_carlo import PILOT_SAMPLES, PILOT_STRATA


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code, out, err, *needles):
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_target_se_json_reports_what_was_used(capsys):
    code, out, err = _run(capsys, "exact", "gaussian", "--N", "1200", "--D", "4", "--target-se", "0.006", "--json",
                          "--no-progress")
    assert code == 0 and err == ""
    result = json.loads(out)
    mc = result["monte_carlo"]
    assert result["kl_agg"]["se"] <= 0.006 and mc["target_se"] == 0.006
    assert mc["pilot"]["strata"] == min(1200, PILOT_STRATA) and mc["pilot"]["samples"] == PILOT_SAMPLES
    assert result["samples"] == mc["samples"] and mc["draws"] == mc["strata"] * mc["samples"]


def test_table_says_how_the_monte_carlo_ran(capsys):
    code, out, _ = _run(capsys, "exact", "gaussian", "--N", "1200", "--D", "4", "--strata", "300", "--samples", "4",
                        "--no-progress")
    assert code == 0
    assert any(line.startswith("Monte Carlo: 300 of 1200 posteriors x 4 draws") for line in out.splitlines())


def test_a_target_beyond_the_budget_is_one_error_line(capsys):
    _one_error_line(*_run(capsys, "exact", "gaussian", "--N", "1200", "--D", "4", "--target-se", "1e-5",
                          "--max-terms", "1e8", "--no-progress"), "target_se = 1e-05", "max_terms = 1e+08", "reaches se")


def test_bad_monte_carlo_options_are_one_error_line(capsys):
    _one_error_line(*_run(capsys, "exact", "gaussian", "--N", "1200", "--D", "4", "--strata", "10"), "strata")
    _one_error_line(*_run(capsys, "exact", "gaussian", "--N", "300", "--D", "4", "--target-se", "0"), "target_se")
    _one_error_line(*_run(capsys, "exact", "gaussian", "--N", "300", "--D", "4", "--target-se", "0.1",
                          "--max-terms", "-1"), "max_terms")


def test_a_presets_target_se_reaches_the_reference_settings_only_when_set():
    quick = PRESETS["quick"]
    assert all("target_se" not in s for s in plan(quick).reference_settings.values())  # cache keys unchanged
    settings = plan(quick.with_(reference_target_se=0.02)).reference_settings
    assert settings and all(s["target_se"] == 0.02 for s in settings.values())
