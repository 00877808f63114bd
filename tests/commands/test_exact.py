"""``python -m estimators exact``: JSON and table output, scenarios, and one clear error line on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from estimators import exact_references
from estimators.cli import main
from estimators.references import QUANTITIES
from estimators.scenarios import SCENARIOS


@pytest.fixture
def field_file(tmp_path):
    g = np.random.default_rng(0)
    path = tmp_path / "field.npz"
    np.savez(path, mu=g.normal(size=(20, 3)), logvar=g.normal(-1.0, 0.3, size=(20, 3)))
    return path


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code, out, err, *needles):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0]


def test_json_output_parses_with_the_required_keys(capsys, field_file):
    code, out, err = _run(capsys, "exact", str(field_file), "--json", "--samples", "4", "--seed", "3")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["N"] == 20 and result["D"] == 3 and result["samples"] == 4 and result["seed"] == 3
    data = np.load(field_file)
    direct = exact_references(torch.from_numpy(data["mu"]), torch.from_numpy(data["logvar"]), samples=4, seed=3)
    for q in QUANTITIES:
        assert set(result[q]) == {"value", "se", "method", "lower", "upper", "lower_by", "upper_by"}
        assert result[q]["lower"] <= result[q]["upper"]
        assert result[q] == direct[q]


def test_table_output(capsys, tmp_path):
    path = tmp_path / "field.pt"
    torch.save({"mu": torch.randn(10, 2, dtype=torch.float64), "logvar": torch.zeros(10, 2, dtype=torch.float64)}, path)
    code, out, err = _run(capsys, "exact", str(path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    for q in QUANTITIES:
        row = next(line for line in lines if line.startswith(q + " ")).split()
        assert row[3] in ("closed", "quadrature", "mc")
        value, lower, upper, width = float(row[1]), float(row[4]), float(row[5]), float(row[6])
        assert lower - 1e-6 <= value <= upper + 1e-6 and width == pytest.approx(upper - lower, rel=5e-3, abs=2e-6)
        assert row[-2] == "/"  # which bounds are tightest: "lower_by / upper_by"
    assert any(line.startswith("N = 10, D = 2") and "seconds" in line for line in lines)
    assert any(line.startswith("identities:") and "both hold" in line for line in lines)
    assert any(line.startswith("every reference lies inside its certified bracket") for line in lines)


def test_scenario_name_and_options(capsys):
    code, out, _ = _run(capsys, "exact", "grid", "--N", "12", "--D", "2", "--separation", "0.7", "--json",
                        "--dtype", "float32", "--nodes", "16")
    assert code == 0
    result = json.loads(out)
    assert (result["N"], result["D"], result["dtype"], result["quadrature_nodes"]) == (12, 2, "float32", 16)
    assert result["structure"] == "product_grid" and result["tc"]["value"] == 0.0


def test_help_documents_dtype(capsys):
    with pytest.raises(SystemExit):
        main(["exact", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--dtype" in out and "always float64" in out


def test_missing_file_or_unknown_scenario(capsys, tmp_path):
    _assert_one_error_line(*_run(capsys, "exact", str(tmp_path / "nope.npz")), "neither", "nope.npz")
    _assert_one_error_line(*_run(capsys, "exact", "no-such-scenario"), "no-such-scenario", *SCENARIOS)


def test_file_without_logvar(capsys, tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, mu=np.zeros((4, 2)))
    _assert_one_error_line(*_run(capsys, "exact", str(path)), "logvar")


def test_nan_field(capsys, tmp_path):
    path = tmp_path / "nan.npz"
    mu = np.zeros((4, 2))
    mu[1, 1] = np.nan
    np.savez(path, mu=mu, logvar=np.zeros((4, 2)))
    _assert_one_error_line(*_run(capsys, "exact", str(path)), "NaN")


def test_bad_options(capsys, field_file):
    _assert_one_error_line(*_run(capsys, "exact", str(field_file), "--samples", "1"), "samples")
    _assert_one_error_line(*_run(capsys, "exact", str(field_file), "--N", "5"), "--N")


@pytest.mark.slow  # a fresh interpreter imports torch
def test_module_entry_point(field_file):
    done = subprocess.run([sys.executable, "-m", "estimators", "exact", str(field_file), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["N"] == 20


def test_json_carries_every_bracket_and_the_reference_lies_inside(capsys):
    code, out, _ = _run(capsys, "exact", "gaussian", "--N", "60", "--D", "3", "--json", "--no-progress")
    result = json.loads(out)
    assert code == 0
    for q in QUANTITIES:
        e = result[q]
        assert e["lower"] - 4 * e["se"] - 1e-9 <= e["value"] <= e["upper"] + 4 * e["se"] + 1e-9, q
        assert e["lower_by"] and e["upper_by"]


def test_a_reference_outside_its_bracket_exits_3_loudly(capsys, monkeypatch):
    import estimators.references.api as api

    real = api.certified_brackets

    def wrong(*args, **kwargs):
        out = real(*args, **kwargs)
        out["kl_agg"] = dict(out["kl_agg"], upper=out["kl_agg"]["lower"] - 1.0)
        return out

    monkeypatch.setattr(api, "certified_brackets", wrong)
    code, out, err = _run(capsys, "exact", "gaussian", "--N", "40", "--D", "3", "--no-progress")
    assert code == 3 and out == ""
    assert err.startswith("error: REFERENCE OUTSIDE ITS CERTIFIED BRACKET") and "kl_agg = " in err and "se " in err
