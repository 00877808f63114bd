r"""Where the work runs: in this process (the default), or on a dask.distributed cluster.

Two executors share one small interface:

* ``map(func, items, shared) -> list``: ``func(item, *shared)`` for every item, results in item
  order. ``func`` is a module-level (picklable) function and ``shared`` a tuple of objects the same
  for every item; this is what ``estimators.exact_references(..., executor=)`` takes for its query
  chunks.
* ``as_completed(func, items, shared)``: the same calls, yielded as ``(index, result, error)`` in
  the order they finish (``error`` an exception, ``result`` None then). The benchmark runner
  (:mod:`.runner`) appends each unit's rows to the CSV as its ``(index, rows, None)`` arrives, so
  a run stopped at any point keeps every finished unit.

:data:`SERIAL` (:class:`SerialExecutor`) calls ``func`` here, in order. :class:`DaskExecutor` runs
the calls as dask tasks: on a local cluster of K single-threaded worker processes
(``workers=K``), or on an existing cluster (``scheduler=ADDRESS``, any number of machines).
``shared`` is sent to every worker once (``scatter(..., broadcast=True)``), not with every task.
dask is imported only when a :class:`DaskExecutor` starts: the serial path needs no dask installed.

The numbers do not depend on the executor or on the number of workers: every unit draws from
its own seeded generators (:mod:`.tasks`), the reference chunks are fixed by the references
themselves, and each worker runs torch (and so the C kernels, which take torch's thread count)
on one thread; torch's and the kernels' results do not depend on their thread count.

When a worker dies (killed, out of memory), dask runs its task again on another worker, up to
``allowed_failures`` times (the local cluster restarts the dead worker); a task whose workers
keep dying arrives as ``(index, None, error)``: the runner records its unit as status "error"
rows, which the next run retries.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..references import executor as references_executor

__all__ = ["SerialExecutor", "DaskExecutor", "SERIAL", "SchedulerUnreachable", "add_cluster_arguments",
           "executor_from_args", "package_hash", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_ALLOWED_FAILURES"]

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler (and for it to have a worker)
DEFAULT_ALLOWED_FAILURES = 3  # worker deaths a task may cause before it is given up (dask's own default)
_PACKAGE = Path(__file__).resolve().parents[1]  # estimators/


class SchedulerUnreachable(ValueError, ConnectionError):
    r"""No dask scheduler answered at the address given (or it has no workers)."""


class SerialExecutor(references_executor.SerialExecutor):
    r"""Runs every call here, in order (today's behaviour, and the default); the references' serial executor with
    what the benchmark's run loop also asks of an executor (a context, a description, results as they finish)."""

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def describe(self) -> str:
        return "this process"

    def as_completed(self, func: Callable, items: Sequence, shared: tuple = ()) -> Iterator[tuple[int, Any, Exception | None]]:
        r"""Yield ``(index, func(item, *shared), None)`` in order, ``(index, None, exc)`` where it raised."""
        for i, item in enumerate(items):
            try:
                value = func(item, *shared)
            except Exception as exc:  # handed to the caller, like a task that failed on a worker
                yield i, None, exc
                continue
            yield i, value, None


SERIAL = SerialExecutor()


def _single_threaded(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _call(func: Callable, item, shared: tuple, threads: int):
    r"""A task on a worker: ``func(item, *shared)`` with torch (and the kernels) on ``threads`` threads."""
    _single_threaded(threads)
    return func(item, *shared)


def _compact(obj):
    r"""``obj``, with a torch tensor that is a view of a larger storage (a chunk sliced out of all the draws)
    copied out: pickling a view sends its whole storage, every chunk the size of all of them."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if obj.untyped_storage().nbytes() > obj.numel() * obj.element_size():
            return obj.clone()
        return obj
    if type(obj) in (tuple, list):
        return type(obj)(_compact(x) for x in obj)
    return obj


def package_hash(root: str | os.PathLike = _PACKAGE) -> str:
    r"""SHA-256 (16 hex digits) of the package's source (``.py``, ``.c``, ``.h`` under ``root``) and of its
    shipped data: two processes with the same hash compute the same numbers."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted((p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                     and p.suffix not in (".pyc", ".so", ".o")), key=lambda p: p.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _worker_identity() -> tuple[str, str]:
    r"""Run on each worker when connecting: where its ``estimators`` lives and the hash of its source."""
    return str(_PACKAGE), package_hash(_PACKAGE)  # this module's own package, as the worker imports it


class DaskExecutor:
    r"""Runs the calls as tasks on a dask.distributed cluster.

    Args:
        workers: start a local cluster of this many worker processes (one thread each).
        scheduler: or connect to the scheduler of an existing cluster at this address
            (``tcp://host:8786``); exactly one of the two.
        connect_timeout: seconds to reach the scheduler and for it to have a worker.
        allowed_failures: worker deaths one task may cause before it is given up (local cluster;
            an existing cluster uses its scheduler's ``distributed.scheduler.allowed-failures``).
        threads: torch (and kernel) threads of each task (1: one task per core).

    Use it as a context manager (``with DaskExecutor(workers=2) as ex: ...``): the cluster or the
    connection is made on entering and closed on leaving.

    Raises:
        ValueError: ``workers`` not a positive integer (naming ``--workers``), both or neither given.
        SchedulerUnreachable (a ValueError and a ConnectionError): on entering, no scheduler at
            ``scheduler`` within ``connect_timeout`` (naming ``--scheduler`` and the address), or one
            without workers. ValueError: workers that run another version of the package.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, allowed_failures: int = DEFAULT_ALLOWED_FAILURES,
                 threads: int = 1):
        if (workers is None) == (scheduler is None):
            raise ValueError("give one of --workers (a local cluster) or --scheduler (an existing one), "
                             + ("not both" if workers is not None else "got neither"))
        if workers is not None:
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ValueError(f"--workers must be a positive number of worker processes, got {workers!r}")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise ValueError(f"--scheduler must be a scheduler address such as tcp://host:8786, got {scheduler!r}")
        if not (isinstance(connect_timeout, (int, float)) and connect_timeout > 0):
            raise ValueError(f"--connect-timeout must be a positive number of seconds, got {connect_timeout!r}")
        if isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int) or allowed_failures < 0:
            raise ValueError(f"allowed_failures must be an integer >= 0, got {allowed_failures!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.n_workers = workers
        self.scheduler = scheduler.strip() if scheduler is not None else None
        self.connect_timeout = float(connect_timeout)
        self.allowed_failures = allowed_failures
        self.threads = threads
        self.client = None
        self.cluster = None
        self._shared = None  # (objects, future) of the last `shared` sent to the workers

    # -- the cluster -------------------------------------------------------------------------------------
    def __enter__(self) -> "DaskExecutor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        r"""Start the local cluster, or connect to the scheduler (see the class for the errors)."""
        if self.client is not None:
            return
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover  (requirements.txt installs both)
            flag = "--workers" if self.scheduler is None else "--scheduler"
            raise ValueError(f"{flag} needs dask and distributed installed (pip install -r requirements.txt): "
                             f"{exc}") from None
        if self.scheduler is None:
            # The scheduler of a local cluster runs in this process and reads its config when it is made.
            # A worker gets one task at a time (saturation 1): a worker that dies takes down only the task
            # it was running, so no other task is counted against its allowed failures.
            with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures,
                                  "distributed.scheduler.worker-saturation": 1.0}):
                self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster, set_as_default=False)
        else:
            self.client = self._connect(Client)
        try:
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _connect(self, Client):
        where = f"--scheduler {self.scheduler!r}"
        try:
            return Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SchedulerUnreachable(
                f"{where}: no dask scheduler answered within {self.connect_timeout:g} s ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); start one with "
                f"`dask scheduler` and workers with `dask worker ADDRESS`, or run locally with --workers K") from None
        except ValueError as exc:  # a malformed address
            raise ValueError(f"{where} is not a dask scheduler address (e.g. tcp://host:8786): {exc}") from None

    def _check_workers(self) -> None:
        r"""At least one worker, each running this very package (else the numbers could differ)."""
        where = f"--scheduler {self.scheduler!r}" if self.scheduler else f"--workers {self.n_workers}"
        try:
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError):
            raise SchedulerUnreachable(f"{where}: the scheduler has no worker after {self.connect_timeout:g} s; "
                                       f"start some with `dask worker {self.scheduler or 'ADDRESS'}`") from None
        if self.scheduler is None:
            return  # a local cluster's workers import this very package
        mine = package_hash()
        identities = self.client.run(_worker_identity)
        other = {addr: ident for addr, ident in identities.items() if ident[1] != mine}
        if other:
            addr, (root, _) = sorted(other.items())[0]
            raise ValueError(
                f"{where}: {len(other)} of {len(identities)} workers run another version of the estimators package "
                f"(worker {addr}: {root}); install the same version on every machine")

    def _scatter(self, shared: tuple, fresh: bool):
        r"""The future of ``shared`` on every worker: sent once, and again only for other objects (the
        references call :meth:`map` many times with the same prepared mixture) or when ``fresh``."""
        last = self._shared
        if not fresh and last is not None and len(last[0]) == len(shared) and all(a is b for a, b in zip(last[0], shared)):
            return last[1]
        self._drop_shared()
        # A list of one, so that a tuple or dict is not split into one future per element.
        [future] = self.client.scatter([_compact(shared)], broadcast=True, hash=False)
        self._shared = (shared, future)  # holding the objects keeps their ids from being reused
        return future

    def _drop_shared(self) -> None:
        last, self._shared = self._shared, None
        if last is not None and self.client is not None:
            self.client.cancel([last[1]])

    def close(self) -> None:
        r"""Close the connection (and the local cluster); idempotent."""
        self._drop_shared()
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    @property
    def workers(self) -> int:
        r"""Workers now connected (0 before :meth:`start`)."""
        if self.client is None:
            return 0
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def describe(self) -> str:
        if self.scheduler is None:
            return f"a local dask cluster of {self.n_workers} worker process{'es' if self.n_workers != 1 else ''}"
        return f"the dask cluster at {self.scheduler} ({self.workers} workers)"

    # -- the work ----------------------------------------------------------------------------------------
    def map(self, func: Callable, items: Sequence, shared: tuple = ()) -> list:
        r"""``[func(item, *shared) for item in items]``, computed on the workers; results in item order.

        Raises:
            the first exception a call raised; RuntimeError if a call's workers kept dying.
        """
        items = list(items)
        results = [None] * len(items)
        calls = self._run(func, items, shared)
        try:
            for i, value, error in calls:
                if error is not None:
                    raise error
                results[i] = value
        finally:
            calls.close()  # cancels what is still running
        return results

    def as_completed(self, func: Callable, items: Sequence, shared: tuple = ()) -> Iterator[tuple[int, Any, Exception | None]]:
        r"""Yield ``(index, func(item, *shared), None)`` as each call finishes on the cluster, or
        ``(index, None, exc)`` for a call that raised or whose workers kept dying. Leaving the loop
        early (an exception, Ctrl-C) cancels the calls not yet finished."""
        return self._run(func, list(items), shared)

    def _run(self, func: Callable, items: list, shared: tuple) -> Iterator[tuple[int, Any, Exception | None]]:
        from concurrent.futures import CancelledError  # what a cancelled dask future raises

        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        if self.client is None:
            raise RuntimeError("the DaskExecutor is not started: use it in a `with` block")
        name = f"{getattr(func, '__name__', 'call')}-{os.urandom(4).hex()}"
        pending = list(range(len(items)))
        for attempt in range(self.allowed_failures + 2):
            if not pending:
                return
            if attempt:  # the workers holding `shared` all died: send it again, run what was lost
                try:
                    self.client.wait_for_workers(1, timeout=max(60.0, self.connect_timeout))
                except (OSError, TimeoutError):
                    break
            shared_future = self._scatter(tuple(shared), fresh=attempt > 0)
            futures = {self.client.submit(_call, func, _compact(items[i]), shared_future, self.threads, pure=False,
                                          key=f"{name}-{attempt}-{i}"): i for i in pending}
            lost = []
            try:
                for future in as_completed(list(futures), loop=self.client.loop):
                    i = futures[future]
                    try:
                        value = future.result()
                    except KilledWorker as exc:
                        yield i, None, RuntimeError(f"its dask worker died each time it ran ({exc})".replace("\n", " "))
                    except CancelledError:  # `shared` was lost with the workers that held it
                        lost.append(i)
                    except Exception as exc:
                        yield i, None, exc
                    else:
                        yield i, value, None
                    future.release()
            finally:
                if self.client is not None:
                    self.client.cancel(list(futures))
            pending = sorted(lost)
        for i in pending:
            yield i, None, RuntimeError("the dask cluster lost its workers before this call could finish")


def add_cluster_arguments(parser) -> None:
    r"""Add ``--workers K`` / ``--scheduler ADDRESS`` (mutually exclusive) and ``--connect-timeout`` to an
    argparse parser; :func:`executor_from_args` turns them into an executor."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="K",
                       help="run on a local dask cluster of K worker processes, one thread each (K <= cores; "
                            "default: in this process, no dask)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing dask cluster: the address of its scheduler (tcp://host:8786), "
                            "whose workers have this package installed (see the README, 'Scale out')")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                        help=f"with --scheduler: seconds to reach it and find a worker (default {DEFAULT_CONNECT_TIMEOUT:g})")


def executor_from_args(args) -> SerialExecutor | DaskExecutor:
    r"""The executor the parsed ``--workers`` / ``--scheduler`` ask for (:data:`SERIAL` with neither);
    not started yet: use it as a context manager.

    Raises:
        ValueError: ``--workers`` below 1 (naming it), a bad ``--connect-timeout``.
    """
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is None and scheduler is None:
        return SERIAL
    return DaskExecutor(workers=workers, scheduler=scheduler,
                        connect_timeout=getattr(args, "connect_timeout", DEFAULT_CONNECT_TIMEOUT))
