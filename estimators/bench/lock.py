r"""One writer per results CSV: an exclusive lock held for the whole run.

Two runs writing the same ``OUT/NAME.csv`` at once would each rewrite the file from the rows they
read at the start, and one run's rows would vanish. So a run takes an exclusive ``flock`` on
``OUT/.cache/locks/NAME.csv.lock`` (``.cache/`` is git-ignored, and hidden files are never read as
results) before it reads the CSV, and holds it to the end. A second writer gets a
:class:`LockedError` (a ValueError: one ``error:`` line, exit code 2) naming the CSV and the holder,
or waits for it with ``wait=True``.

The lock is the kernel's ``flock`` on an open file, so it is released whenever the holder's
process ends -- normally, by an exception, Ctrl-C or ``kill -9`` -- and the lock *file* left behind
blocks nothing: only a live process holding it open does. The file records the holder (pid, host,
command, start time) for the message of the next writer; it is never deleted (deleting a lock
file races with a writer that has just opened it).

Within one process the lock is re-entrant: the ``bench`` command holds it around planning,
running and reporting, and :func:`.runner.execute` takes it again around the run itself.
Where ``fcntl`` does not exist (Windows) there is no lock.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None

__all__ = ["LockedError", "output_lock", "lock_path", "holder_of"]

_HELD: dict[str, int] = {}  # resolved lock path -> depth, in this process


class LockedError(ValueError):
    r"""Another process is writing the same results CSV."""


def lock_path(csv_path: str | os.PathLike) -> Path:
    r"""The lock file of a results CSV: ``<folder>/.cache/locks/<name>.csv.lock``."""
    csv_path = Path(csv_path)
    return csv_path.parent / ".cache" / "locks" / f"{csv_path.name}.lock"


def holder_of(path: str | os.PathLike) -> dict:
    r"""What the lock file at ``path`` says about its last holder (empty if unreadable)."""
    try:
        value = json.loads(Path(path).read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (its lock file is being written)"
    parts = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host") and holder.get("host") != socket.gethostname():
        parts.append(f"on {holder['host']}")
    parts.append(f"started at {holder.get('started', '?')}")
    text = "another run (" + ", ".join(parts) + ")"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


@contextlib.contextmanager
def output_lock(csv_path: str | os.PathLike, *, wait: bool = False, command: str | None = None, log=None):
    r"""Hold the exclusive lock of the results CSV ``csv_path`` for the ``with`` block.

    Args:
        csv_path: the CSV (its folder is created if need be).
        wait: wait for the holder to finish instead of raising.
        command: what to record as the holder's command (default: this process's argv).
        log: ``log(message)`` is called once before waiting.

    Raises:
        LockedError: another process holds the lock (and ``wait`` is false).
    """
    path = lock_path(csv_path)
    key = str(path.absolute())
    if fcntl is None or key in _HELD:  # no flock here, or already held by this process
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(holder_of(path))
            if not wait:
                raise LockedError(f"{csv_path} is being written by {holder}; wait for it to finish (or pass "
                                  f"--wait), or write elsewhere with --out or --name (lock: {path})") from None
            if log is not None:
                log(f"waiting for {holder} to finish writing {csv_path} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": command if command is not None else " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S%z"), "csv": str(csv_path)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the flock
