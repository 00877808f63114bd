"""The README's adapters (examples/audit_adapters.py) audit as the README says."""
import importlib.util
from pathlib import Path

import pytest

from tests.audit.test_audit import classify

PATH = Path(__file__).resolve().parents[2] / "examples" / "audit_adapters.py"


@pytest.fixture(scope="module")
def adapters():
    spec = importlib.util.spec_from_file_location("audit_adapters", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,verdict,computes,differentiable", [
    ("audit_loss_method", "known_bug", "mss_per_dim", True),
    ("audit_numpy_function", "known_bug", "tc_no_constant", False),
    ("audit_global_dataset_size", "correct", "mws", True),
    ("audit_global_as_shipped", "known_bug", "naive + offset", True),
])
def test_adapters(adapters, name, verdict, computes, differentiable):
    report = classify(getattr(adapters, name))
    assert (report.verdict, report.computes) == (verdict, computes), str(report)
    assert (report.differentiable is None) == differentiable
