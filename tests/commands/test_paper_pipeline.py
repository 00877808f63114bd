"""The paper preset's whole path on the tiny dSprites grid, as CI runs it (under a minute).

Under the test suite the dsprites scenarios use the tiny recipes (tests/conftest.py sets
VAE_ESTIMATORS_DSPRITES=tiny): the same code as ``bench --preset paper`` at N = 737,280 -- training and
caching both VAEs, building the scenarios, the references to a target se, every estimator, the CSV and the
report -- on 768 images, and the MIG study on the exported field.
"""
from __future__ import annotations

import math

import pandas as pd

from estimators import ESTIMATORS
from estimators.bench.presets import PRESETS
from estimators.direct import DIRECT_ESTIMATORS
from estimators.scenarios import vae_dsprites as vd


def test_paper_preset_is_the_published_setting():
    paper = PRESETS["paper"]
    assert [s.name for s in paper.scenarios] == ["dsprites", "dsprites-tcvae"]
    assert all(s.N is None and s.D is None for s in paper.scenarios)  # the full field: N = 737,280, D = 10
    assert paper.batch_sizes == (64, 256, 1024, 2048) and paper.estimators is None  # every estimator
    assert paper.direct_estimators is None and paper.log_px_tasks == () and paper.reference_target_se == 0.01
    assert (vd.RECIPES["beta-vae"].grid.N, vd.RECIPES["beta-vae"].latent_dim) == (737_280, 10)


def test_paper_preset_on_the_tiny_grid_end_to_end(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path / "cache"))  # trains both tiny recipes afresh
    out = tmp_path / "results"
    code, _, err = cli("bench", "--preset", "paper", "--batch-sizes", "16", "64", "--replicates", "3",
                       "--out", out, "--no-progress")
    assert code == 0, err
    df = pd.read_csv(out / "paper.csv")
    assert set(df.scenario) == {"dsprites", "dsprites-tcvae"} and set(df.N) == {768} and set(df.D) == {4}
    assert (df.status == "ok").all() and set(df.batch_size) >= {16, 64}
    assert set(df.estimator) == set(ESTIMATORS) | set(DIRECT_ESTIMATORS)
    for _, cell in df.groupby("scenario"):
        ref = cell.groupby("quantity").reference.first()
        assert math.isclose(ref["kl_agg"], ref["tc"] + ref["dimwise_kl"], abs_tol=1e-9)
        assert (cell.reference_se <= 0.01 + 1e-12).all()  # the preset's target se
    readme = (out / "README.md").read_text()
    assert "## paper" in readme and "paper-bias.png" in readme and (out / "paper-bias.png").is_file()

    field = tmp_path / "tc.npz"
    code, _, err = cli("dsprites", "export", "--tiny", "--recipe", "beta-tcvae", "--out", field, "--no-progress")
    assert code == 0, err
    code, stdout, err = cli("mig", field, "--samples", "200", "--replicates", "3", "--out", tmp_path / "mig",
                            "--no-progress")
    assert code == 0, err
    mig = pd.read_csv(tmp_path / "mig" / "mig.csv")
    assert len(mig) > 0 and mig.notna().any().all()
