"""Log records and printed lines from pool workers, forwarded to the owner's log as they
happen: a pipe per worker, and a thread in the owner that reads them."""

import contextlib
import logging
import os
import selectors
import signal
import sys
import threading
from multiprocessing.connection import Connection, wait
from typing import Any

# Dagster's own records must not be forwarded back into Dagster's log.
_NOT_FORWARDED = "dagster"


def forwardable(record: logging.LogRecord) -> bool:
    """Whether a record may be forwarded (not Dagster's own, which would come back)."""
    return record.name != _NOT_FORWARDED and not record.name.startswith(_NOT_FORWARDED + ".")


class WorkerLogRelay:
    """Parent side: one pipe per worker process and a thread that forwards what arrives.

    Each worker sends its records down a pipe of its own: a send returns only once the
    record is in the pipe, so a worker killed right after logging loses nothing, and a
    worker killed in the middle of a send cannot block the others (there is no shared lock,
    unlike a shared ``multiprocessing.Queue``). What a worker writes to its stdout or stderr
    (``print``, warnings, native libraries) becomes records too, a line at a time. The
    thread forwards them, for example to Dagster's ``context.log``, which shows them in the
    run's log under the step that owns the pool. Workers started later (replacing one that
    died, was stopped or recycled) get pipes of their own from :meth:`new_pipe`.
    """

    def __init__(self, context: Any, log: Any, level: int = logging.INFO):
        """The forwarding thread, started now (a pipe per worker: :meth:`new_pipe`).

        Args:
            context: the multiprocessing context the workers start from.
            log: where the records go (its ``log(level, message)``); may be changed later.
            level: the workers' records at this level or above are sent.
        """
        self._context = context
        self.level = level
        self.log = log
        self._lock = threading.Lock()
        self._readers: list[Connection] = []
        self._new_readers: list[Connection] = []
        self._closing = threading.Event()
        self._stopping = threading.Event()
        self._forwarding_failed = False
        # The write ends handed out: this process's copies are closed once each worker has
        # its own, and at the latest by close() (a worker that never started).
        self._writers: list[Connection] = []
        self._thread = threading.Thread(target=self._forward, name="worker-logs", daemon=True)
        self._thread.start()

    def new_pipe(self) -> Connection:
        """A new pipe's write end, for a worker to start with. Once the worker has started,
        :meth:`release_writers` closes this process's copy, so that the pipe reports its end
        when its worker exits."""
        reader, writer = self._context.Pipe(duplex=False)
        with self._lock:
            self._new_readers.append(reader)
            self._writers.append(writer)
        return writer

    def release_writers(self) -> None:
        """Close this process's copies of every write end handed out (each started worker has
        its own)."""
        with self._lock:
            writers, self._writers = self._writers, []
        for writer in writers:
            release(writer)

    def close(self, timeout: float = 30.0) -> None:
        """Forward what is still in the pipes, then stop.

        Called once the workers have exited: every pipe then ends, and the thread stops by
        itself after forwarding the last record. Bounded all the same: past ``timeout`` it is
        told to stop, and if it still runs the pipes are left to it rather than closed under
        it (a closed descriptor could be reused by the next pool's pipes).
        """
        # Our own copies of the write ends must go too (they are still open if the pool
        # failed or was interrupted while starting), or no pipe would ever report its end.
        self.release_writers()
        self._closing.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join(1.0)
        if self._thread.is_alive():
            self.log.warning("worker log forwarding did not finish: late records may be lost")
            return
        for reader in self._readers + self._new_readers:
            with contextlib.suppress(OSError):
                reader.close()

    def _forward(self) -> None:
        open_readers = self._readers
        while not self._stopping.is_set():
            with self._lock:
                open_readers.extend(self._new_readers)
                self._new_readers.clear()
            if not open_readers:
                if self._closing.is_set():
                    return
                self._closing.wait(0.05)
                continue
            for reader in wait(open_readers, timeout=0.1):
                try:
                    record = reader.recv()
                except (EOFError, OSError):
                    open_readers.remove(reader)
                    with contextlib.suppress(OSError):
                        reader.close()
                    continue
                try:
                    forward(self.log, record)
                except Exception:  # the thread must go on reading, or workers block in send
                    if not self._forwarding_failed:  # say so once, not once per record
                        self._forwarding_failed = True
                        with contextlib.suppress(Exception):
                            logging.getLogger(__name__).exception("could not forward a record")


def release(connection: Connection) -> None:
    """Close this process's copy of a pipe end a child has its own copy of."""
    with contextlib.suppress(OSError):
        connection.close()


# A line longer than this is forwarded in pieces of this size: nothing is dropped, and one
# huge line cannot hold up the worker or the run's log.
MAX_LINE_CHARACTERS = 64 * 1024
STDOUT_LEVEL, STDERR_LEVEL = logging.INFO, logging.WARNING


def forward(log: Any, record: dict) -> None:
    log.log(record["level"], f"[{record['worker']}] {record['message']}")


class PipeHandler(logging.Handler):
    """Worker side: send each record, as plain data, down this worker's pipe."""

    def __init__(self, writer: Connection, worker: str, level: int):
        super().__init__(level)
        self._writer = writer
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        if not forwardable(record):
            return
        # If the owner is gone or its pipe broke, there is nowhere left to report to.
        with contextlib.suppress(Exception):
            self._writer.send(
                {"level": record.levelno, "worker": self._worker, "message": record_text(record)}
            )


class OutputRelay:
    """Worker side: file descriptors 1 and 2 become pipes that a thread of the worker reads,
    sending each line as a record through ``handler`` (stdout at INFO, stderr at WARNING), so
    ``print`` output reaches the owner's log as it is printed, not when the step ends.
    :meth:`flush` forwards whatever the current task wrote before its result goes back."""

    def __init__(self, handler: logging.Handler):
        self._handler = handler
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._pending: dict[int, bytearray] = {}

    def start(self) -> None:
        for descriptor, level, name in ((1, STDOUT_LEVEL, "stdout"), (2, STDERR_LEVEL, "stderr")):
            reader, writer = os.pipe()
            os.dup2(writer, descriptor)
            os.close(writer)
            os.set_blocking(reader, False)
            self._selector.register(reader, selectors.EVENT_READ, (level, name))
            self._pending[reader] = bytearray()
        for stream in (sys.stdout, sys.stderr):  # a line reaches the pipe when printed
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(line_buffering=True)
        threading.Thread(target=self._relay, name="worker-output", daemon=True).start()

    def flush(self) -> None:
        """Forward everything written so far, a last unfinished line included."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with self._lock:
            for key in list(self._selector.get_map().values()):
                self._read(key)
                self._send_lines(key, final=True)

    def _relay(self) -> None:
        without_signals()
        while self._selector.get_map():
            for key, _ in self._selector.select():
                with self._lock:
                    self._read(key)
                    self._send_lines(key, final=False)

    def _read(self, key: selectors.SelectorKey) -> None:
        while True:
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                return
            if not data:  # cannot happen while this process holds the write end
                self._selector.unregister(key.fd)
                return
            self._pending[key.fd] += data
            if len(self._pending[key.fd]) >= MAX_LINE_CHARACTERS:
                self._send_lines(key, final=False)

    def _send_lines(self, key: selectors.SelectorKey, final: bool) -> None:
        pending = self._pending[key.fd]
        while pending:
            end = pending.find(b"\n")
            if end < 0 and len(pending) < MAX_LINE_CHARACTERS and not final:
                return
            cut = end if 0 <= end < MAX_LINE_CHARACTERS else min(len(pending), MAX_LINE_CHARACTERS)
            line = pending[:cut].decode("utf-8", errors="replace").rstrip("\r")
            del pending[: cut + (1 if cut == end else 0)]
            level, name = key.data
            if level >= self._handler.level:
                self._handler.handle(logging.LogRecord(name, level, "", 0, line, None, None))


def without_signals() -> None:
    """Block every signal in the calling (helper) thread. The kernel hands a signal sent to
    the process to any thread that does not block it; one taken by a helper thread would not
    interrupt the main thread's sleep, so a task's own handler (or the default action of
    SIGTERM ignored by it) would wait until the task's next wake-up."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def record_text(record: logging.LogRecord) -> str:
    """The record as one forwarded message: its logger, message and any traceback."""
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    return f"{text}\n{record.exc_text}" if record.exc_text else text
