"""Files the package writes: its cache directory and atomic writes.

Atomic: the content goes to a temporary file in the target's folder, is flushed to disk and then
renamed over the target with ``os.replace`` (atomic on POSIX), so a reader, a concurrent process
or a crash never sees a half-written file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CACHE_ENV", "cache_dir", "atomic_path", "write_atomic", "write_if_changed"]

CACHE_ENV = "VAE_ESTIMATORS_CACHE"


def cache_dir() -> Path:
    """The cache directory: ``$VAE_ESTIMATORS_CACHE`` if set, else ``~/.cache/vae-aggregate-estimators``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vae-aggregate-estimators"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path`` atomically.

    For writers that take a file name (``np.savez``, a compiler's ``-o``). On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically, flushed to disk first."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_if_changed(path: str | os.PathLike, data: str | bytes) -> bool:
    r"""Write ``data`` to ``path`` atomically unless the file already holds exactly it; whether it wrote."""
    path = Path(path)
    new = data.encode() if isinstance(data, str) else data
    try:
        if path.is_file() and path.read_bytes() == new:
            return False
    except OSError:
        pass
    write_atomic(path, data)
    return True


def read_fingerprinted(path: str | os.PathLike, fingerprint: str, keys: tuple[str, ...]) -> tuple | None:
    r"""The arrays ``keys`` of a cached ``.npz`` whose ``fingerprint`` entry equals ``fingerprint``, or None when
    the file is missing, unreadable (corrupt, foreign) or written for another fingerprint: the caller recomputes."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            return tuple(np.array(data[k]) for k in keys)
    except Exception:  # corrupt or foreign file
        return None
