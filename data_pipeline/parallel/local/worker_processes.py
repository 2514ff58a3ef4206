"""The owner's side of one set of local pool workers: start them, stop or kill them, and tell
how a dead one died (the executor's processes are known through :mod:`.cpython`)."""

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from data_pipeline.parallel.child_processes import main_module_hidden, native_threads_capped
from data_pipeline.parallel.local.cpython import RecordingContext
from data_pipeline.parallel.local.worker import (
    IDLE,
    initialize_worker,
    run_task,
    wait_for_all_workers,
)
from data_pipeline.parallel.worker_logs import WorkerLogRelay

# How long terminated workers get to exit before they are killed.
TERMINATE_GRACE_SECONDS = 3.0
# A killed process is gone within milliseconds; these bounds only keep a hang from spreading.
_EXIT_AFTER_KILL_SECONDS = 5.0
_EXECUTOR_SHUTDOWN_SECONDS = 10.0
_WORKER_START_TIMEOUT_SECONDS = 60.0
_LIFELINES_OF_SURVIVORS: list[Any] = []
# Starting workers changes process-wide state for a moment (the environment, __main__): two
# pools starting at once in different threads must not see each other's temporary values.
_STARTING = threading.Lock()


class WorkerProcesses:
    """The workers of one executor. :meth:`start` raises ``BrokenProcessPool`` if they cannot
    start; after the executor broke, :meth:`deaths` tells which worker died, how, and with
    which task; :meth:`stop` or :meth:`abort` ends them and releases every pipe."""

    def __init__(
        self,
        workers: int,
        start_method: str,
        preload_modules: tuple[str, ...],
        log: Any,
        log_level: int,
        import_paths: tuple[str, ...] = (),
    ):
        """Workers to start with :meth:`start`.

        Args:
            workers: the processes to start.
            start_method: ``forkserver`` or ``spawn``.
            preload_modules: modules the fork server imports first (forkserver only).
            log: where the workers' records and printed lines go.
            log_level: the workers' records at this level or above are forwarded.
            import_paths: directories workers put on ``sys.path``.
        """
        self.workers = workers
        self.start_method = start_method
        self.preload_modules = preload_modules
        self.import_paths = import_paths
        self._log = log
        self._log_level = log_level
        self._context: RecordingContext | None = None
        self._slots: Any = None
        self._lifeline: Any = None
        self._log_relay: WorkerLogRelay | None = None
        self._executor: ProcessPoolExecutor | None = None

    @property
    def processes(self) -> list[BaseProcess]:
        """Every worker process started so far."""
        recorded = self._context.processes if self._context else []
        return [process for process in recorded if process.pid is not None]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def start(self) -> None:
        """Start every worker now, so start-up is measured on its own and fails early.

        The executor starts a process per submitted task until it has ``workers`` of them, so
        each warm-up task waits until all have started. Meanwhile ``__main__`` is hidden from
        them: a spawned worker would otherwise re-run the owner's main script, and under the
        ``dagster`` command that imports all of Dagster again (about a second per pool).
        """
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver" and self.preload_modules:
            context.set_forkserver_preload(list(self.preload_modules))
        self._context = RecordingContext(context)
        slot_counter = context.Value("i", 0)
        self._slots = context.RawArray("q", [0, IDLE] * self.workers)
        # This process keeps the only write end: each worker holds a read end that reports
        # end-of-file when this process is gone, however it ended.
        lifeline_reader, self._lifeline = context.Pipe(duplex=False)
        try:
            self._log_relay = WorkerLogRelay(context, self.workers, self._log, self._log_level)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._context,
                initializer=initialize_worker,
                initargs=(
                    slot_counter,
                    self._slots,
                    lifeline_reader,
                    self._log_relay.writers,
                    self._log_level,
                    self.import_paths,
                    self.start_method,
                ),
            )
            with _STARTING, main_module_hidden(), native_threads_capped():
                warm_ups = [
                    self._executor.submit(wait_for_all_workers, _WORKER_START_TIMEOUT_SECONDS)
                    for _ in range(self.workers)
                ]
            for future in warm_ups:
                future.result()
        except BaseException:
            self.abort()
            raise
        finally:
            lifeline_reader.close()  # each started worker has its own copy
        self._log_relay.release_writers()

    def submit(self, function: Callable[[Any], Any], task: Any, index: int) -> Future:
        return self._executor.submit(run_task, function, task, index)

    def stop(self) -> None:
        """Let the workers finish their tasks and exit; an interrupt meanwhile aborts."""
        try:
            self._executor.shutdown(wait=True)
        except BaseException:
            self.abort()
            raise
        self._release()

    def abort(self) -> None:
        """Stop now: cancel queued tasks, terminate the workers, kill those still running after
        a grace period. A second interrupt (or any exception) meanwhile kills every worker at
        once before it propagates."""
        try:
            if self._executor is None:
                return
            try:
                shutdown = self._shut_down_in_background()
                for process in _running(self.processes):
                    process.terminate()
                _wait_for_exit(self.processes, TERMINATE_GRACE_SECONDS)
            except BaseException:
                _kill(self.processes)
                raise
            _kill(self.processes)
            shutdown.join(_EXECUTOR_SHUTDOWN_SECONDS)
        finally:
            self._release()

    def running_tasks(self) -> set[int]:
        """The index of each task a worker runs now, as the workers' slot table says."""
        slots = self._slots
        if slots is None:
            return set()
        return {slots[2 * slot + 1] for slot in range(self.workers)} - {IDLE}

    def deaths(self) -> list[tuple[int, int | None, int]]:
        """Once the executor broke: (pid, exit code, index of the task it was running or IDLE)
        of each worker that died on its own.

        The executor then terminates the other workers (SIGTERM) and reaps them in its own
        thread. For a forkserver child, reading the exit code means reading it from the
        process's sentinel pipe, and two threads doing so race (one gets 255). So wait for every
        worker through its sentinel (which reads nothing), kill any that ignore SIGTERM, let
        the executor's thread finish, and only then read the exit codes.
        """
        processes = self.processes
        _wait_for_exit(processes, TERMINATE_GRACE_SECONDS)
        killed_here = _running(processes)
        _kill(killed_here)
        _wait_for_exit(processes, _EXIT_AFTER_KILL_SECONDS)
        shutdown = self._shut_down_in_background()
        shutdown.join(_EXECUTOR_SHUTDOWN_SECONDS)
        if shutdown.is_alive():
            return []  # still reaping: its exit codes cannot be read safely
        slots = self._slots
        task_by_pid = {slots[2 * slot]: slots[2 * slot + 1] for slot in range(self.workers)}
        return [
            (process.pid, process.exitcode, task_by_pid.get(process.pid, IDLE))
            for process in processes
            if process not in killed_here and process.exitcode not in (0, -signal.SIGTERM)
        ]

    def _shut_down_in_background(self) -> threading.Thread:
        """``executor.shutdown(wait=True)`` in a thread of its own, so waiting for the
        executor's thread to reap the workers can be bounded."""
        thread = threading.Thread(
            target=self._executor.shutdown,
            kwargs={"wait": True, "cancel_futures": True},
            name="pool-shutdown",
            daemon=True,
        )
        thread.start()
        return thread

    def _release(self) -> None:
        """Once the workers have exited: forward their last log records, let go of the pipes."""
        processes = self.processes
        _wait_for_exit(processes, _EXIT_AFTER_KILL_SECONDS)
        survivors = _running(processes)
        if self._log_relay is not None:
            self._log_relay.close()
            self._log_relay = None
        if self._lifeline is not None and survivors:
            # The lifeline says whether this process is alive, nothing more: a worker that
            # outlived SIGKILL (stuck in the kernel) keeps it and ends with this process.
            _LIFELINES_OF_SURVIVORS.append(self._lifeline)
            self._log.warning(
                f"pool workers {[process.pid for process in survivors]} did not exit after "
                "SIGKILL; they end with this process at the latest"
            )
        elif self._lifeline is not None:
            self._lifeline.close()
        self._lifeline = None
        self._executor = None


def _running(processes: list[BaseProcess]) -> list[BaseProcess]:
    """The processes that have not exited, judged by their sentinels (which reads nothing)."""
    if not processes:
        return []
    exited = set(wait([process.sentinel for process in processes], timeout=0))
    return [process for process in processes if process.sentinel not in exited]


def _wait_for_exit(processes: list[BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {process.sentinel for process in processes}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        pending.difference_update(wait(list(pending), timeout=remaining))


def _kill(processes: list[BaseProcess]) -> None:
    for process in _running(processes):
        with contextlib.suppress(Exception):
            process.kill()
