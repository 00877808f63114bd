r"""The on-disk cache of exact references (``<out>/.cache/references/<key>.json``).

A field's references take seconds to minutes (a full-N Monte Carlo of kl_agg), so a resumed or
repeated run reads them back. The key hashes everything the value depends on: the posterior
arrays themselves (as float64 bytes), the reference settings, and the source code that computes
them -- every source file of the ``estimators.references`` and ``estimators.kernels`` packages
and of ``estimators/numerics.py`` -- so an entry is stale as soon as any of that code changes.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np
import torch

from .. import references
from ..files import write_atomic
from ..posteriors import Posteriors

__all__ = ["ReferenceCache", "compute_reference", "accepts_progress", "source_hash", "REFERENCE_SOURCES"]

_PACKAGE = Path(__file__).resolve().parents[1]  # estimators/
# What the references are computed by, relative to the package root (folders: every source file under them).
REFERENCE_SOURCES = ("references", "kernels", "numerics.py", "direct/moments.py")  # moments: the brackets
_SOURCE_SUFFIXES = (".py", ".c", ".h")


@functools.lru_cache(maxsize=None)
def source_hash(root: str | os.PathLike = _PACKAGE, sources: tuple[str, ...] = REFERENCE_SOURCES) -> str:
    r"""SHA-256 (16 hex digits) of the relative paths and bytes of every source file in ``sources``
    under ``root`` (``.py``, ``.c``, ``.h``; build outputs and ``__pycache__`` are left out)."""
    root = Path(root)
    files = []
    for entry in sources:
        path = root / entry
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.suffix in _SOURCE_SUFFIXES and "__pycache__" not in p.parts]
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"reference source {str(path)!r} does not exist")
    h = hashlib.sha256()
    for p in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class ReferenceCache:
    r"""Exact references on disk, keyed by the posterior arrays, the settings and :func:`source_hash`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def key(self, mu, logvar, settings: dict) -> str:
        h = hashlib.sha256()
        for a in (mu, logvar):
            arr = np.ascontiguousarray(np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64))
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        h.update(json.dumps(settings, sort_keys=True).encode())
        h.update(source_hash().encode())
        return h.hexdigest()[:24]

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a corrupt entry is recomputed

    def lookup(self, fld: Posteriors, settings: dict) -> tuple[str, dict | None]:
        r"""(key, cached reference or None) of a field's reference with ``settings``."""
        key = self.key(fld.mu, fld.logvar, settings)
        return key, self.get(key)

    def put(self, key: str, value: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / f"{key}.json", json.dumps(_jsonable(value), indent=1, sort_keys=True))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def accepts_progress(fn=None) -> bool:
    r"""Whether ``exact_references`` (or ``fn``) takes a ``progress`` keyword."""
    fn = references.exact_references if fn is None else fn
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in params


def compute_reference(fld: Posteriors, settings: dict, cache: ReferenceCache | None, *, progress=None,
                      executor=None) -> dict:
    r"""``estimators.exact_references`` of a field (in float64) with ``settings``, from the cache when there.

    ``progress`` (None: leave it out) is handed to ``exact_references(..., progress=...)`` where
    that takes one (True: its progress bars on stderr), so a minutes-long full-N Monte Carlo shows
    how it advances; ``executor`` (None: leave it out) to ``exact_references(..., executor=...)``, which
    evaluates its Monte Carlo's chunks of draws there. Neither is part of the cache key (they change no
    number). ``settings`` may hold ``target_se`` (a preset's ``reference_target_se``): a pilot run then
    picks the draws, and the entry records what was used (``monte_carlo``)."""
    key = None
    if cache is not None:
        key, hit = cache.lookup(fld, settings)
        if hit is not None:
            return hit
    extra = {"progress": progress} if progress is not None and accepts_progress() else {}
    if executor is not None:
        extra["executor"] = executor
    value = references.exact_references(fld.mu.to(torch.float64), fld.logvar.to(torch.float64), **settings, **extra)
    if cache is not None:
        cache.put(key, value)
    return value
