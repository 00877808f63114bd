"""scripts/main.sh: its options (the run itself, about five minutes, is the main job, not a test)."""
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "main.sh"


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_help_describes_the_job():
    done = _run("--help")
    assert done.returncode == 0
    for needle in ("results/.reproduce/", "--resume", "MAIN_RESUME", "--update", "time_per_call_s",
                   "1e-9 + 1e-9 |committed|"):
        assert needle in done.stdout


def test_unknown_option_exits_2_before_any_work():
    done = _run("--preset", "quick")
    assert done.returncode == 2 and done.stderr.startswith("error: unknown option --preset")
