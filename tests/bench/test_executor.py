"""The execution layer: a grid on 2 local dask workers writes the serial run's CSV, survives a
worker that dies, and bad cluster input (--workers 0, an unreachable scheduler, both flags) is one
clear error with nothing written.

One local cluster of 2 single-threaded worker processes serves the module (starting one takes
seconds); a worker killed by a test is restarted by its nanny before the next test uses it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import pytest
import torch

from estimators.bench import executor as executor_module
from estimators.bench import runner
from estimators.bench.compare import compare_results
from estimators.bench.executor import SERIAL, DaskExecutor, SchedulerUnreachable, _compact, executor_from_args
from estimators.bench.plan import plan
from estimators.bench.store import read_results
from estimators.bench.tasks import AggregateUnit
from estimators.cli import main
from estimators.references import exact_references
from estimators.scenarios import make_scenario
from tests.bench.helpers import ESTIMATORS, TIMING, TINY

pytestmark = pytest.mark.slow


# -- module-level functions and units: they travel to the worker processes by reference --------------------

def _weighted_lse(item: torch.Tensor, weight: float, delay: float) -> torch.Tensor:
    time.sleep(delay * float(item[0]))  # the first items finish last
    return torch.logsumexp(weight * item, dim=0)


def _threads(item) -> int:
    return torch.get_num_threads()


def _fails(item) -> None:
    raise ArithmeticError(f"item {item} failed")


@dataclass(frozen=True)
class DyingUnit(AggregateUnit):
    """An aggregate unit whose worker process dies while measuring: once (the first time, leaving a
    marker file), or every time (``always``). Same cells, seeds and numbers as the unit it copies."""

    marker: str = ""
    always: bool = False

    def measure(self, plan_):
        if self.always or not os.path.exists(self.marker):
            open(self.marker, "a").close()
            os._exit(1)  # as a worker killed by the OOM killer or kill -9: no exception, no cleanup
        return super().measure(plan_)


@pytest.fixture(scope="module")
def cluster():
    with DaskExecutor(workers=2, allowed_failures=1) as ex:
        yield ex


@pytest.fixture
def two_workers(cluster):
    cluster.client.wait_for_workers(2, timeout=60)  # a worker a previous test killed is back
    return cluster


def _quiet(plan_, out, executor=None):
    return runner.execute(plan_, out, "t", progress=False, log=lambda m: None, executor=executor)


@pytest.fixture(scope="module")
def serial_csv(tmp_path_factory):
    """The TINY grid run in this process, the way every run went before the executors."""
    return _quiet(plan(TINY, estimators=ESTIMATORS), tmp_path_factory.mktemp("serial"))


def _same_csv(new, serial) -> None:
    result = compare_results(new, serial, ignore=TIMING)
    assert result.ok, "\n".join(result.lines())


def _with_dying(plan_, position: int, marker, always=False):
    """The plan with its unit at ``position`` replaced by a :class:`DyingUnit` of the same cells."""
    units = list(plan_.units)
    units[position] = DyingUnit(**asdict(units[position]), marker=str(marker), always=always)
    return type(plan_)(units, plan_.fields, plan_.reference_settings)


# -- map and as_completed ---------------------------------------------------------------------------------

def test_map_returns_results_in_item_order_with_shared_arguments_sent_once(two_workers):
    items = [torch.tensor([float(i), 1.0, -2.0]) for i in range(6)][::-1]
    expected = SERIAL.map(_weighted_lse, items, (0.5, 0.0))
    got = two_workers.map(_weighted_lse, items, (0.5, 0.02))
    assert len(got) == len(items) and all(torch.equal(a, b) for a, b in zip(got, expected))
    assert two_workers.map(_weighted_lse, [], (1.0, 0.0)) == []
    assert two_workers.map(_threads, list(range(4))) == [1, 1, 1, 1]  # one thread per worker process


def test_a_call_that_raises_is_reported_not_lost(two_workers):
    with pytest.raises(ArithmeticError, match="item 2 failed"):
        two_workers.map(_fails, [2])
    outcome = list(two_workers.as_completed(_fails, [0, 1]))
    assert sorted(i for i, _, _ in outcome) == [0, 1]
    assert all(value is None and isinstance(error, ArithmeticError) for _, value, error in outcome)
    assert [(i, v, e) for i, v, e in SERIAL.as_completed(_threads, [7])] == [(0, torch.get_num_threads(), None)]


def test_a_view_travels_as_its_own_elements_not_its_whole_storage():
    whole = torch.randn(1000, 3, dtype=torch.float64)
    chunk = _compact(whole[10:20])
    assert torch.equal(chunk, whole[10:20]) and chunk.untyped_storage().nbytes() == 10 * 3 * 8
    assert _compact(whole) is whole
    pair = _compact((whole[:5], 2.0))
    assert isinstance(pair, tuple) and pair[0].untyped_storage().nbytes() == 5 * 3 * 8 and pair[1] == 2.0


class _Counting:
    """An executor that counts the chunks it is handed and passes them on."""

    def __init__(self, inner):
        self.inner, self.items, self.workers = inner, 0, inner.workers

    def map(self, func, items, shared=()):
        self.items += len(items)
        return self.inner.map(func, items, shared)


def test_exact_references_on_the_cluster_are_the_serial_ones(two_workers):
    field = make_scenario("clustered", N=256, D=3, separation=0.6)
    mu, logvar = field.mu.to(torch.float64), field.logvar.to(torch.float64)
    serial = exact_references(mu, logvar, samples=1024)  # 262,144 draws: 4 query chunks
    counting = _Counting(two_workers)
    spread = exact_references(mu, logvar, samples=1024, executor=counting)
    assert counting.items >= 2  # chunks did go to the workers
    for q in ("mi", "kl_agg", "tc", "dimwise_kl"):
        assert spread[q]["value"] == serial[q]["value"] and spread[q]["se"] == serial[q]["se"]


# -- a grid on the cluster --------------------------------------------------------------------------------

def test_two_workers_write_the_serial_csv(tmp_path, two_workers, serial_csv):
    _same_csv(_quiet(plan(TINY, estimators=ESTIMATORS), tmp_path, two_workers), serial_csv)


def test_references_run_side_by_side_with_enough_fields_and_split_their_work_with_fewer(tmp_path, two_workers,
                                                                                        serial_csv):
    lines = []
    runner.execute(plan(TINY, estimators=ESTIMATORS), tmp_path / "two", "t", progress=False, log=lines.append,
                   executor=two_workers)
    assert sum("s on a worker" in line for line in lines) == 2  # two fields, two workers: one each
    one = replace(TINY, scenarios=TINY.scenarios[:1])
    serial_one = _quiet(plan(one, estimators=ESTIMATORS), tmp_path / "serial-one")
    lines.clear()
    path = runner.execute(plan(one, estimators=ESTIMATORS), tmp_path / "one", "t", progress=False,
                          log=lines.append, executor=two_workers)
    assert not any("on a worker" in line for line in lines)  # one field: its reference splits over both
    _same_csv(path, serial_one)


def test_a_killed_worker_loses_nothing(tmp_path, two_workers, serial_csv):
    marker = tmp_path / "died"
    plan_ = _with_dying(plan(TINY, estimators=ESTIMATORS), 7, marker)
    _same_csv(_quiet(plan_, tmp_path / "out", two_workers), serial_csv)  # run again on another worker
    assert marker.exists()  # a worker did die


def test_a_unit_whose_workers_keep_dying_is_an_error_row_and_a_rerun_completes(tmp_path, two_workers, serial_csv):
    plan_ = plan(TINY, estimators=ESTIMATORS)
    last = len(plan_.units) - 1  # last: no other unit is queued behind it on the worker it kills
    dying = _with_dying(plan_, last, tmp_path / "died", always=True)
    rows = read_results(_quiet(dying, tmp_path / "out", two_workers))
    bad = rows[rows["status"] != "ok"]
    assert len(rows) == 4 * len(plan_.units) and len(bad) == len(plan_.units[last].quantities)
    assert set(bad["estimator"]) == {plan_.units[last].estimator}
    assert bad["error"].str.contains("dask worker died each time").all()
    _same_csv(_quiet(plan_, tmp_path / "out", two_workers), serial_csv)  # the rerun runs only that unit


# -- the CLI ------------------------------------------------------------------------------------------------

def _bench(tmp_path, *flags):
    return main(["bench", "--preset", "quick", "--scenarios", "gaussian", "--estimators", "naive", "mss",
                 "--batch-sizes", "8", "--replicates", "3", "--N", "32", "--D", "2", "--reference-samples", "16",
                 "--no-report", "--no-progress", "--out", str(tmp_path / "out"), *flags])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_workers_below_one_is_one_error_line(tmp_path, capsys, workers):
    assert _bench(tmp_path, "--workers", workers) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --workers must be a positive") and workers in err[0]
    assert not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_one_error_line_naming_it(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    assert _bench(tmp_path, "--scheduler", address, "--connect-timeout", "1") == 2
    assert time.perf_counter() - t0 < 30
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "--scheduler" in err[0] and address in err[0] and "no dask scheduler" in err[0]
    assert not (tmp_path / "out" / "quick.csv").exists()
    with pytest.raises(SchedulerUnreachable):
        DaskExecutor(scheduler=address, connect_timeout=0.5).start()
    assert issubclass(SchedulerUnreachable, ConnectionError)


def test_an_existing_cluster_by_its_address_and_workers_running_other_code(two_workers, monkeypatch):
    address = two_workers.cluster.scheduler_address
    with DaskExecutor(scheduler=address, connect_timeout=5) as remote:
        assert remote.workers == 2 and address in remote.describe()
        assert remote.map(_threads, [0, 1]) == [1, 1]
    monkeypatch.setattr(executor_module, "package_hash", lambda root=None: "another version")  # here only
    with pytest.raises(ValueError, match="2 of 2 workers run another version of the estimators package"):
        DaskExecutor(scheduler=address, connect_timeout=5).start()


def test_workers_and_scheduler_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _bench(tmp_path, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not both"):
        DaskExecutor(workers=2, scheduler="tcp://127.0.0.1:1")


def test_no_flag_is_the_serial_executor_and_the_cli_on_two_workers_writes_its_csv(tmp_path, capsys):
    class Args:
        workers = scheduler = None

    assert executor_from_args(Args()) is SERIAL
    assert _bench(tmp_path / "serial") == 0
    assert _bench(tmp_path / "dask", "--workers", "2") == 0
    assert "running on a local dask cluster of 2 worker processes" in capsys.readouterr().err
    _same_csv(tmp_path / "dask" / "out" / "quick.csv", tmp_path / "serial" / "out" / "quick.csv")


def test_the_serial_path_imports_no_dask():
    code = ("import sys, estimators, estimators.cli, estimators.commands.bench, estimators.bench.runner; "
            "sys.exit(int(any(m in sys.modules for m in ('dask', 'distributed'))))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
