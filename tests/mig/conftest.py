"""Fixtures of the MIG tests: seeded synthetic fields with factors (tests/mig/fields.py)."""
from __future__ import annotations

import pytest

from tests.mig.fields import grid_field


@pytest.fixture
def small_grid():
    """N = 24 (factors of sizes 2, 3, 4, a full grid), D = 3."""
    return grid_field()
