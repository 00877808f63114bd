"""The training study: a tiny beta-TCVAE run trains and is judged by exact references; runs are paired by seed;
the CSV resumes; clear errors."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from estimators.gradients import training
from estimators.gradients.presets import TRAINING_PRESETS
from estimators.gradients.training import evaluate_model, read_training_csv, run_training_study, train_tcvae

TINY = dict(steps=4, latent_dim=3, hidden=(8,))  # D = 3: Monte Carlo references (D = 2 would be a 2-D quadrature)


def test_a_tiny_run_trains_and_is_evaluated():
    model = train_tcvae("mss", 32, 0, beta=6.0, **TINY)
    ev = evaluate_model(model, "mss", 32, reference_samples=2)
    for key in ("tc", "mi", "recon", "dimwise_kl", "avg_kl", "tc_reported", "mi_reported"):
        assert math.isfinite(ev[key]), key
    assert ev["tc_se"] >= 0 and 0 <= ev["active_dims"] <= 3
    assert abs(ev["avg_kl"] - ev["mi"] - ev["tc"] - ev["dimwise_kl"]) < 1e-9


def test_the_seed_fixes_the_run():
    a = train_tcvae("mws", 32, 1, **TINY).encoder[0].weight
    b = train_tcvae("mws", 32, 1, **TINY).encoder[0].weight
    assert bool((a == b).all())


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="minibatch estimators only"):
        train_tcvae("iwae", 32, 0, **TINY)
    with pytest.raises(ValueError, match="batch_size"):
        train_tcvae("mss", 1, 0, **TINY)
    with pytest.raises(ValueError, match="steps"):
        train_tcvae("mss", 32, 0, steps=0)
    with pytest.raises(ValueError, match="beta"):
        train_tcvae("mss", 32, 0, beta=float("inf"), **TINY)
    with pytest.raises(ValueError, match="unknown estimator"):
        train_tcvae("nope", 32, 0, **TINY)


def test_the_study_writes_a_tidy_csv_and_resumes(tmp_path, monkeypatch):
    preset = TRAINING_PRESETS["training-quick"].with_(steps=3, seeds=(0,), reference_samples=2, hidden=(8,))
    first = run_training_study(preset, tmp_path, progress=False)
    table = read_training_csv(tmp_path / "training.csv")
    assert len(table) == len(first) == len(preset.estimators) * len(preset.batch_sizes)
    assert not table.duplicated(["estimator", "batch_size", "seed"]).any()
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "training.csv")[list(table.columns)])

    def fail(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train_tcvae", fail)
    again = run_training_study(preset, tmp_path, resume=True, progress=False)
    assert len(again) == len(first)
    with pytest.raises(ValueError, match="not a training CSV"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_training_csv(tmp_path / "bad.csv")
