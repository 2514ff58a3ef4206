"""The worker side of the pool: what a worker process sets up when it starts, and the timed
call that runs each task. Workers import this module, so it stays small and Dagster-free."""

import contextlib
import logging
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from data_pipeline.parallel.worker_logs import OutputRelay, PipeHandler, without_signals

# Native libraries (OpenMP, BLAS, numexpr, numba) start a thread per CPU in every process
# unless told otherwise, multiplying the processes the pool already runs. They read these
# variables when they load, which in a forkserver worker can be before any code of the
# worker runs (preloaded modules), so workers must be started with them already set.
THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)

# The slot table holds two numbers per worker: its pid and the index of the task it runs
# (IDLE between tasks). Each worker writes only its own slot, so no lock is needed; the
# owner reads it to tell which chunk a dead worker held, which the executor does not know.
IDLE = -1
_slot: int | None = None
_slots: Any = None
_output: OutputRelay | None = None


@contextlib.contextmanager
def native_threads_capped() -> Iterator[None]:
    """Within the block, every thread limit the user has not set reads 1 in this process's
    environment, so that processes started inside it (workers, the fork server) inherit it."""
    added = [name for name in THREAD_LIMIT_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def initialize_worker(
    slot_counter: Any,
    slots: Any,
    lifeline: Connection,
    log_writers: list[Connection],
    log_level: int,
    import_paths: tuple[str, ...] = (),
    start_method: str = "",
) -> None:
    """Run once in each worker before its first task; says so at INFO (the owner's log shows
    it tagged with the worker)."""
    global _slot, _slots, _output
    # Where the owner's code location imports from (a working directory Dagster put on
    # sys.path only while loading it), so the tasks' functions unpickle here too.
    sys.path.extend(path for path in import_paths if path not in sys.path)
    # Ctrl-C reaches the whole process group: the owner decides, workers ignore it. SIGTERM
    # gets its default action back, in case the owner's handler was inherited.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(
        target=_exit_when_owner_gone, args=(lifeline,), name="pool-lifeline", daemon=True
    ).start()
    with slot_counter.get_lock():
        _slot = slot_counter.value
        slot_counter.value += 1
    _slots = slots
    _slots[2 * _slot] = os.getpid()
    for slot, writer in enumerate(log_writers):
        if slot != _slot:
            writer.close()  # so each log pipe ends when its own worker does
    name = f"worker {_slot} pid {os.getpid()}"
    handler = PipeHandler(log_writers[_slot], name, log_level)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(log_level)
    _output = OutputRelay(handler)
    _output.start()
    # What the worker writes last (the traceback of a task it could not even unpickle, say)
    # is forwarded before it exits: multiprocessing runs these finalizers at a child's exit.
    multiprocessing.util.Finalize(None, _output.flush, exitpriority=100)
    logging.getLogger(__name__).info(
        "started (pid %d, %s), ready for tasks", os.getpid(), start_method or "unknown start"
    )


def _exit_when_owner_gone(lifeline: Connection) -> None:
    """End this worker once the process that owns the pool is gone.

    Only the owner holds the write end of the lifeline pipe and it never writes, so this read
    ends exactly when the owner has exited, however it ended: an owner killed outright cannot
    stop its workers, which would otherwise wait for tasks forever. (CPython's fork server
    watches its parent the same way.)
    """
    without_signals()
    with contextlib.suppress(EOFError, OSError):
        while True:
            lifeline.recv_bytes()
    os._exit(1)


def run_task(
    function: Callable[[Any], Any], task: Any, index: int
) -> tuple[Any, tuple[int, float, float, float]]:
    """What the executor runs in a worker: the timed call, recorded in the slot table."""
    _slots[2 * _slot + 1] = index
    try:
        return timed_call(function, task)
    finally:
        _slots[2 * _slot + 1] = IDLE
        if _output is not None:
            _output.flush()  # what the task printed goes before its result


def timed_call(
    function: Callable[[Any], Any], task: Any
) -> tuple[Any, tuple[int, float, float, float]]:
    """``function(task)`` and (pid, start, end, CPU seconds) of the call."""
    # time.monotonic() is one system-wide clock on Linux and macOS, so the owner can compare a
    # worker's timestamps with its own. Tasks run in the calling thread (a worker's main
    # thread), and thread_time() leaves out the process's other threads: in a one-worker pool
    # those are every thread of the step process.
    started, cpu_started = time.monotonic(), time.thread_time()
    result = function(task)
    return result, (os.getpid(), started, time.monotonic(), time.thread_time() - cpu_started)


def wait_for_all_workers(timeout: float) -> None:
    """Return once every worker of the pool has written its pid into its slot."""
    deadline = time.monotonic() + timeout
    while any(pid == 0 for pid in _slots[0::2]):
        if time.monotonic() > deadline:
            return  # start-up is slow, not broken: the pool works with the workers it has
        time.sleep(0.002)
