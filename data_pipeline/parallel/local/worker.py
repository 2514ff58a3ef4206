"""The worker side of the local pool: what a worker process sets up when it starts, and the
timed call that runs each task. Workers import this module, so it stays small and Dagster-free."""

import contextlib
import logging
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from data_pipeline.parallel.stats import Timing, timed_call
from data_pipeline.parallel.worker_logs import OutputRelay, PipeHandler, without_signals

# The slot table holds two numbers per worker: its pid and the index of the task it runs
# (IDLE between tasks). Each worker writes only its own slot, so no lock is needed; the
# owner reads it to tell which chunk a dead worker held, which the executor does not know.
IDLE = -1
_slot: int | None = None
_slots: Any = None
_output: OutputRelay | None = None


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
    it tagged with the worker).

    Args:
        slot_counter: shared counter handing each worker its slot number.
        slots: the slot table (pid and running task of each worker).
        lifeline: read end of the pipe that ends when the owner is gone.
        log_writers: one log pipe per slot; the worker keeps its own, closes the others.
        log_level: records at this level or above go to the owner.
        import_paths: directories to put on ``sys.path`` (the owner's code location).
        start_method: named in the "started" line.
    """
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


def run_task(function: Callable[[Any], Any], task: Any, index: int) -> tuple[Any, Timing]:
    """What the executor runs in a worker: the timed call, recorded in the slot table."""
    _slots[2 * _slot + 1] = index
    try:
        return timed_call(function, task)
    finally:
        _slots[2 * _slot + 1] = IDLE
        if _output is not None:
            _output.flush()  # what the task printed goes before its result


def wait_for_all_workers(timeout: float) -> None:
    """Return once every worker of the pool has written its pid into its slot."""
    deadline = time.monotonic() + timeout
    while any(pid == 0 for pid in _slots[0::2]):
        if time.monotonic() > deadline:
            return  # start-up is slow, not broken: the pool works with the workers it has
        time.sleep(0.002)
