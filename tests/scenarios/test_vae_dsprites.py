"""Tests of the dSprites VAE (estimators/scenarios/vae_dsprites.py) and its command, on the tiny grid.

The tiny recipes run the same code as the full ones (768 images, a 64-unit MLP, 300 steps): training,
resuming bit-identically, encoding, the report, the cache, the export and what reads it.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from estimators import load_posteriors
from estimators.cli import main
from estimators.numerics import log_normal, log_standard_normal
from estimators.scenarios import dsprites_data as dd
from estimators.scenarios import vae_dsprites as vd
from tests.helpers import Terminal

TINY = vd.TINY_RECIPES["beta-vae"]
TINY_TC = vd.TINY_RECIPES["beta-tcvae"]
SHORT = replace(TINY, steps=40)  # for the tests that only need a trained model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A temporary cache dir (via the environment variable) and a counting trainer."""
    monkeypatch.setenv("VAE_ESTIMATORS_CACHE", str(tmp_path))
    calls = []
    real = vd.train_model

    def counting(recipe, **kwargs):
        calls.append(recipe)
        return real(recipe, **kwargs)

    monkeypatch.setattr(vd, "train_model", counting)
    return tmp_path, calls


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_recipes():
    full = vd.RECIPES
    assert set(full) == set(vd.TINY_RECIPES) == {"beta-vae", "beta-tcvae"}
    for recipe in full.values():  # Chen et al.'s dSprites MLP, D = 10, on the full grid
        assert recipe.grid == dd.FULL_GRID and recipe.latent_dim == 10
        assert recipe.hidden == (1200, 1200) and recipe.decoder_hidden == (1200, 1200, 1200)
    assert (full["beta-vae"].objective, full["beta-vae"].beta) == ("beta-vae", 1.0)
    assert (full["beta-tcvae"].objective, full["beta-tcvae"].beta) == ("beta-tcvae", 6.0)
    assert full["beta-vae"].name == "dsprites" and full["beta-tcvae"].name == "dsprites-tcvae"
    model = vd._model(full["beta-vae"])
    sizes = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert sizes == [1200, 1200, 20] and model.encoder[0].in_features == 4096
    assert [type(m).__name__ for m in model.decoder] == ["Linear", "Tanh"] * 3 + ["Linear"]
    assert model.decoder[-1].out_features == 4096
    assert all(r.grid == dd.TINY_GRID for r in vd.TINY_RECIPES.values())


def test_fingerprint_covers_recipe_grid_torch_trainer_and_renderer(monkeypatch):
    base = TINY.fingerprint()
    changes = dict(grid=replace(dd.TINY_GRID, orientations=4), hidden=(65,), decoder_hidden=(64, 64), latent_dim=3,
                   objective="beta-tcvae", beta=2.0, steps=301, batch_size=32, lr=2e-3, seed=1, threads=2)
    prints = {replace(TINY, **{k: v}).fingerprint() for k, v in changes.items()}
    assert base not in prints and len(prints) == len(changes)
    assert replace(TINY, beta=1).fingerprint() == base
    for module, name, value in ((torch, "__version__", "0.0.0"), (vd, "TRAINER_VERSION", vd.TRAINER_VERSION + 1),
                                (vd, "RENDER_VERSION", vd.RENDER_VERSION + 1)):
        with monkeypatch.context() as m:
            m.setattr(module, name, value)
            assert TINY.fingerprint() != base, name
    assert TINY.fingerprint() == base


def test_recipe_validation():
    for kwargs, match in (({"latent_dim": 0}, "Recipe.latent_dim"), ({"steps": 1.5}, "Recipe.steps"),
                          ({"beta": 0.0}, "Recipe.beta"), ({"lr": float("nan")}, "Recipe.lr"),
                          ({"seed": -1}, "Recipe.seed"), ({"hidden": (0,)}, "Recipe.hidden"),
                          ({"decoder_hidden": ()}, "Recipe.decoder_hidden"), ({"objective": "vae"}, "Recipe.objective"),
                          ({"batch_size": 769}, r"Recipe.batch_size must lie in \[1, 768\]"),
                          ({"objective": "beta-tcvae", "batch_size": 1}, "Recipe.batch_size"),
                          ({"threads": 0}, "Recipe.threads"), ({"grid": "tiny"}, "Recipe.grid")):
        with pytest.raises(ValueError, match=match):
            replace(TINY, **kwargs)
    with pytest.raises(TypeError, match="recipe"):
        vd.dsprites_posteriors({"latent_dim": 2})


def test_index_stream_is_seeded_epoch_permutations():
    per_epoch = TINY.grid.N // TINY.batch_size
    epoch = torch.cat([vd.batch_indices(TINY, t) for t in range(per_epoch)])
    assert torch.equal(epoch.sort().values, torch.arange(TINY.grid.N))  # a permutation: each image once
    again = torch.cat([vd.batch_indices(TINY, t) for t in range(per_epoch)])
    following = torch.cat([vd.batch_indices(TINY, t) for t in range(per_epoch, 2 * per_epoch)])
    assert torch.equal(epoch, again) and not torch.equal(epoch, following)
    assert not torch.equal(vd.batch_indices(replace(TINY, seed=1), 0), vd.batch_indices(TINY, 0))


def test_tcvae_objective_is_mi_plus_beta_tc_plus_dimwise_kl():
    # mi + tc + dimwise_kl = mean_i [log q(z_i|x_i) - log p(z_i)] for every batch: at beta = 1 the objective is that
    # closed form plus the reconstruction; beta adds (beta - 1) tc, with tc from decompose(..., "mss", N)
    from estimators import decompose

    torch.manual_seed(0)
    model = vd._model(TINY_TC).double()
    x = dd.TINY_GRID.render(torch.arange(64)).reshape(64, -1).double()
    eps = torch.randn(64, TINY_TC.latent_dim, dtype=torch.float64)
    mu, logvar = model.encode(x)
    z = mu + eps * torch.exp(0.5 * logvar)
    recon = model.recon_nll(x, z).mean()
    surgery = (log_normal(z, mu, logvar).sum(1) - log_standard_normal(z)).mean()
    one = vd._loss(replace(TINY_TC, beta=1.0), model, x, eps)
    assert torch.allclose(one, recon + surgery, rtol=1e-12, atol=0)
    tc = decompose(z, mu, logvar, dataset_size=dd.TINY_GRID.N, estimator="mss")["tc"]
    six = vd._loss(TINY_TC, model, x, eps)
    assert torch.allclose(six - one, 5 * tc, rtol=1e-9, atol=1e-12)
    plain = vd._loss(TINY, model, x, eps)
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert torch.allclose(plain, recon + kl, rtol=1e-12, atol=0)


@pytest.mark.parametrize("recipe", [TINY, TINY_TC], ids=["beta-vae", "beta-tcvae"])
def test_resume_is_bit_identical(tmp_path, recipe):
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    whole, seconds = vd.train_model(recipe)
    assert seconds > 0 and torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
    ckpt = tmp_path / "run.ckpt.pt"
    assert vd.train_model(recipe, checkpoint=ckpt, stop_after=37, checkpoint_seconds=0.0) is None
    assert torch.load(ckpt, weights_only=True)["step"] == 37
    assert vd.train_model(recipe, checkpoint=ckpt, stop_after=150) is None  # a second interruption
    resumed, _ = vd.train_model(recipe, checkpoint=ckpt)
    assert _same(whole, resumed)
    assert torch.load(ckpt, weights_only=True)["step"] == recipe.steps
    again, _ = vd.train_model(recipe, checkpoint=ckpt)  # a finished checkpoint: nothing left to train
    assert _same(whole, again)
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt.pt"]  # no temporary files left
    other, _ = vd.train_model(replace(recipe, seed=1, steps=40))
    assert not _same(whole, other)


def test_foreign_or_corrupt_checkpoint_is_ignored(tmp_path):
    ckpt = tmp_path / "run.ckpt.pt"
    ckpt.write_bytes(b"not a checkpoint")
    model, _ = vd.train_model(SHORT, checkpoint=ckpt)
    fresh, _ = vd.train_model(SHORT)
    assert _same(model, fresh)
    vd.train_model(replace(SHORT, seed=3), checkpoint=ckpt, stop_after=10)  # another recipe's state
    model, _ = vd.train_model(SHORT, checkpoint=ckpt)
    assert _same(model, fresh)


def test_end_to_end_cache_report_and_export(cache):
    tmp, calls = cache
    field = vd.dsprites_posteriors(TINY)
    assert len(calls) == 1 and field.name == "dsprites" and field.dtype == torch.float64
    assert (field.N, field.D) == (768, 4)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("vae-dsprites")] == [vd.cache_path(TINY).name]
    again = vd.dsprites_posteriors(TINY)  # cached: not trained again, and the checkpoint is gone
    assert len(calls) == 1 and torch.equal(field.mu, again.mu) and torch.equal(field.logvar, again.logvar)
    # the field is the trained encoder in float64 on every image, in index order
    model, _ = vd.train_model(TINY)  # (counted: calls == 2 from here)
    x = dd.TINY_GRID.render(torch.arange(768)).reshape(768, -1).double()
    with torch.no_grad():
        mu, logvar = model.double().encode(x)
    assert torch.allclose(field.mu, mu, rtol=0, atol=1e-12) and torch.allclose(field.logvar, logvar, rtol=0, atol=1e-12)

    report = vd.model_report(TINY)
    assert len(calls) == 2
    kl = 0.5 * (field.mu ** 2 + field.logvar.exp() - 1 - field.logvar)
    assert np.allclose(report["kl_per_dim"], kl.mean(0).numpy(), rtol=1e-12, atol=0)
    assert report["active_dims"] == int((kl.mean(0) > vd.ACTIVE_KL).sum())
    assert np.isclose(report["kl"], float(kl.sum(1).mean()), rtol=1e-12)
    with torch.no_grad():
        logits = model.decoder(mu)
    nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
    assert report["recon_images"] == 768 and np.isclose(report["recon_nll"], float(nll), rtol=1e-9)
    assert np.isclose(report["pixel_error"], float(((logits > 0) != (x > 0.5)).double().mean()), rtol=1e-12)
    assert report["recon_nll_sampled"] > 0 and report["elbo"] < -report["recon_nll_sampled"] + 1e-9
    assert report["steps"] == TINY.steps and report["threads"] == TINY.threads and report["train_seconds"] > 0
    assert report["recipe"] == TINY.as_dict() and report["fingerprint"] == TINY.fingerprint()

    path = vd.export_posteriors(TINY, tmp / "export" / "dsprites.npz")
    loaded = load_posteriors(path)
    assert torch.equal(loaded.mu, field.mu) and torch.equal(loaded.logvar, field.logvar) and loaded.N == 768
    with np.load(path, allow_pickle=False) as data:
        assert tuple(data["factor_names"]) == dd.FACTOR_NAMES
        assert data["factors"].dtype == np.int64 and np.array_equal(data["factors"], vd.dsprites_factors(dd.TINY_GRID))
        assert tuple(data["factor_sizes"]) == dd.TINY_GRID.factor_sizes
        assert json.loads(str(data["recipe"]))["objective"] == "beta-vae" and str(data["fingerprint"]) == TINY.fingerprint()
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"\.npz"):
        vd.export_posteriors(TINY, tmp / "dsprites.pt")

    vd.dsprites_posteriors(TINY, retrain=True)
    assert len(calls) == 3


def test_bench_accepts_the_export(cache, capsys):
    tmp, _ = cache
    path = vd.export_posteriors(SHORT, tmp / "dsprites.npz")
    out = tmp / "bench"
    code = main(["bench", "--posteriors", str(path), "--out", str(out), "--estimators", "mss", "--quantities", "tc",
                 "--batch-sizes", "16", "--replicates", "2", "--reference-samples", "2", "--no-progress", "--no-report"])
    assert code == 0, capsys.readouterr().err
    assert (out / "dsprites.csv").is_file()


def test_stale_or_corrupt_cache_is_retrained(cache):
    tmp, calls = cache
    path = vd.cache_path(SHORT)
    path.write_bytes(b"not an npz")
    a = vd.dsprites_posteriors(SHORT)
    assert len(calls) == 1
    np.savez(path, mu=np.zeros((768, 4)), logvar=np.zeros((768, 4)), fingerprint=np.array("other"),
             report=np.array("{}"))
    b = vd.dsprites_posteriors(SHORT)
    assert len(calls) == 2 and torch.equal(a.mu, b.mu)


def test_report_without_training(cache):
    tmp, calls = cache
    with pytest.raises(ValueError, match="not trained yet"):
        vd.model_report(SHORT, train=False)
    assert calls == []
    vd.dsprites_posteriors(SHORT)
    assert vd.model_report(SHORT, train=False)["steps"] == SHORT.steps and len(calls) == 1


def test_progress_bars_change_no_number(monkeypatch):
    quiet, _ = vd.train_model(SHORT, progress=False)
    term = Terminal()
    monkeypatch.setattr(vd.sys, "stderr", term)
    monkeypatch.delenv(vd.PROGRESS_ENV, raising=False)
    shown, _ = vd.train_model(SHORT)  # on a terminal: shown by default
    assert "training dsprites" in term.text and "40/40" in term.text and "step" in term.text
    assert _same(quiet, shown)
    mu, logvar, _ = vd.encode_grid(SHORT, shown)
    assert "encoding dsprites" in term.text
    term.text = ""
    monkeypatch.setenv(vd.PROGRESS_ENV, "0")
    mu2, logvar2, _ = vd.encode_grid(SHORT, shown)
    assert term.text == "" and np.array_equal(mu, mu2) and np.array_equal(logvar, logvar2)


def test_command(cache, tmp_path, capsys):
    tmp, calls = cache
    assert main(["dsprites", "train", "--tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dsprites:" in out and "dsprites-tcvae:" in out and "active dims" in out and len(calls) == 2
    assert main(["dsprites", "report", "--tiny", "--recipe", "beta-tcvae", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "dsprites-tcvae"
    target = tmp_path / "out" / "tc.npz"
    assert main(["dsprites", "export", "--tiny", "--recipe", "beta-tcvae", "--out", str(target), "--no-progress"]) == 0
    assert load_posteriors(target).N == 768 and len(calls) == 2
    png = tmp_path / "s.png"
    assert main(["dsprites", "samples", "--tiny", "--out", str(png)]) == 0 and png.is_file()
    for argv, message in ((["train", "--recipe", "nope"], "--recipe must be one of beta-vae, beta-tcvae or all"),
                          (["report", "--recipe", "beta-vae"], "not trained yet"),
                          (["export", "--tiny", "--recipe", "all"], "export writes one recipe"),
                          (["export", "--tiny", "--out", str(tmp_path / "x.csv")], "must end in .npz"),
                          (["samples", "--out", str(tmp_path / "x.jpg")], "must end in .png")):
        assert main(["dsprites", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
