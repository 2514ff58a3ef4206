"""The owner's side of the local pool's worker processes: start them (and one more whenever
one must be replaced), send each its batches on a pipe of its own, read its replies, and
stop, kill or recycle any one of them without touching the others."""

import contextlib
import fcntl
import multiprocessing
import multiprocessing.forkserver
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from data_pipeline.parallel.child_processes import main_module_hidden, native_threads_capped
from data_pipeline.parallel.local.worker import (
    IDLE,
    READY,
    SLOT_INDEX,
    SLOT_SINCE,
    STOP,
    receive_reply,
    worker_main,
)
from data_pipeline.parallel.worker_logs import WorkerLogRelay, release

# How long terminated workers get to exit before they are killed.
TERMINATE_GRACE_SECONDS = 3.0
# A killed process is gone within milliseconds; these bounds only keep a hang from spreading.
_EXIT_AFTER_KILL_SECONDS = 5.0
_WORKER_START_TIMEOUT_SECONDS = 60.0
# Each pipe is asked for this much room (Linux; the default is 64 KiB): a worker can send a
# large result without waiting for the owner to read it, and a batch fits in one write.
_PIPE_BYTES = 1 << 20
_DEFAULT_PIPE_BYTES = 64 * 1024
_LIFELINES_OF_SURVIVORS: list[Any] = []
# Starting workers changes process-wide state for a moment (the environment, __main__): two
# pools starting at once in different threads must not see each other's temporary values.
_STARTING = threading.Lock()
# When this process started its fork server ahead of any pool (see :func:`start_fork_server`).
_fork_server_started_at: float | None = None


def start_fork_server(preload_modules: tuple[str, ...]) -> None:
    """Start this process's fork server now, preloading ``preload_modules``, and return at
    once: the server imports them on another CPU while this process goes on (a step checking
    its own kernel), so the first forkserver pool finds them loaded. Nothing if the server
    runs already; the first pool's start-up decides its preloads otherwise."""
    global _fork_server_started_at
    if _fork_server_started_at is not None:
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload_modules))
    with _STARTING, main_module_hidden(), native_threads_capped():
        multiprocessing.forkserver.ensure_running()
    _fork_server_started_at = time.monotonic()


def seconds_since_fork_server_started() -> float:
    """Seconds since :func:`start_fork_server` started the fork server (0 if it did not): the
    part of a cold start-up already paid when a pool starts now."""
    if _fork_server_started_at is None:
        return 0.0
    return time.monotonic() - _fork_server_started_at


class WorkersFailedToStart(RuntimeError):
    """A worker process exited before it was ready for tasks."""


@dataclass(eq=False)
class Worker:
    """The owner's handle on one worker process and the batches it has been sent."""

    number: int
    process: BaseProcess
    tasks_out: Connection
    results_in: Connection
    slot: Any
    # Bytes its task pipe holds: a batch of under a quarter of it is written at once.
    room: int
    # First index of each batch sent and not answered, in the order sent: its (index, task)s.
    batches: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    tasks_sent: int = 0
    ready: bool = False
    # Sent STOP (recycled after its tasks): it gets no more batches.
    retiring: bool = False
    # Sends of this worker's batches still queued for the sender thread.
    queued_sends: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return f"worker {self.number} (pid {self.pid})"

    def running(self) -> tuple[int, float] | None:
        """(index, since) of the task this worker runs now, as its slot says; None if idle."""
        index, since = self.slot[SLOT_INDEX], self.slot[SLOT_SINCE]
        return None if index == IDLE else (int(index), since)

    def memory_bytes(self) -> int | None:
        """Its resident memory now (Linux: VmRSS), None if unknown."""
        return _status_kib(f"/proc/{self.pid}/status", "VmRSS:")

    def peak_memory_bytes(self) -> int | None:
        """The most resident memory it has held (Linux: VmHWM), None if unknown."""
        return _status_kib(f"/proc/{self.pid}/status", "VmHWM:")


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (Linux: MemAvailable), None if unknown."""
    return _status_kib("/proc/meminfo", "MemAvailable:")


def _status_kib(path: str, field_name: str) -> int | None:
    try:
        with open(path) as status:
            for line in status:
                if line.startswith(field_name):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class WorkerSet:
    """The worker processes of one pool. :meth:`start` starts ``workers`` and waits until
    each is ready; :meth:`replace` starts one more in place of one that is gone; :meth:`stop`
    lets them finish and exit, :meth:`abort` ends them now."""

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
            workers: the processes to keep running.
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
        self._context: Any = None
        self._lifeline_reader: Connection | None = None
        self._lifeline: Connection | None = None
        self._log_relay: WorkerLogRelay | None = None
        self._sender: _Sender | None = None
        self._started = 0
        # The live workers, and every process started (for pids, and to end them all).
        self.live: list[Worker] = []
        self.processes: list[BaseProcess] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    @property
    def log(self) -> Any:
        return self._log

    @log.setter
    def log(self, log: Any) -> None:
        """Where the workers' records go from now on (a kept pool serves the next map)."""
        self._log = log
        if self._log_relay is not None:
            self._log_relay.log = log

    def start(self) -> None:
        """Start every worker now and wait until each is ready, so start-up is measured on
        its own and fails early (:class:`WorkersFailedToStart`)."""
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver" and self.preload_modules:
            context.set_forkserver_preload(list(self.preload_modules))
        self._context = context
        # This process keeps the only write end: each worker holds a read end that reports
        # end-of-file when this process is gone, however it ended.
        self._lifeline_reader, self._lifeline = context.Pipe(duplex=False)
        self._log_relay = WorkerLogRelay(context, self._log, self._log_level)
        self._sender = _Sender()
        try:
            for _ in range(self.workers):
                self.replace()
            deadline = time.monotonic() + _WORKER_START_TIMEOUT_SECONDS
            while not all(worker.ready for worker in self.live):
                for worker in self.ready_to_read(max(0.0, deadline - time.monotonic())):
                    self.read_ready(worker)
                if time.monotonic() > deadline:
                    break  # start-up is slow, not broken: the pool works with those it has
        except BaseException:
            self.abort()
            raise

    def replace(self) -> Worker:
        """Start one more worker (without waiting for it: its ready reply comes later)."""
        context = self._context
        tasks_in, tasks_out = context.Pipe(duplex=False)
        results_in, results_out = context.Pipe(duplex=False)
        _widen(results_in)
        room = _widen(tasks_out)
        slot = context.RawArray("d", [IDLE, 0.0])
        number = self._started  # worker 0, 1, ... and on for replacements
        self._started += 1
        log_writer = self._log_relay.new_pipe()
        process = context.Process(
            target=worker_main,
            args=(
                tasks_in,
                results_out,
                slot,
                self._lifeline_reader,
                log_writer,
                self._log_level,
                f"worker {number}",
                self.import_paths,
                self.start_method,
            ),
            name=f"pool-worker-{number}",
        )
        with _STARTING, main_module_hidden(), native_threads_capped():
            process.start()
        self.processes.append(process)
        for connection in (tasks_in, results_out):
            release(connection)  # the worker has its own copies: a pipe ends with its worker
        self._log_relay.release_writers()
        worker = Worker(number, process, tasks_out, results_in, slot, room)
        self.live.append(worker)
        return worker

    def read_ready(self, worker: Worker) -> None:
        """Read a worker's ready reply (at start-up), or learn that it died before it."""
        try:
            kind, _ = receive_reply(worker.results_in)
        except (EOFError, OSError) as error:
            process = worker.process
            process.join(_EXIT_AFTER_KILL_SECONDS)
            raise WorkersFailedToStart(
                f"pool {worker.name} exited with code {process.exitcode} before it was ready"
            ) from error
        if kind != READY:
            raise WorkersFailedToStart(f"pool {worker.name} sent {kind!r} before it was ready")
        worker.ready = True

    def ready_to_read(self, timeout: float | None) -> list[Worker]:
        """The live workers with a reply (or an end: death) to read, waiting up to
        ``timeout``."""
        by_connection = {worker.results_in: worker for worker in self.live}
        by_sentinel = {worker.process.sentinel: worker for worker in self.live}
        ready = wait([*by_connection, *by_sentinel], timeout=timeout)
        found: list[Worker] = []
        for item in ready:
            worker = by_connection.get(item) or by_sentinel.get(item)
            if worker is not None and worker not in found:
                found.append(worker)
        return found

    def send(self, worker: Worker, first_index: int, function: Callable, batch: list) -> None:
        """Send ``worker`` a batch: ``(index, task)`` pairs from ``first_index`` on. Raises what
        pickling a task raised (the caller names the task)."""
        data = pickle.dumps((first_index, function, [task for _, task in batch]), protocol=5)
        worker.batches[first_index] = batch
        worker.tasks_sent += len(batch)
        self._sender.send(worker, data)

    def retire(self, worker: Worker) -> None:
        """No more batches for ``worker``: it exits once those it has are done."""
        worker.retiring = True
        self._sender.send(worker, STOP)

    def forget(self, worker: Worker) -> None:
        """``worker`` has exited or been killed: no longer live, its pipes closed."""
        if worker in self.live:
            self.live.remove(worker)
        worker.process.join(_EXIT_AFTER_KILL_SECONDS)
        for connection in (worker.tasks_out, worker.results_in):
            release(connection)

    def kill(self, worker: Worker) -> None:
        """End ``worker`` now (SIGKILL: it may be stuck in native code) and forget it."""
        _kill([worker.process])
        _wait_for_exit([worker.process], _EXIT_AFTER_KILL_SECONDS)
        self.forget(worker)

    def stop(self) -> None:
        """Let the workers finish their tasks and exit; an interrupt meanwhile aborts."""
        try:
            for worker in self.live:
                if not worker.retiring:
                    self.retire(worker)
            _wait_for_exit(self.processes, TERMINATE_GRACE_SECONDS)
        except BaseException:
            self.abort()
            raise
        self.abort()  # any that did not exit in time

    def abort(self) -> None:
        """Stop now: terminate the workers, kill those still running after a grace period. A
        second interrupt (or any exception) meanwhile kills every worker at once before it
        propagates."""
        try:
            try:
                for process in _running(self.processes):
                    process.terminate()
                _wait_for_exit(self.processes, TERMINATE_GRACE_SECONDS)
            except BaseException:
                _kill(self.processes)
                raise
            _kill(self.processes)
        finally:
            self._release()

    def _release(self) -> None:
        """Once the workers have exited: forward their last log records, let go of the pipes."""
        processes = self.processes
        _wait_for_exit(processes, _EXIT_AFTER_KILL_SECONDS)
        survivors = _running(processes)
        for worker in list(self.live):
            if worker.process not in survivors:
                self.forget(worker)
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._log_relay is not None:
            self._log_relay.close()
            self._log_relay = None
        if self._lifeline_reader is not None:
            release(self._lifeline_reader)
            self._lifeline_reader = None
        if self._lifeline is not None and survivors:
            # The lifeline says whether this process is alive, nothing more: a worker that
            # outlived SIGKILL (stuck in the kernel) keeps it and ends with this process.
            _LIFELINES_OF_SURVIVORS.append(self._lifeline)
            self._log.warning(
                f"pool workers {[process.pid for process in survivors]} did not exit after "
                "SIGKILL; they end with this process at the latest"
            )
        elif self._lifeline is not None:
            release(self._lifeline)
        self._lifeline = None


class _Sender:
    """Sends batches to workers. A message that fits in a pipe's free room is written at once;
    a larger one (or any after it to the same worker) goes through a thread, so the owner
    never blocks on a worker that is itself blocked sending a large result back."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, worker: Worker, data: bytes) -> None:
        with self._lock:
            # Two batches in flight per worker, each under a quarter of its pipe: never blocks.
            direct = worker.queued_sends == 0 and len(data) <= worker.room // 4
            if not direct:
                worker.queued_sends += 1
        if direct:
            with contextlib.suppress(OSError):  # a dead worker: its sentinel says so
                worker.tasks_out.send_bytes(data)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pool-sender", daemon=True)
            self._thread.start()
        self._queue.put((worker, data))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            worker, data = item
            with contextlib.suppress(OSError):
                worker.tasks_out.send_bytes(data)
            with self._lock:
                worker.queued_sends -= 1

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(_EXIT_AFTER_KILL_SECONDS)


def _widen(connection: Connection) -> int:
    """Ask for :data:`_PIPE_BYTES` of room in the pipe (Linux only); the room it has."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            return fcntl.fcntl(connection.fileno(), set_size, _PIPE_BYTES)
    return _DEFAULT_PIPE_BYTES


def exit_reason(exitcode: int | None) -> str:
    """How a process ended, in words."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (as the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _running(processes: list[BaseProcess]) -> list[BaseProcess]:
    """The processes that have not exited, judged by their sentinels (which reads nothing)."""
    started = [process for process in processes if process.pid is not None]
    if not started:
        return []
    exited = set(wait([process.sentinel for process in started], timeout=0))
    return [process for process in started if process.sentinel not in exited]


def _wait_for_exit(processes: list[BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {process.sentinel for process in processes if process.pid is not None}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        pending.difference_update(wait(list(pending), timeout=remaining))


def _kill(processes: list[BaseProcess]) -> None:
    for process in _running(processes):
        with contextlib.suppress(Exception):
            process.kill()
