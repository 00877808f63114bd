"""Fixtures of the benchmark tests (tests/bench): the tiny grid run once per session."""
from __future__ import annotations

import pytest

from tests.bench.helpers import run_grid


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole TINY grid (2 scenarios x 2 batch sizes x 5 estimators), run once: (folder, rows)."""
    out = tmp_path_factory.mktemp("tiny")
    return out, run_grid(out)


@pytest.fixture(scope="session")
def full(tiny_run):
    """The rows of the TINY run, for the tests that compare against it."""
    return tiny_run[1]
