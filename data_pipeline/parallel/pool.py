"""A process pool that keeps input order, reports worker failures with context and never
leaves a process behind. No Dagster here: any Python code (and every worker) can import it.

Built on :class:`concurrent.futures.ProcessPoolExecutor` because a dead worker there raises
``BrokenProcessPool`` at once, where ``multiprocessing.Pool`` waits forever.
"""

import logging
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from data_pipeline.parallel.calibration import corrections, learn, pool_costs
from data_pipeline.parallel.cpus import available_cpus_recently, effective_workers
from data_pipeline.parallel.decision import Decision, Mode, WorkSample, forced, predicted
from data_pipeline.parallel.progress import LongTasks
from data_pipeline.parallel.stats import PoolStats
from data_pipeline.parallel.worker import timed_call
from data_pipeline.parallel.worker_logs import this_threads_records_to
from data_pipeline.parallel.worker_processes import WorkerProcesses

if TYPE_CHECKING:
    from data_pipeline.parallel.dask_pool import DaskPool
    from data_pipeline.parallel.pool_run import PoolRun

logger = logging.getLogger(__name__)
# One fork server serves every forkserver pool of a process: after the first pool, the next
# ones start warm (the server and its preloaded modules are up).
_forkserver_pools_started = 0

Task = TypeVar("Task")
Result = TypeVar("Result")
StartMethod = Literal["spawn", "forkserver"]
# Where a pool's workers run: processes of this machine, or a Dask cluster (dask_pool.py).
Backend = Literal["local", "dask"]
BACKENDS: tuple[Backend, ...] = ("local", "dask")

# fork is left out on purpose: a Dagster step process runs several threads and installs
# signal handlers, and forked workers inherit both (hangs were seen; Python 3.12+ warns).
START_METHODS: tuple[StartMethod, ...] = ("forkserver", "spawn")
DEFAULT_START_METHOD: StartMethod = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


class ChunkFailedError(RuntimeError):
    """A task raised in a worker; the message names the chunk and carries the worker's
    traceback."""


class WorkerDiedError(RuntimeError):
    """A worker process exited while tasks were running (killed, out of memory, os._exit, or
    unable to import the task's function)."""


@dataclass(frozen=True)
class PoolSettings:
    """How to run a pool: ``workers`` None means one per available CPU; 1 means in-process;
    after a worker dies, the unfinished chunks get ``restarts_on_worker_death`` more tries
    on a fresh pool. ``mode`` (see :mod:`.decision`) ``auto`` starts a pool only where it
    is predicted to win; the pool's measured costs are kept in ``costs_directory``.
    ``backend`` ``dask`` runs the same tasks on a Dask cluster: the one at
    ``scheduler_address``, else a local one of ``workers`` processes started for each pool."""

    workers: int | None = None
    start_method: StartMethod = DEFAULT_START_METHOD
    restarts_on_worker_death: int = 0
    worker_log_level: int = logging.INFO
    mode: Mode = "parallel"
    costs_directory: str | None = None
    backend: Backend = "local"
    scheduler_address: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.scheduler_address and self.backend != "dask":
            raise ValueError(
                f"scheduler_address={self.scheduler_address!r} is for backend 'dask', but "
                f"backend is {self.backend!r}: set backend to 'dask' or leave the address unset"
            )

    def forced_decision(self, chunk_count: int) -> Decision | None:
        """Serial or parallel when nothing needs measuring; None when ``auto`` must sample."""
        return forced(self.mode, effective_workers(self.workers, chunk_count), chunk_count)

    def predicted_decision(
        self,
        items: int,
        chunk_count: int,
        unit: str,
        sample: WorkSample,
        preload_modules: Iterable[str] = (),
    ) -> Decision:
        """``auto``'s choice for ``items`` in ``chunk_count`` chunks, from the ``sample``."""
        preload = tuple(preload_modules)
        subject = self._subject(unit, preload)
        return predicted(
            effective_workers(self.workers, chunk_count),
            items,
            chunk_count,
            unit,
            sample,
            lambda workers: pool_costs(
                self.costs_directory,
                workers,
                self.start_method,
                preload,
                backend=self.backend,
                scheduler_address=self.scheduler_address,
            ),
            warm=self._warm(),
            cpus=available_cpus_recently,
            corrections=lambda size: corrections(self.costs_directory, subject, size),
        )

    def learn(
        self, decision: Decision, unit: str, preload_modules: Iterable[str], seconds: float
    ) -> None:
        """Keep how long the work ``decision`` predicted took (``auto`` only)."""
        learn(self.costs_directory, self._subject(unit, tuple(preload_modules)), decision, seconds)

    def _subject(self, unit: str, preload: tuple[str, ...]) -> str:
        # The unit tells the stage apart, the preloaded modules the kernel.
        subject = f"{self.start_method}, {self.workers} workers, {unit}, {', '.join(preload)}"
        return subject if self.backend == "local" else f"{', '.join(self._where())}: {subject}"

    def _where(self) -> tuple[str, ...]:
        """The backend, and the scheduler it connects to, for keys of kept costs."""
        if self.backend == "local":
            return ()
        return (self.backend, self.scheduler_address or "local cluster")

    def _warm(self) -> bool:
        """Whether this process has started such a pool before (which starts faster)."""
        if self.backend == "dask":
            from data_pipeline.parallel.dask_pool import local_clusters_started

            return self.scheduler_address is not None or local_clusters_started() > 0
        return self.start_method == "forkserver" and _forkserver_pools_started > 0

    def open(
        self,
        chunk_count: int,
        preload_modules: Iterable[str] = (),
        log: Any = logger,
        decision: Decision | None = None,
        import_paths: Iterable[str] = (),
    ) -> "ProcessPool | DaskPool":
        """A pool sized for ``chunk_count`` chunks (never more workers than chunks), or as
        ``decision`` says: on this backend, or in this process for one worker."""
        workers = effective_workers(self.workers, chunk_count)
        workers = decision.workers if decision is not None else workers
        options = {
            "preload_modules": preload_modules,
            "restarts_on_worker_death": self.restarts_on_worker_death,
            "log": log,
            "worker_log_level": self.worker_log_level,
            "import_paths": import_paths,
        }
        if self.backend == "dask" and workers > 1:
            from data_pipeline.parallel.dask_pool import DaskPool

            return DaskPool(workers, self.scheduler_address, **options)
        return ProcessPool(workers, self.start_method, **options)

    def map(
        self, function: Callable[[Task], Result], tasks: Iterable[Task], **options: Any
    ) -> "PoolRun[Task, Result]":
        """``function`` over ``tasks`` as ``mode`` decides, results in input order: see
        :class:`~data_pipeline.parallel.pool_run.PoolRun` for the options."""
        from data_pipeline.parallel.pool_run import PoolRun  # it builds on this module

        return PoolRun(self, function, tasks, **options)


class ProcessPool:
    """A pool of ``workers`` processes used as a context manager.

    ``workers=1`` runs every task in this process (same code path, easy to debug). Leaving
    the ``with`` block normally waits for the workers to exit; leaving it by an exception or
    an interrupt terminates them, then kills any that do not stop within a few seconds (at
    once on a second interrupt). A worker that dies (killed, out of memory) is reported with
    the chunk it was running; with ``restarts_on_worker_death=1`` the unfinished chunks first
    get one more try on a fresh pool. Workers exit by themselves if this process dies.
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
        # Directories workers add to sys.path (see :func:`import_paths_of`).
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
        self._created_at = 0.0

    def __enter__(self) -> "ProcessPool":
        self._created_at = time.monotonic()
        if self.workers > 1:
            self._start_workers()
        self.stats.startup_seconds = time.monotonic() - self._created_at
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        closing = time.monotonic()
        self._stop_workers(abort=exc_type is not None)
        self.stats.shutdown_seconds = time.monotonic() - closing
        self.stats.wall_seconds = time.monotonic() - self._created_at

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

        ``count_items(result)`` tells how many items a result holds, for per-worker insight.
        ``on_finished(task, seconds)`` hears how long each task ran, before its result is
        yielded (so ``tasks``, read lazily, can be cut by what earlier ones cost).
        ``long_tasks`` hears, while this process waits for a result, which tasks the workers
        are running and since when (not in-process: the task holds this thread).

        At most two tasks per worker are in flight, so memory stays bounded however many
        tasks there are. A task that raises ends the map with :class:`ChunkFailedError`
        naming ``describe(task)``; a worker that dies ends it with :class:`WorkerDiedError`
        (after ``restarts_on_worker_death`` fresh pools have failed too).
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
                if _remote_traceback(error):
                    # The executor attaches a traceback only when it could not unpickle a
                    # result or exception; a dead worker comes without one. This would repeat.
                    raise ChunkFailedError(
                        f"the pool broke with {describe(task)} or a later chunk unfinished: "
                        f"{error}{_remote_traceback(error, 'Traceback from the pool')}"
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
                raise ChunkFailedError(failure_message(describe(task), error)) from error
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
                raise ChunkFailedError(failure_message(describe(task), error)) from error
            yield from self._collect(result, timing, task)

    def _collect(
        self, result: Result, timing: tuple[int, float, float, float], task: Any
    ) -> Iterator[Result]:
        pid, started, finished, cpu_seconds = timing
        stats = self.stats
        stats.chunks += 1
        stats.busy_seconds_by_worker[pid] = stats.busy_seconds_by_worker.get(pid, 0.0) + (
            finished - started
        )
        stats.cpu_seconds_by_worker[pid] = stats.cpu_seconds_by_worker.get(pid, 0.0) + cpu_seconds
        stats.chunks_by_worker[pid] = stats.chunks_by_worker.get(pid, 0) + 1
        if self._count_items is not None:
            items = self._count_items(result)
            stats.items_by_worker[pid] = stats.items_by_worker.get(pid, 0) + items
        if self._on_finished is not None:
            self._on_finished(task, finished - started)
        handed_over = time.monotonic()
        yield result
        stats.collect_seconds += time.monotonic() - handed_over


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


def describe_by_type(task: Any) -> str:
    return f"a task of type {type(task).__name__}"


def failure_message(description: str, error: BaseException) -> str:
    message = f"{description} failed in a pool worker: {type(error).__name__}: {error}"
    return message + _remote_traceback(error)


def _remote_traceback(error: BaseException, label: str = "Worker traceback") -> str:
    """The traceback the executor attaches as the error's cause, if any."""
    cause = error.__cause__
    if cause is not None and type(cause).__name__ == "_RemoteTraceback":
        return f"\n{label}:{cause}"
    return ""
