"""The command line itself: every subcommand is registered, help works, errors are one line."""
import pytest

from estimators.cli import COMMANDS, build_parser, main


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert tuple(sub.choices) == COMMANDS
    assert set(COMMANDS) >= {"exact", "bench", "report", "compare", "audit"}


@pytest.mark.parametrize("command", COMMANDS)
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and "usage: python -m estimators " + command in capsys.readouterr().out


def test_bench_help_lists_the_presets(capsys):
    from estimators.bench.presets import PRESETS

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert name in out and preset.description.split()[0] in out


@pytest.mark.parametrize("command", ["bench", "exact"])
def test_help_lists_the_names(capsys, command):
    from estimators.bench.plan import known_names

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    known = known_names()
    wanted = ["scenarios", "estimators"] + (["tasks", "log_px_estimators", "quantities"] if command == "bench" else [])
    for kind in wanted:
        for name in known[kind]:
            assert name in out, (kind, name)
    assert max(len(line) for line in out.splitlines()) <= 100
