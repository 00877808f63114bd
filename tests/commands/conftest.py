"""Fixtures of the command-line tests (tests/commands)."""
from __future__ import annotations

import pytest
import torch

from estimators import Posteriors, save_posteriors


@pytest.fixture(scope="session")
def field_file(tmp_path_factory):
    """A posterior file myvae.npz: N = 24, D = 3, seeded."""
    g = torch.Generator().manual_seed(0)
    field = Posteriors(torch.randn(24, 3, generator=g, dtype=torch.float64),
                       torch.rand(24, 3, generator=g, dtype=torch.float64) * 2 - 2.5)
    path = tmp_path_factory.mktemp("field") / "myvae.npz"
    save_posteriors(field, path)
    return path

