"""A process pool that keeps input order, reports worker failures with context and never
leaves a process behind. No Dagster here: any Python code (and every worker) can import it.

Built on :class:`concurrent.futures.ProcessPoolExecutor` because a dead worker there raises
``BrokenProcessPool`` at once, where ``multiprocessing.Pool`` waits forever.
"""

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, TypeVar

from data_pipeline.parallel.cpus import effective_workers
from data_pipeline.parallel.stats import PoolStats
from data_pipeline.parallel.worker_logs import DirectHandler, PipeHandler, WorkerLogRelay

logger = logging.getLogger(__name__)

Task = TypeVar("Task")
Result = TypeVar("Result")
StartMethod = Literal["spawn", "forkserver"]

# fork is left out on purpose: a Dagster step process runs several threads and installs
# signal handlers, and forked workers inherit both (hangs were seen; Python 3.12+ warns).
START_METHODS: tuple[StartMethod, ...] = ("forkserver", "spawn")
DEFAULT_START_METHOD: StartMethod = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)

# Native libraries (numpy's BLAS, OpenMP) would otherwise start one thread per CPU in every
# worker, multiplying the processes the pool already runs.
_THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_TERMINATE_GRACE_SECONDS = 3.0
_ORPHAN_POLL_SECONDS = 0.5
_WORKER_START_TIMEOUT_SECONDS = 60.0


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
    on a fresh pool."""

    workers: int | None = None
    start_method: StartMethod = DEFAULT_START_METHOD
    restarts_on_worker_death: int = 0
    worker_log_level: int = logging.INFO

    def open(
        self, chunk_count: int, preload_modules: Iterable[str] = (), log: Any = logger
    ) -> "ProcessPool":
        """A pool sized for ``chunk_count`` chunks (never more workers than chunks)."""
        return ProcessPool(
            effective_workers(self.workers, chunk_count),
            self.start_method,
            preload_modules,
            restarts_on_worker_death=self.restarts_on_worker_death,
            log=log,
            worker_log_level=self.worker_log_level,
        )


class ProcessPool:
    """A pool of ``workers`` processes used as a context manager.

    ``workers=1`` runs every task in this process (same code path, easy to debug). Leaving
    the ``with`` block normally waits for the workers to exit; leaving it by an exception or
    an interrupt terminates them, then kills any that do not stop within a few seconds.
    A worker that dies (killed, out of memory) is reported with the chunk it was running;
    with ``restarts_on_worker_death=1`` the unfinished chunks first get one more try on a
    fresh pool.
    """

    def __init__(
        self,
        workers: int,
        start_method: StartMethod = DEFAULT_START_METHOD,
        preload_modules: Iterable[str] = (),
        restarts_on_worker_death: int = 0,
        log: logging.Logger | logging.LoggerAdapter | Any = logger,
        worker_log_level: int = logging.INFO,
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
        # Records that workers log at this level or above reach ``log`` as they happen.
        self.log = log
        self.worker_log_level = worker_log_level
        self.stats = PoolStats(
            workers=workers, start_method=start_method if workers > 1 else "none"
        )
        self.worker_pids: set[int] = set()
        self._executor: ProcessPoolExecutor | None = None
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._running_task_by_slot: Any = None
        self._log_relay: WorkerLogRelay | None = None
        self._in_process_logs: contextlib.ExitStack | None = None
        self._count_items: Callable[[Any], int] | None = None
        self._created_at = 0.0

    def __enter__(self) -> "ProcessPool":
        self._created_at = time.monotonic()
        if self.workers > 1:
            self._start_executor()
        else:
            self._in_process_logs = contextlib.ExitStack()
            self._in_process_logs.enter_context(
                _root_logging_to(DirectHandler(self.log, self.worker_log_level))
            )
        self.stats.startup_seconds = time.monotonic() - self._created_at
        return self

    def _start_executor(self) -> None:
        """Start every worker now, so start-up is measured on its own and fails early.

        The executor starts a process per submitted task until it has ``workers`` of them.
        While they start, ``__main__`` is hidden from them: a spawned worker would otherwise
        re-run the parent's main script, and under the ``dagster`` command that imports all
        of Dagster again (about a second per pool). Tasks must therefore live in importable
        modules, not in ``__main__`` (checked in :meth:`map`).
        """
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver" and self.preload_modules:
            context.set_forkserver_preload(list(self.preload_modules))
        # Two slots per worker, (pid, index of the running task or -1), written by the workers
        # without a lock: each worker writes only its own slot. It tells which chunk a dead
        # worker held, which the executor itself does not know.
        slot_counter = context.Value("i", 0)
        self._running_task_by_slot = context.RawArray("q", [0, _IDLE] * self.workers)
        self._log_relay = WorkerLogRelay(context, self.workers, self.log, self.worker_log_level)
        try:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_initialize_worker,
                initargs=(
                    slot_counter,
                    self._running_task_by_slot,
                    os.getpid(),
                    self._log_relay.writers,
                    self.worker_log_level,
                ),
            )
        except BaseException:
            self._stop_workers(abort=True)
            raise
        try:
            # Each warm-up waits until every worker has started: while none is idle, each
            # submit makes the executor start one more process.
            with _main_module_hidden():
                warm_ups = [
                    self._executor.submit(_wait_for_all_workers, _WORKER_START_TIMEOUT_SECONDS)
                    for _ in range(self.workers)
                ]
            for future in warm_ups:
                future.result()
        except BrokenProcessPool as error:
            self._stop_workers(abort=True)
            raise WorkerDiedError(
                f"pool workers failed to start ({self.start_method}): {error}. Is the package "
                "installed in this environment (`pip install -e .`)?"
            ) from error
        except BaseException:
            self._stop_workers(abort=True)
            raise
        self._log_relay.release_writers()
        self._processes = dict(self._executor._processes)
        self.worker_pids.update(self._processes)
        for pid in self._processes:  # a worker that gets no chunk still counts in the insight
            self.stats.busy_seconds_by_worker.setdefault(pid, 0.0)

    def _stop_workers(self, abort: bool) -> None:
        """Wait for the workers (or terminate them), then forward their last log records."""
        if self._executor is not None:
            if abort:
                _abort(self._executor)
            else:
                self._executor.shutdown(wait=True)
            self._executor = None
        if self._log_relay is not None:
            self._log_relay.close()
            self._log_relay = None

    def __exit__(self, exc_type, exc, traceback) -> None:
        closing = time.monotonic()
        self._stop_workers(abort=exc_type is not None)
        if self._in_process_logs is not None:
            self._in_process_logs.close()
            self._in_process_logs = None
        self.stats.shutdown_seconds = time.monotonic() - closing
        self.stats.wall_seconds = time.monotonic() - self._created_at

    def map(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        describe: Callable[[Task], str] | None = None,
        count_items: Callable[[Result], int] | None = None,
    ) -> Iterator[Result]:
        """Yield ``function(task)`` for every task, in the order of ``tasks``.

        ``count_items(result)`` tells how many items a result holds, for per-worker insight.

        At most two tasks per worker are in flight, so memory stays bounded however many
        tasks there are. A task that raises ends the map with :class:`ChunkFailedError`
        naming ``describe(task)``; a worker that dies ends it with :class:`WorkerDiedError`
        (after ``restarts_on_worker_death`` fresh pools have failed too).
        """
        describe = describe or _describe_by_type
        if self._executor is None and self.workers > 1:
            raise RuntimeError("use the pool inside a 'with' block")
        self._count_items = count_items
        started = time.monotonic()
        try:
            if self._executor is None:
                yield from self._map_in_process(function, tasks, describe)
            else:
                yield from self._map_in_workers(function, tasks, describe)
        finally:
            self.stats.map_seconds += time.monotonic() - started

    def _map_in_workers(self, function, tasks, describe) -> Iterator:
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
                future = self._executor.submit(_timed_call, function, task, index)
            except BrokenProcessPool as error:  # broke since the last result: handled below
                future = Future()
                future.set_exception(error)
            in_flight.append((index, task, future))

        for index, task in islice(numbered_tasks, 2 * self.workers):
            submit(index, task)
        while in_flight:
            index, task, future = in_flight[0]
            try:
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
                self._start_executor()
                for index, task in unfinished:
                    submit(index, task)
                continue
            except Exception as error:
                raise ChunkFailedError(_failure_message(describe(task), error)) from error
            in_flight.popleft()
            yield from self._collect(result, timing)
            for next_index, next_task in islice(numbered_tasks, 1):
                submit(next_index, next_task)

    def _describe_death(self, in_flight: deque, describe: Callable[[Any], str]) -> str:
        """Which worker died, how, and which chunk it was running."""
        # The executor terminates the surviving workers (SIGTERM) and reaps them in its own
        # thread. Reading exit codes while it does races with it (a forkserver child's code
        # then reads 255), so let that thread finish first.
        manager = getattr(self._executor, "_executor_manager_thread", None)
        if manager is not None:
            manager.join(_TERMINATE_GRACE_SECONDS)
        deadline = time.monotonic() + 2
        while (
            any(process.exitcode is None for process in self._processes.values())
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        dead = [
            (pid, process.exitcode)
            for pid, process in self._processes.items()
            if process.exitcode not in (None, 0, -signal.SIGTERM)
        ]
        slots = self._running_task_by_slot
        running = {slots[2 * slot]: slots[2 * slot + 1] for slot in range(self.workers)}
        tasks = {index: task for index, task, _ in in_flight}
        sentences = []
        for pid, exitcode in dead:
            index = running.get(pid, _IDLE)
            if index in tasks:
                doing = f"while running {describe(tasks[index])}"
            else:
                doing = "between chunks (while receiving one: could it import the task's module?)"
            sentences.append(f"pool worker {pid} {_exit_reason(exitcode)} {doing}.")
        head = describe(in_flight[0][1])
        return " ".join(sentences) or f"a pool worker died with {head} or a later chunk unfinished."

    def _map_in_process(self, function, tasks, describe) -> Iterator:
        for index, task in enumerate(tasks):
            try:
                result, timing = _timed_call(function, task, index)
            except Exception as error:
                raise ChunkFailedError(_failure_message(describe(task), error)) from error
            yield from self._collect(result, timing)

    def _collect(self, result: Result, timing: tuple[int, float, float, float]) -> Iterator[Result]:
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
        handed_over = time.monotonic()
        yield result
        stats.collect_seconds += time.monotonic() - handed_over


_IDLE = -1
_DEATH_CAUSES = (
    "Likely causes: the out-of-memory killer or another signal, os._exit or a crash in native "
    "code inside the task, or a worker that cannot import the task's module (is the package "
    "installed? run `pip install -e .`)."
)
# Set in each worker by _initialize_worker.
_worker_slot: int | None = None
_running_task_by_slot: Any = None


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (as the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _timed_call(
    function: Callable[[Any], Any], task: Any, index: int
) -> tuple[Any, tuple[int, float, float, float]]:
    if _worker_slot is not None:
        _running_task_by_slot[2 * _worker_slot + 1] = index
    # time.monotonic() is one system-wide clock on Linux and macOS, so the parent can compare
    # a worker's timestamps with its own.
    started, cpu_started = time.monotonic(), time.process_time()
    try:
        result = function(task)
    finally:
        if _worker_slot is not None:
            _running_task_by_slot[2 * _worker_slot + 1] = _IDLE
    return result, (os.getpid(), started, time.monotonic(), time.process_time() - cpu_started)


def _wait_for_all_workers(timeout: float) -> None:
    """Return once every worker of the pool has written its pid into its slot."""
    deadline = time.monotonic() + timeout
    while any(pid == 0 for pid in _running_task_by_slot[0::2]):
        if time.monotonic() > deadline:
            return  # start-up is slow, not broken: the pool works with the workers it has
        time.sleep(0.002)


def _initialize_worker(
    slot_counter: Any,
    running_task_by_slot: Any,
    owner_pid: int,
    log_writers: list,
    log_level: int,
) -> None:
    global _worker_slot, _running_task_by_slot
    # Ctrl-C reaches the whole process group: the parent decides, workers ignore it. SIGTERM
    # gets its default action back, in case the parent's handler was inherited.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for variable in _THREAD_LIMIT_VARIABLES:
        os.environ.setdefault(variable, "1")
    with slot_counter.get_lock():
        _worker_slot = slot_counter.value
        slot_counter.value += 1
    _running_task_by_slot = running_task_by_slot
    _running_task_by_slot[2 * _worker_slot] = os.getpid()
    for slot, writer in enumerate(log_writers):
        if slot != _worker_slot:
            writer.close()  # so each pipe ends when its own worker does
    name = f"worker {_worker_slot} pid {os.getpid()}"
    root = logging.getLogger()
    root.handlers = [PipeHandler(log_writers[_worker_slot], name, log_level)]
    root.setLevel(log_level)
    owner = (owner_pid, _start_time(owner_pid))
    threading.Thread(target=_exit_when_orphaned, args=(owner,), daemon=True).start()


def _exit_when_orphaned(owner: tuple[int, str | None]) -> None:
    """End this worker once the process that owns the pool is gone.

    A pool owner killed outright (SIGKILL, or a crash) cannot clean up, and its workers would
    wait for tasks forever: they hold both ends of their task pipe, and forkserver workers
    also keep the fork server alive. Polling is crude but works for every start method.
    """
    while _process_running(*owner):
        time.sleep(_ORPHAN_POLL_SECONDS)
    os._exit(1)


def _process_running(pid: int, start_time: str | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start_time`` (a new process
    may get the same pid later) and has not exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat_fields(pid)
    if stat is None:
        return True  # no /proc (macOS): kill(pid, 0) is all we know
    state, current_start_time = stat[0], stat[19]
    # A zombie has exited and only waits for its parent to reap it.
    return state not in "ZX" and current_start_time == start_time


def _start_time(pid: int) -> str | None:
    stat = _stat_fields(pid)
    return stat[19] if stat else None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [0] state, [19] start time."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _abort(executor: ProcessPoolExecutor) -> None:
    """Stop now: cancel queued tasks, terminate workers, kill those that linger."""
    processes = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


@contextlib.contextmanager
def _root_logging_to(handler: logging.Handler) -> Iterator[None]:
    """Send records of this process's loggers to ``handler`` too, for the pool's lifetime."""
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    if previous_level > handler.level:  # NOTSET (0) already lets everything through
        root.setLevel(handler.level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep spawned children from re-running the parent's ``__main__`` script."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or main_file is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = main_file


def _describe_by_type(task: Any) -> str:
    return f"a task of type {type(task).__name__}"


def _failure_message(description: str, error: BaseException) -> str:
    message = f"{description} failed in a pool worker: {type(error).__name__}: {error}"
    return message + _remote_traceback(error)


def _remote_traceback(error: BaseException, label: str = "Worker traceback") -> str:
    """The traceback the executor attaches as the error's cause, if any."""
    cause = error.__cause__
    if cause is not None and type(cause).__name__ == "_RemoteTraceback":
        return f"\n{label}:{cause}"
    return ""
