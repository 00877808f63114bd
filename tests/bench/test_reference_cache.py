"""The reference cache: keyed by the field, the settings and the source of everything that
computes a reference (the whole references and kernels packages), read back as written."""
import math
import shutil
from pathlib import Path

import pytest

import estimators
import estimators.references as refs
from estimators.bench import reference_cache
from estimators.bench.reference_cache import REFERENCE_SOURCES, ReferenceCache, compute_reference, source_hash
from estimators.scenarios import SCENARIOS, make_scenario

PACKAGE = Path(estimators.__file__).parent


@pytest.mark.slow  # builds every scenario (vae-digits trains a model on a cold cache)
def test_every_scenario_reference_satisfies_the_identities(tmp_path):
    cache = ReferenceCache(tmp_path)
    settings = {"samples": 16, "quadrature_nodes": 16, "seed": 0}
    for name in SCENARIOS:
        real = SCENARIOS[name].real  # trained fields keep their own D
        N = 200 if real else 60
        fld = make_scenario(name, N=N, D=None if real else 3, separation=0.5)
        ref = compute_reference(fld, settings, cache)
        q = {k: ref[k]["value"] for k in ("avg_kl", "mi", "kl_agg", "tc", "dimwise_kl")}
        assert q["avg_kl"] == pytest.approx(q["mi"] + q["kl_agg"], abs=1e-9), name
        assert q["kl_agg"] == pytest.approx(q["tc"] + q["dimwise_kl"], abs=1e-9), name
        assert 0 <= q["mi"] <= math.log(N) + 4 * ref["mi"]["se"], name
        assert compute_reference(fld, settings, cache) == ref  # cached on disk, read back as written


def test_reference_cache_is_keyed_by_field_and_settings(tmp_path, monkeypatch):
    cache = ReferenceCache(tmp_path)
    fld = make_scenario("gaussian", N=30, D=3)
    settings = {"samples": 8, "quadrature_nodes": 8, "seed": 0}
    ref = compute_reference(fld, settings, cache)
    assert len(list(tmp_path.glob("*.json"))) == 1

    monkeypatch.setattr(refs, "exact_references", lambda *a, **k: pytest.fail("recomputed a cached reference"))
    assert compute_reference(fld, settings, cache) == ref
    monkeypatch.undo()
    calls = []
    real = refs.exact_references
    monkeypatch.setattr(refs, "exact_references", lambda *a, **k: calls.append(k) or real(*a, **k))
    compute_reference(fld, dict(settings, samples=9), cache)
    other = make_scenario("gaussian", N=30, D=3, seed=1)
    compute_reference(other, settings, cache)
    assert len(calls) == 2
    # new code behind the references: a new key, so the value is recomputed
    monkeypatch.setattr(reference_cache, "source_hash", lambda: "changed")
    compute_reference(fld, settings, cache)
    assert len(calls) == 3


def test_a_corrupt_entry_is_recomputed(tmp_path):
    cache = ReferenceCache(tmp_path)
    fld = make_scenario("gaussian", N=20, D=3)
    settings = {"samples": 4, "quadrature_nodes": 8, "seed": 0}
    ref = compute_reference(fld, settings, cache)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    assert cache.get(entry.stem) is None
    again = compute_reference(fld, settings, cache)
    timing = {"seconds", "bracket_seconds"}
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in ref.items() if k not in timing}
    assert cache.get(entry.stem) == again  # rewritten


def test_source_hash_covers_every_file_of_references_and_kernels(tmp_path):
    root = tmp_path / "estimators"
    for entry in REFERENCE_SOURCES + ("log_qz",):
        src = PACKAGE / entry
        if src.is_dir():
            shutil.copytree(src, root / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / entry)
    assert source_hash(root) == source_hash()  # the same files give the same hash, wherever they are
    sources = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c") and "log_qz" not in p.parts)
    assert any(p.name == "mixture.c" for p in sources)  # the native kernel's C source counts too
    assert {p.relative_to(root).parts[0] for p in sources} == {Path(e).parts[0] for e in REFERENCE_SOURCES}
    seen = {source_hash(root)}
    for i, path in enumerate(sources):
        copy = tmp_path / f"copy{i}"
        shutil.copytree(root, copy)
        target = copy / path.relative_to(root)
        target.write_bytes(target.read_bytes() + b"\n")
        seen.add(source_hash(copy))
    assert len(seen) == len(sources) + 1  # every file changes the hash
    other = tmp_path / "other"
    shutil.copytree(root, other)
    (other / "log_qz" / "api.py").write_text("# not behind the references\n")
    assert source_hash(other) == source_hash(root)
