"""A pool of local worker processes that keeps input order, reports worker failures with
context and never leaves a process behind (no Dagster: any Python code can import it)."""

import logging
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, TypeVar

from data_pipeline.parallel.errors import (
    ChunkFailedError,
    WorkerDiedError,
    describe_by_type,
    failure_message,
)
from data_pipeline.parallel.local.cpython import remote_traceback
from data_pipeline.parallel.local.worker_processes import WorkerProcesses
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


class ProcessPool(PoolLife):
    """A pool of ``workers`` processes used as a context manager.

    ``workers=1`` runs every task in this process (same code path, easy to debug). Leaving
    the ``with`` block normally waits for the workers to exit; leaving it by an exception or
    an interrupt terminates them, then kills any that do not stop within a few seconds (at
    once on a second interrupt). A worker that dies (killed, out of memory) is reported with
    the chunk it was running; with ``restarts_on_worker_death=1`` the unfinished chunks first
    get one more try on a fresh pool. Workers exit by themselves if this process dies.

    Built on :class:`concurrent.futures.ProcessPoolExecutor` because a dead worker there
    raises ``BrokenProcessPool`` at once, where ``multiprocessing.Pool`` waits forever.
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
    ):
        """A pool to use in a ``with`` block.

        Args:
            workers: processes to start (1: tasks run in this process).
            start_method: ``forkserver`` or ``spawn``.
            preload_modules: modules a worker imports before its first task.
            restarts_on_worker_death: fresh pools tried after a worker died.
            log: where warnings and the workers' records and printed lines go.
            worker_log_level: the level from which the workers' records are forwarded.
            import_paths: directories workers put on ``sys.path``.
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
        self.start_method = start_method
        self.preload_modules = tuple(preload_modules)
        self.restarts_on_worker_death = restarts_on_worker_death
        # Records that tasks log at this level or above reach ``log`` as they happen.
        self.log = log
        self.worker_log_level = worker_log_level
        # Directories workers add to sys.path (see :func:`.sendable.import_paths_of`).
        self.import_paths = tuple(import_paths)
        self.stats = PoolStats(
            workers=workers, start_method=start_method if workers > 1 else "none"
        )
        # Every worker process this pool started, including those of retries.
        self.worker_pids: set[int] = set()
        self._workers: WorkerProcesses | None = None
        self._count_items: Callable[[Any], int] | None = None
        self._on_finished: Callable[[Any, float], None] | None = None
        # Task index -> when this process first saw a worker running it (see _running_tasks).
        self._running_since: dict[int, float] = {}

    def _open(self) -> None:
        if self.workers > 1:
            self._start_workers()

    def _close(self, abort: bool) -> None:
        self._stop_workers(abort)

    def _start_workers(self) -> None:
        workers = WorkerProcesses(
            self.workers,
            self.start_method,
            self.preload_modules,
            self.log,
            self.worker_log_level,
            self.import_paths,
        )
        try:
            workers.start()
        except BrokenProcessPool as error:
            raise WorkerDiedError(
                f"pool workers failed to start ({self.start_method}): {error}. Is the package "
                "installed in this environment (`pip install -e .`)?"
            ) from error
        self._workers = workers
        if self.start_method == "forkserver":
            global _forkserver_pools_started
            _forkserver_pools_started += 1
        self.worker_pids.update(workers.pids)
        for pid in workers.pids:  # a worker that gets no chunk still counts in the insight
            self.stats.busy_seconds_by_worker.setdefault(pid, 0.0)

    def _stop_workers(self, abort: bool) -> None:
        workers, self._workers = self._workers, None
        if workers is None:
            return
        if abort:
            workers.abort()
        else:
            workers.stop()

    def map(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        describe: Callable[[Task], str] | None = None,
        count_items: Callable[[Result], int] | None = None,
        on_finished: Callable[[Task, float], None] | None = None,
        long_tasks: LongTasks | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(task)`` for every task, in the order of ``tasks``.

        At most two tasks per worker are in flight, so memory stays bounded however many
        tasks there are. A task that raises ends the map with :class:`ChunkFailedError`
        naming ``describe(task)``; a worker that dies ends it with :class:`WorkerDiedError`
        (after ``restarts_on_worker_death`` fresh pools have failed too).

        Args:
            function: a top-level function of an importable module.
            tasks: read lazily, as workers become free.
            describe: names a task in errors (by its type if None).
            count_items: how many items a result holds, for per-worker insight.
            on_finished: hears ``(task, seconds)`` for each task before its result is
                yielded (so ``tasks``, read lazily, can be cut by what earlier ones cost).
            long_tasks: hears, while this process waits for a result, which tasks the
                workers run and since when (not in-process: the task holds this thread).
        """
        describe = describe or describe_by_type
        if self._workers is None and self.workers > 1:
            raise RuntimeError("use the pool inside a 'with' block")
        self._count_items, self._on_finished = count_items, on_finished
        started = time.monotonic()
        try:
            if self._workers is None:
                yield from self._map_in_process(function, tasks, describe)
            else:
                yield from self._map_in_workers(function, tasks, describe, long_tasks)
        finally:
            self.stats.map_seconds += time.monotonic() - started

    def _map_in_workers(self, function, tasks, describe, long_tasks) -> Iterator:
        if function.__module__ == "__main__":
            raise ValueError(
                f"{function.__qualname__} is defined in __main__, which pool workers do not "
                "import: move it into an importable module"
            )
        numbered_tasks = enumerate(tasks)
        in_flight: deque[tuple[int, Task, Future]] = deque()
        restarts_left = self.restarts_on_worker_death

        def submit(index: int, task: Task) -> None:
            try:
                future = self._workers.submit(function, task, index)
            except BrokenProcessPool as error:  # broke since the last result: handled below
                future = Future()
                future.set_exception(error)
            in_flight.append((index, task, future))

        for index, task in islice(numbered_tasks, 2 * self.workers):
            submit(index, task)
        while in_flight:
            index, task, future = in_flight[0]
            try:
                if long_tasks is not None:
                    self._wait_watching(future, in_flight, describe, long_tasks)
                result, timing = future.result()
            except BrokenProcessPool as error:
                if remote_traceback(error):
                    # The executor attaches a traceback only when it could not unpickle a
                    # result or exception; a dead worker comes without one. This would repeat.
                    raise ChunkFailedError(
                        f"the pool broke with {describe(task)} or a later chunk unfinished: "
                        f"{error}{remote_traceback(error, 'Traceback from the pool')}"
                    ) from error
                death = self._describe_death(in_flight, describe)
                if restarts_left <= 0:
                    raise WorkerDiedError(f"{death} {_DEATH_CAUSES}") from error
                restarts_left -= 1
                self.log.warning(f"{death} Retrying the unfinished chunks on a fresh pool.")
                unfinished = [(index, task) for index, task, _ in in_flight]
                in_flight.clear()
                self._stop_workers(abort=True)
                self._start_workers()
                for index, task in unfinished:
                    submit(index, task)
                continue
            except Exception as error:
                raise ChunkFailedError(_failure(describe(task), error)) from error
            in_flight.popleft()
            yield from self._collect(result, timing, task)
            for next_index, next_task in islice(numbered_tasks, 1):
                submit(next_index, next_task)

    def _wait_watching(
        self, future: Future, in_flight: deque, describe: Callable, long_tasks: LongTasks
    ) -> None:
        """Wait until ``future`` is done, telling ``long_tasks`` what runs meanwhile."""
        while True:
            running = self._running_tasks(in_flight, describe)
            if future.done():
                return
            long_tasks.check(running)
            wait([future], timeout=long_tasks.poll_seconds, return_when=FIRST_COMPLETED)

    def _running_tasks(self, in_flight: deque, describe: Callable) -> list[tuple[str, float]]:
        """(description, since when) of each task a worker runs now, read from the slot
        table the workers write; since when is when this process first saw it there."""
        now_running = self._workers.running_tasks()
        now = time.monotonic()
        since = {index: self._running_since.get(index, now) for index in now_running}
        self._running_since = since
        return [(describe(task), since[index]) for index, task, _ in in_flight if index in since]

    def _describe_death(self, in_flight: deque, describe: Callable[[Any], str]) -> str:
        """Which worker died, how, and which chunk it was running."""
        tasks = {index: task for index, task, _ in in_flight}
        sentences = []
        for pid, exitcode, index in self._workers.deaths():
            if index in tasks:
                doing = f"while running {describe(tasks[index])}"
            else:
                doing = "between chunks (while receiving one: could it import the task's module?)"
            sentences.append(f"pool worker {pid} {_exit_reason(exitcode)} {doing}.")
        head = describe(in_flight[0][1])
        return " ".join(sentences) or f"a pool worker died with {head} or a later chunk unfinished."

    def _map_in_process(self, function, tasks, describe) -> Iterator:
        for task in tasks:
            try:
                # Only this thread's records, only during the task: the step process has other
                # threads, whose records do not belong to the pool.
                with this_threads_records_to(self.log, self.worker_log_level):
                    result, timing = timed_call(function, task)
            except Exception as error:
                raise ChunkFailedError(_failure(describe(task), error)) from error
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


_DEATH_CAUSES = (
    "Likely causes: the out-of-memory killer or another signal, os._exit or a crash in native "
    "code inside the task, or a worker that cannot import the task's module (is the package "
    "installed? run `pip install -e .`)."
)


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (as the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _failure(description: str, error: BaseException) -> str:
    """What a task that raised is reported with: the error and the worker's traceback."""
    return failure_message(description, error) + remote_traceback(error)
