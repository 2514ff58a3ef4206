"""The worker side of the local pool: a worker process's main loop, which receives batches of
tasks on a pipe of its own, runs them and sends each batch's results (or what went wrong,
as text that always travels) back on another. Workers import this module, so it stays small
and Dagster-free."""

import contextlib
import logging
import multiprocessing.util
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from data_pipeline.parallel.worker_logs import OutputRelay, PipeHandler, without_signals

# A worker's slot: two numbers it writes and the owner reads (no lock: one writer): the index
# of the task it runs (IDLE between tasks) and since when (time.monotonic(), one clock for
# every process on Linux and macOS). The owner tells from it which task a worker that died
# or ran past its deadline was running, even inside a batch.
IDLE = -1.0
SLOT_INDEX, SLOT_SINCE = 0, 1
# What the owner sends a worker that is to exit once its batches are done.
STOP = b"stop"
# The first frame of each reply: its kind and how many out-of-band buffers follow the pickle,
# then each buffer's size.
_HEADER = struct.Struct("!cI")
RESULTS, FAILED, READY = b"r", b"f", b"s"
# Results larger than this travel as pickle protocol 5 buffers of their own (numpy arrays,
# bytearrays, Arrow buffers): no copy into the pickle on this side, none out of it on the
# owner's.
_OUT_OF_BAND_BYTES = 64 * 1024


def worker_main(
    tasks_in: Connection,
    results_out: Connection,
    slot: Any,
    lifeline: Connection,
    log_writer: Connection,
    log_level: int,
    name: str,
    import_paths: tuple[str, ...] = (),
    start_method: str = "",
) -> None:
    """A worker process: set up, say it is ready, then run the batches it receives until
    :data:`STOP` or the end of its pipe.

    Args:
        tasks_in: where batches arrive: pickled ``(first index, function, tasks)``.
        results_out: where replies go (see :func:`send_reply`).
        slot: this worker's slot (see :data:`IDLE`).
        lifeline: read end of the pipe that ends when the owner is gone.
        log_writer: this worker's log pipe (records at ``log_level`` or above, and printed
            lines).
        name: how its log lines are tagged (``worker 3``; its pid is added).
        import_paths: directories to put on ``sys.path`` (the owner's code location).
        start_method: named in the "started" line.
    """
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
    slot[SLOT_INDEX] = IDLE
    handler = PipeHandler(log_writer, f"{name} pid {os.getpid()}", log_level)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(log_level)
    output = OutputRelay(handler)
    output.start()
    # What the worker writes last is forwarded before it exits: multiprocessing runs these
    # finalizers at a child's exit.
    multiprocessing.util.Finalize(None, output.flush, exitpriority=100)
    logging.getLogger(__name__).info(
        "started (pid %d, %s), ready for tasks", os.getpid(), start_method or "unknown start"
    )
    output.flush()
    send_reply(results_out, READY, os.getpid())
    while True:
        try:
            message = tasks_in.recv_bytes()
        except (EOFError, OSError):
            return
        if message == STOP:
            return
        _run_batch(message, slot, results_out, output)


def _run_batch(message: bytes, slot: Any, results_out: Connection, output: OutputRelay) -> None:
    """Run one batch and send its results, or the first failure (the tasks after it do not
    run: the owner fails the map or retries)."""
    try:
        first_index, function, tasks = pickle.loads(message)
    except BaseException as error:
        # The batch could not be read here: its module does not import, say.
        # -1: the owner knows it as this worker's oldest unanswered batch.
        send_reply(results_out, FAILED, (-1, "unreadable", *_described(error)))
        return
    results, seconds = [], []
    started, cpu_started = time.monotonic(), time.thread_time()
    for offset, task in enumerate(tasks):
        task_started = time.monotonic()
        slot[SLOT_SINCE] = task_started
        slot[SLOT_INDEX] = first_index + offset
        try:
            results.append(function(task))
        except SystemExit as error:
            slot[SLOT_INDEX] = IDLE
            output.flush()
            send_reply(
                results_out, FAILED, (first_index + offset, "exit", repr(error.code), "", None)
            )
            return
        except BaseException as error:
            slot[SLOT_INDEX] = IDLE
            output.flush()
            send_reply(results_out, FAILED, (first_index + offset, "raised", *_described(error)))
            return
        seconds.append(time.monotonic() - task_started)
    slot[SLOT_INDEX] = IDLE
    output.flush()  # what the tasks printed goes before their results
    timing = (os.getpid(), started, time.monotonic(), time.thread_time() - cpu_started)
    try:
        send_reply(results_out, RESULTS, (first_index, results, seconds, timing))
    except _UNPICKLABLE as error:
        offset, culprit = _unpicklable_result(results, error)
        text = f"{type(culprit).__name__}: {culprit}"
        send_reply(results_out, FAILED, (first_index + offset, "result", text, "", None))


_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError, RecursionError, ValueError)


def _unpicklable_result(results: list, error: BaseException) -> tuple[int, BaseException]:
    """Which result of a batch would not pickle, and why (the first; the batch's error if each
    alone pickles)."""
    for offset, result in enumerate(results):
        try:
            pickle.dumps(result, protocol=5)
        except _UNPICKLABLE as culprit:
            return offset, culprit
    return 0, error


def _described(error: BaseException) -> tuple[str, str, bytes | None]:
    """An exception as ``"Type: message"``, its traceback as text, and the exception itself
    pickled if it can be rebuilt from that on the owner's side (None if not: its class takes
    other arguments than it passes up, it holds a lock...)."""
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = f"{name}: {error}"
    trace = "".join(traceback.format_exception(error))
    try:
        pickled = pickle.dumps(error, protocol=5)
        pickle.loads(pickled)
    except BaseException:
        pickled = None
    return text, trace, pickled


def send_reply(results_out: Connection, kind: bytes, payload: Any) -> None:
    """One reply: a header frame (kind, buffer count), the pickle, then each large buffer as
    a frame of its own, sent straight from the object's memory."""
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < _OUT_OF_BAND_BYTES:
            return True  # small: pickled in-band
        buffers.append(buffer)
        return False

    data = pickle.dumps(payload, protocol=5, buffer_callback=out_of_band)
    sizes = struct.pack(f"!{len(buffers)}Q", *(buffer.raw().nbytes for buffer in buffers))
    results_out.send_bytes(_HEADER.pack(kind, len(buffers)) + sizes)
    results_out.send_bytes(data)
    for buffer in buffers:
        results_out.send_bytes(buffer.raw())


def receive_reply(results_in: Connection) -> tuple[bytes, Any]:
    """The other end of :func:`send_reply`: (kind, payload). Buffers arrive in writable
    memory of their own (a numpy array result can be changed in place)."""
    header = results_in.recv_bytes()
    kind, count = _HEADER.unpack_from(header)
    sizes = struct.unpack_from(f"!{count}Q", header, _HEADER.size)
    data = results_in.recv_bytes()
    buffers = []
    for size in sizes:
        buffer = bytearray(size)
        results_in.recv_bytes_into(buffer)
        buffers.append(buffer)
    return kind, pickle.loads(data, buffers=buffers)


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
