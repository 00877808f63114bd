"""One writer per results CSV: a second process is refused (or waits), a dead holder blocks nothing,
and the lock is re-entrant within a process."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from estimators.bench.lock import LockedError, holder_of, lock_path, output_lock

ROOT = Path(__file__).resolve().parents[2]
HOLDER = ("import sys\n"
          "from estimators.bench.lock import output_lock\n"
          "with output_lock(sys.argv[1], command='the holder'):\n"
          "    print('held', flush=True)\n"
          "    sys.stdin.readline()\n")


def hold(csv):
    """A process that holds the lock of ``csv`` until its stdin is closed (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(csv)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow  # a fresh interpreter imports torch
def test_a_second_process_is_refused_then_admitted(tmp_path):
    csv = tmp_path / "out" / "standard.csv"
    proc = hold(csv)
    try:
        with pytest.raises(LockedError) as exc:
            with output_lock(csv):
                pass
        message = str(exc.value)
        assert message.startswith(f"{csv} is being written by another run (pid {proc.pid}, started at ")
        assert "the holder" in message and "--wait" in message and "\n" not in message
        assert holder_of(lock_path(csv))["pid"] == proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    with output_lock(csv) as path:  # released when the holder ended
        assert holder_of(path)["pid"] == os.getpid()


@pytest.mark.slow
def test_a_killed_holder_blocks_nothing(tmp_path):
    csv = tmp_path / "r.csv"
    proc = hold(csv)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert holder_of(lock_path(csv))["pid"] == proc.pid  # its lock file is left behind ...
    with output_lock(csv, command="next"):  # ... and blocks nothing
        assert holder_of(lock_path(csv))["command"] == "next"


@pytest.mark.slow
def test_wait_waits_for_the_holder(tmp_path):
    csv = tmp_path / "r.csv"
    proc = hold(csv)
    said = []
    t0 = time.monotonic()

    def release_later():
        time.sleep(1.0)
        proc.stdin.close()

    threading.Thread(target=release_later).start()
    with output_lock(csv, wait=True, log=said.append):
        assert time.monotonic() - t0 >= 0.9
    proc.wait(timeout=60)
    assert len(said) == 1 and said[0].startswith(f"waiting for another run (pid {proc.pid}")


def test_a_stale_lock_file_blocks_nothing_and_the_lock_is_reentrant(tmp_path):
    csv = tmp_path / "r.csv"
    path = lock_path(csv)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 999999999, "started": "yesterday"}))  # left by a process long gone
    with output_lock(csv) as held:
        assert held == path == tmp_path / ".cache" / "locks" / "r.csv.lock"
        with output_lock(csv):  # the same process again (bench holds it around execute)
            pass
        assert holder_of(path)["pid"] == os.getpid()
    with output_lock(csv):  # released
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache"]  # no CSV created, only the hidden lock
