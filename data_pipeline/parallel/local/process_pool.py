"""A pool of local worker processes that keeps input order, reports worker failures with
context, bounds each task by a deadline if asked and never leaves a process behind (no
Dagster: any Python code can import it)."""

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from data_pipeline.parallel.errors import (
    ChunkFailedError,
    WorkerDiedError,
    failure_message,
    task_name,
)
from data_pipeline.parallel.local.worker_map import MapLimits, WorkerMap
from data_pipeline.parallel.local.worker_processes import WorkerSet, WorkersFailedToStart
from data_pipeline.parallel.pool_life import PoolLife
from data_pipeline.parallel.progress import LongTasks
from data_pipeline.parallel.settings import DEFAULT_START_METHOD, START_METHODS, StartMethod
from data_pipeline.parallel.stats import PoolStats, Timing, timed_call
from data_pipeline.parallel.thread_logs import this_threads_records_to

logger = logging.getLogger(__name__)
# One fork server serves every forkserver pool of a process: after the first pool, the next
# ones start warm (the server and its preloaded modules are up).
_forkserver_pools_started = 0

Task = TypeVar("Task")
Result = TypeVar("Result")


def forkserver_pools_started() -> int:
    """Forkserver pools this process has started (after the first, they start warm)."""
    return _forkserver_pools_started


class _KeptWorkers:
    """Workers of finished maps kept for the next map of the same step, while
    :func:`workers_kept` is open (a pool resource opens it for each step)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes = 0
        self._idle: dict[tuple, list[WorkerSet]] = {}

    def enter(self) -> None:
        with self._lock:
            self._scopes += 1

    def leave(self) -> None:
        with self._lock:
            self._scopes -= 1
            closing = [] if self._scopes else [s for sets in self._idle.values() for s in sets]
            if not self._scopes:
                self._idle.clear()
        for workers in closing:
            workers.stop()

    def take(self, key: tuple) -> WorkerSet | None:
        with self._lock:
            sets = self._idle.get(key)
            return sets.pop() if sets else None

    def keep(self, key: tuple, workers: WorkerSet) -> bool:
        """Keep ``workers`` for the next map (False: no scope is open, stop them)."""
        busy = any(worker.batches or worker.retiring for worker in workers.live)
        with self._lock:
            # A map left early leaves batches in flight: their results must not reach the next.
            if not self._scopes or busy or len(workers.live) != workers.workers:
                return False
            self._idle.setdefault(key, []).append(workers)
            return True

    def any_kept(self) -> bool:
        with self._lock:
            return any(self._idle.values())


_kept = _KeptWorkers()


@contextlib.contextmanager
def workers_kept() -> Iterator[None]:
    """Within the block, pools opened with ``reuse=True`` keep their workers when they close,
    for the next such pool of the same shape; all are stopped when the block ends (the
    outermost, if nested). The pool resource opens one for each Dagster step."""
    _kept.enter()
    try:
        yield
    finally:
        _kept.leave()


def workers_are_kept() -> bool:
    """Whether idle workers are kept now (the next pool of their shape starts warm)."""
    return _kept.any_kept()


class ProcessPool(PoolLife):
    """A pool of ``workers`` processes used as a context manager.

    ``workers=1`` runs every task in this process (same code path, easy to debug). Leaving
    the ``with`` block normally lets the workers exit; leaving it by an exception or an
    interrupt terminates them, then kills any that do not stop within a few seconds (at once
    on a second interrupt). Each worker has pipes of its own (not a shared queue, as in
    ``multiprocessing.Pool`` or ``ProcessPoolExecutor``), so one worker can be stopped (a
    task past its deadline, over the memory limit) or recycled while the others go on, and a
    worker that dies is reported with the very task it was running, which gets
    ``restarts_on_worker_death`` more tries on fresh workers. Workers exit by themselves if
    this process dies.
    """

    def __init__(
        self,
        workers: int,
        start_method: StartMethod = DEFAULT_START_METHOD,
        preload_modules: Iterable[str] = (),
        restarts_on_worker_death: int = 0,
        log: logging.Logger | logging.LoggerAdapter | Any = logger,
        worker_log_level: int = logging.INFO,
        import_paths: Iterable[str] = (),
        *,
        max_tasks_per_worker: int | None = None,
        memory_limit_mb: float | None = None,
        in_process_when_one: bool = True,
        reuse: bool = False,
    ):
        """A pool to use in a ``with`` block.

        Args:
            workers: processes to start (1: tasks run in this process).
            start_method: ``forkserver`` or ``spawn``.
            preload_modules: modules a worker imports before its first task.
            restarts_on_worker_death: tries, on fresh workers, of a task whose worker died.
            log: where warnings and the workers' records and printed lines go.
            worker_log_level: the level from which the workers' records are forwarded.
            import_paths: directories workers put on ``sys.path``.
            max_tasks_per_worker: a worker is replaced by a fresh one after this many tasks
                (for functions that leak).
            memory_limit_mb: a worker whose resident memory passes this is stopped and its
                task reported as out of memory.
            in_process_when_one: with one worker, run tasks in this process (False: in one
                worker process, which a deadline can stop).
            reuse: take idle workers kept by an earlier pool of this shape, and keep these
                when done, while :func:`workers_kept` is open.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        if workers > 1 and multiprocessing.current_process().daemon:
            # A daemonic process may not have children (as joblib, we degrade, not crash).
            log.warning(f"running in a daemonic process: the {workers} workers run serially")
            workers = 1
        self.workers = workers
        self.in_process = workers == 1 and in_process_when_one
        self.max_tasks_per_worker = max_tasks_per_worker
        self.memory_limit_mb = memory_limit_mb
        self.reuse = reuse
        self.start_method = start_method
        self.preload_modules = tuple(preload_modules)
        self.restarts_on_worker_death = restarts_on_worker_death
        # Records that tasks log at this level or above reach ``log`` as they happen.
        self.log = log
        self.worker_log_level = worker_log_level
        # Directories workers add to sys.path (see :func:`.sendable.import_paths_of`).
        self.import_paths = tuple(import_paths)
        self.stats = PoolStats(
            workers=workers, start_method=start_method if not self.in_process else "none"
        )
        # Every worker process this pool used, including replacements.
        self.worker_pids: set[int] = set()
        self._workers: WorkerSet | None = None
        self._count_items: Callable[[Any], int] | None = None
        self._on_finished: Callable[[Any, float], None] | None = None

    @property
    def _key(self) -> tuple:
        return (
            self.workers,
            self.start_method,
            self.preload_modules,
            self.import_paths,
            self.worker_log_level,
        )

    def _open(self) -> None:
        if not self.in_process:
            self._start_workers()

    def _close(self, abort: bool) -> None:
        self._stop_workers(abort)

    def _start_workers(self) -> None:
        workers = _kept.take(self._key) if self.reuse else None
        if workers is not None:
            workers.log = self.log  # kept from an earlier map of the step
        else:
            workers = WorkerSet(
                self.workers,
                self.start_method,
                self.preload_modules,
                self.log,
                self.worker_log_level,
                self.import_paths,
            )
            try:
                workers.start()
            except WorkersFailedToStart as error:
                raise WorkerDiedError(
                    f"pool workers failed to start ({self.start_method}): {error}. Is the "
                    "package installed in this environment (`pip install -e .`)?"
                ) from error
            if self.start_method == "forkserver":
                global _forkserver_pools_started
                _forkserver_pools_started += 1
        self._workers = workers
        self._note_pids()

    def _note_pids(self) -> None:
        for worker in self._workers.live:  # a worker that gets no task still counts
            self.worker_pids.add(worker.pid)
            self.stats.busy_seconds_by_worker.setdefault(worker.pid, 0.0)

    def _stop_workers(self, abort: bool) -> None:
        workers, self._workers = self._workers, None
        if workers is None:
            return
        if abort:
            workers.abort()
        elif not (self.reuse and _kept.keep(self._key, workers)):
            workers.stop()

    def map(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        describe: Callable[[Task], str] | None = None,
        count_items: Callable[[Result], int] | None = None,
        on_finished: Callable[[Task, float], None] | None = None,
        long_tasks: LongTasks | None = None,
        *,
        task_timeout: float | None = None,
        task_retries: int = 0,
        ordered: bool = True,
        total_tasks: int | None = None,
        batching: bool = True,
    ) -> Iterator[Result]:
        """Yield ``function(task)`` for every task, in the order of ``tasks`` (as they finish
        with ``ordered=False``).

        Tasks are read lazily and sent in batches that take about 50 ms (one at a time at
        first, then as many as the first ones' cost says), a few per worker in flight, so
        memory stays bounded however many tasks there are. A task that raises ends the map
        with :class:`ChunkFailedError` naming it (``describe(task)``, else its position and a
        short repr); a worker that dies ends it with :class:`WorkerDiedError` once the task
        it ran was retried ``restarts_on_worker_death`` times on fresh workers.

        Args:
            function: a top-level function of an importable module.
            tasks: read lazily, as workers become free.
            describe: names a task in errors (its position and repr if None).
            count_items: how many items a result holds, for per-worker insight.
            on_finished: hears ``(task, seconds)`` for each task before its result is
                yielded (so ``tasks``, read lazily, can be cut by what earlier ones cost).
            long_tasks: hears, while this process waits for a result, which tasks the
                workers run and since when (not in-process: the task holds this thread).
            task_timeout: a task running longer has its worker stopped (the others go on)
                and is retried on a fresh one ``task_retries`` times, then fails the map
                (:class:`~.errors.TaskTimeoutError`). Needs worker processes.
            task_retries: see ``task_timeout``.
            ordered: False yields results as they finish (each exactly once).
            total_tasks: how many tasks there are, if known (the last batches are smaller,
                so that every worker has work until the end).
            batching: False sends each task alone (for tasks that take long each).
        """
        if self._workers is None and not self.in_process:
            raise RuntimeError("use the pool inside a 'with' block")
        self._count_items, self._on_finished = count_items, on_finished
        started = time.monotonic()
        try:
            if self.in_process:
                if task_timeout is not None:
                    raise ValueError(
                        "task_timeout needs worker processes to stop: open the pool with "
                        "in_process_when_one=False"
                    )
                yield from self._map_in_process(function, tasks, describe)
            else:
                if function.__module__ == "__main__":
                    raise ValueError(
                        f"{function.__qualname__} is defined in __main__, which pool workers "
                        "do not import: move it into an importable module"
                    )
                limits = MapLimits(
                    task_timeout=task_timeout,
                    task_retries=task_retries,
                    retries_on_worker_death=self.restarts_on_worker_death,
                    max_tasks_per_worker=self.max_tasks_per_worker,
                    memory_limit_bytes=(
                        None if self.memory_limit_mb is None else int(self.memory_limit_mb * 2**20)
                    ),
                )
                worker_map = WorkerMap(
                    self._workers,
                    function,
                    tasks,
                    self.stats,
                    describe=describe,
                    count_items=count_items,
                    on_finished=on_finished,
                    long_tasks=long_tasks,
                    limits=limits,
                    ordered=ordered,
                    total_tasks=total_tasks,
                    batching=batching,
                )
                try:
                    yield from worker_map
                finally:
                    if self._workers is not None:
                        self._note_pids()
        finally:
            self.stats.map_seconds += time.monotonic() - started

    def _map_in_process(self, function, tasks, describe) -> Iterator:
        for index, task in enumerate(tasks):
            try:
                # Only this thread's records, only during the task: the step process has other
                # threads, whose records do not belong to the pool.
                with this_threads_records_to(self.log, self.worker_log_level):
                    result, timing = timed_call(function, task)
            except SystemExit as error:
                raise ChunkFailedError(
                    f"{task_name(index, task, describe)} called sys.exit({error.code!r}): a task "
                    "must return a result or raise an exception"
                ) from error
            except Exception as error:
                name = task_name(index, task, describe)
                raise ChunkFailedError(failure_message(name, error)) from error
            yield from self._collect(result, timing, task)

    def _collect(self, result: Result, timing: Timing, task: Any) -> Iterator[Result]:
        _, started, finished, _ = timing
        items = None if self._count_items is None else self._count_items(result)
        self.stats.record(timing, items)
        if self._on_finished is not None:
            self._on_finished(task, finished - started)
        handed_over = time.monotonic()
        yield result
        self.stats.collect_seconds += time.monotonic() - handed_over
