"""``python -m estimators audit``: exit codes 0 / 1 / 3 / 2, the report, --json, bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from estimators.cli import main

IMPL = str(Path(__file__).resolve().parents[1] / "audit" / "implementations.py")


@pytest.mark.parametrize("function,code,verdict", [
    ("mss_from_the_paper", 0, "correct"), ("shipped_stride", 1, "known_bug"),
    ("mss_plus_a_random_constant", 3, "unknown")])
def test_exit_status_and_json(function, code, verdict, capsys):
    assert main(["audit", f"{IMPL}:{function}", "--no-accuracy", "--json"]) == code
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == verdict and data["exit_code"] == code and data["function"].endswith(function)


def test_text_report_with_accuracy(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path))
    code = main(["audit", f"{IMPL}:yanndubs_is_mss", "--batch-size", "8", "--dataset-size", "100", "--D", "2",
                 "--scenarios", "gaussian", "--replicates", "4"])
    out = capsys.readouterr().out
    assert code == 1
    for text in ("verdict: KNOWN BUG (exit status 1)", "mss_per_dim", "use instead  mss", "accuracy at B = 8, N = 100",
                 "gaussian", "dimwise_kl"):
        assert text in out


def test_module_colon_function(capsys):
    assert main(["audit", "tests.audit.implementations:stratified", "--no-accuracy"]) == 0
    assert "computes     stratified" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["audit", "nofile.py:f", "--no-accuracy"], "no such file: nofile.py"),
    (["audit", "justaname", "--no-accuracy"], "FILE.py:FUNCTION or MODULE:FUNCTION"),
    (["audit", f"{IMPL}:missing", "--no-accuracy"], "has no attribute 'missing'"),
    (["audit", f"{IMPL}:LOG_2PI", "--no-accuracy"], "is a float, not a function"),
    (["audit", "no_such_module_xyz:f", "--no-accuracy"], "cannot import module 'no_such_module_xyz'"),
    (["audit", f"{IMPL}:raises", "--no-accuracy"], "raised RuntimeError: my loss is broken"),
    (["audit", f"{IMPL}:wrong_shape", "--no-accuracy"], r"log_qz must have shape"),
    (["audit", f"{IMPL}:mss_from_the_paper", "--scenarios", "nope"], "unknown scenario 'nope'"),
    (["audit", f"{IMPL}:mss_from_the_paper", "--batch-size", "1"], "batch_size must be"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_a_file_whose_import_fails(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_module_abc\n")
    assert main(["audit", f"{bad}:f"]) == 2
    err = capsys.readouterr().err
    assert "importing" in err and "ModuleNotFoundError" in err and "Traceback" not in err


def test_help_names_the_contract():
    out = subprocess.run([sys.executable, "-m", "estimators", "audit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "(z, mu, logvar, dataset_size)" in out.stdout and "exit status: 0 correct, 1 known bug, 3 unknown" in out.stdout
