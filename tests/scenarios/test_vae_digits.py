"""Tests of the digits VAE scenario (estimators/scenarios/vae_digits.py): training, caching, the scenario.

Fast tests use a tiny recipe (one epoch of a 16-unit MLP) and a temporary cache directory; the
test with the real recipe is marked slow.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from estimators.scenarios import make_scenario
from estimators.scenarios import vae_digits as vd
from tests.helpers import Terminal

TINY = vd.Recipe(latent_dim=2, hidden=(16,), epochs=1, batch_size=256)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A temporary cache dir (via the environment variable) and a counting trainer."""
    monkeypatch.setenv(vd.CACHE_ENV, str(tmp_path))
    calls = []
    real = vd.train_vae

    def counting(recipe):
        calls.append(recipe)
        return real(recipe)

    monkeypatch.setattr(vd, "train_vae", counting)
    return tmp_path, calls


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(vd.CACHE_ENV, str(tmp_path / "c"))
    assert vd.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(vd.CACHE_ENV)
    assert vd.cache_dir() == vd.Path.home() / ".cache" / "vae-aggregate-estimators"


def test_train_is_deterministic_and_leaves_global_state():
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    mu1, lv1 = vd.train_vae(TINY)
    mu2, lv2 = vd.train_vae(TINY)
    assert mu1.shape == lv1.shape == (1797, 2) and mu1.dtype == np.float64
    assert np.isfinite(mu1).all() and np.isfinite(lv1).all()
    assert np.array_equal(mu1, mu2) and np.array_equal(lv1, lv2)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
    mu3, _ = vd.train_vae(replace(TINY, seed=1))
    assert not np.array_equal(mu1, mu3)


def test_data():
    x = vd.load_digits_data()
    assert x.shape == (vd.DIGITS_N, 64) and float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_cache_roundtrip(cache):
    tmp, calls = cache
    a = vd.digits_posteriors(TINY)
    assert len(calls) == 1 and vd.cache_path(TINY).is_file() and vd.cache_path(TINY).parent == tmp
    b = vd.digits_posteriors(TINY)
    assert len(calls) == 1  # loaded, not trained
    assert torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar)
    assert a.name == "vae-digits" and a.dtype == torch.float64 and (a.N, a.D) == (1797, 2)
    assert [p.name for p in tmp.iterdir()] == [vd.cache_path(TINY).name]  # no temporary files left
    with np.load(vd.cache_path(TINY)) as data:
        assert str(data["fingerprint"]) == TINY.fingerprint()
    vd.digits_posteriors(TINY, retrain=True)
    assert len(calls) == 2


def test_changed_recipe_retrains(cache):
    tmp, calls = cache
    a = vd.digits_posteriors(TINY)
    b = vd.digits_posteriors(replace(TINY, epochs=2))
    assert len(calls) == 2 and len(list(tmp.iterdir())) == 2
    assert not torch.equal(a.mu, b.mu)
    vd.digits_posteriors(TINY)
    vd.digits_posteriors(replace(TINY, epochs=2))
    assert len(calls) == 2


def test_fingerprint_covers_recipe_torch_and_trainer(monkeypatch):
    base = TINY.fingerprint()
    changes = dict(latent_dim=3, hidden=(17,), beta=2.0, epochs=2, batch_size=128, lr=1e-2, seed=1)
    prints = {replace(TINY, **{k: v}).fingerprint() for k, v in changes.items()}
    assert base not in prints and len(prints) == len(changes)
    assert vd.Recipe(beta=1).fingerprint() == vd.Recipe(beta=1.0).fingerprint()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert TINY.fingerprint() != base
    monkeypatch.undo()
    monkeypatch.setattr(vd, "TRAINER_VERSION", vd.TRAINER_VERSION + 1)
    assert TINY.fingerprint() != base


def test_stale_or_corrupt_cache_is_retrained(cache):
    tmp, calls = cache
    path = vd.cache_path(TINY)
    path.write_bytes(b"not an npz")
    a = vd.digits_posteriors(TINY)
    assert len(calls) == 1
    np.savez(path, mu=np.zeros((1797, 2)), logvar=np.zeros((1797, 2)), fingerprint=np.array("other"))
    b = vd.digits_posteriors(TINY)
    assert len(calls) == 2 and torch.equal(a.mu, b.mu)


def test_failed_write_leaves_no_file_and_warns(cache, monkeypatch):
    tmp, calls = cache

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(vd.np, "savez", broken)
    with pytest.warns(UserWarning, match="could not cache"):
        field = vd.digits_posteriors(TINY)
    assert field.N == 1797 and list(tmp.iterdir()) == []


def test_recipe_validation():
    for kwargs in ({"latent_dim": 0}, {"epochs": 1.5}, {"beta": 0.0}, {"lr": float("nan")},
                   {"seed": -1}, {"hidden": (0,)}):
        with pytest.raises(ValueError, match=rf"Recipe\.{next(iter(kwargs))}"):
            vd.Recipe(**kwargs)
    with pytest.raises(TypeError, match="recipe"):
        vd.digits_posteriors({"latent_dim": 2})


def test_beta_for_separation():
    assert vd.beta_for_separation(0.0) == 4.0 and vd.beta_for_separation(1.0) == 1 / 16
    assert math.isclose(vd.beta_for_separation(1 / 3), 1.0)
    betas = [vd.beta_for_separation(s) for s in np.linspace(0, 1, 11)]
    assert all(b < a for a, b in zip(betas, betas[1:]))


def test_scenario(cache, monkeypatch):
    tmp, calls = cache
    monkeypatch.setattr(vd, "DEFAULT_RECIPE", TINY)
    full = make_scenario("vae-digits", D=3, separation=0.5, seed=0)
    assert (full.N, full.D) == (1797, 3) and full.name == "vae-digits"
    assert calls == [replace(TINY, latent_dim=3, beta=0.5, seed=0)]
    again = make_scenario("vae-digits", D=3, separation=0.5, seed=0)
    assert len(calls) == 1 and torch.equal(full.mu, again.mu)
    # N < 1797: a deterministic subsample of the rows, in data order
    sub = make_scenario("vae-digits", N=100, D=3, separation=0.5, seed=0)
    sub2 = make_scenario("vae-digits", N=100, D=3, separation=0.5, seed=0)
    assert sub.N == 100 and torch.equal(sub.mu, sub2.mu) and len(calls) == 1
    rows = (sub.mu[:, None, :] == full.mu[None]).all(-1).nonzero()[:, 1]
    assert len(rows) == 100 and bool((rows.diff() > 0).all())
    assert torch.equal(sub.logvar, full.logvar[rows])
    # another seed trains another model
    other = make_scenario("vae-digits", D=3, separation=0.5, seed=1)
    assert len(calls) == 2 and not torch.equal(other.mu, full.mu)


def _rate(field):
    """avg_kl = (1/N) sum_n KL(q(z|n) || N(0, I)), closed form."""
    return float((0.5 * (field.mu ** 2 + field.logvar.exp() - 1 - field.logvar).sum(1)).mean())


@pytest.mark.slow
def test_default_recipe_separation(cache):
    # the real recipe, three betas: the rate falls as beta rises (rate-distortion), collapse at s = 0
    rates = [_rate(make_scenario("vae-digits", separation=s)) for s in (0.0, 0.5, 1.0)]
    assert rates[0] < 0.01 < rates[1] < rates[2], rates
    assert rates[2] > math.log(1797), rates


def test_training_shows_a_progress_bar_on_a_terminal_only(monkeypatch):
    quiet = vd.train_vae(replace(TINY, epochs=3))
    term = Terminal()
    monkeypatch.setattr(vd.sys, "stderr", term)
    monkeypatch.delenv(vd.PROGRESS_ENV, raising=False)
    shown = vd.train_vae(replace(TINY, epochs=3))
    assert "training vae-digits" in term.text and "3/3" in term.text and "epoch" in term.text
    assert "loss " in term.text
    # the bar changes no number: bit-identical posteriors
    assert np.array_equal(shown[0], quiet[0]) and np.array_equal(shown[1], quiet[1])
    term.text = ""
    monkeypatch.setenv(vd.PROGRESS_ENV, "0")
    vd.train_vae(replace(TINY, epochs=3))
    assert term.text == ""
