"""Log records and printed lines from pool workers, forwarded to the parent's logger as they
happen.

Each worker sends its records down a pipe of its own: a send returns only once the record is
in the pipe, so a worker killed right after logging loses nothing, and a worker killed in
the middle of a send cannot block the others (there is no shared lock, unlike a shared
``multiprocessing.Queue``). What a worker writes to its stdout or stderr (``print``, warnings,
native libraries) becomes records too, a line at a time. A thread in the parent forwards
them, for example to Dagster's ``context.log``, which shows them in the run's log under the
step that owns the pool.
"""

import contextlib
import logging
import os
import selectors
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

# Dagster's own records must not be forwarded back into Dagster's log.
_NOT_FORWARDED = "dagster"


def _forwardable(record: logging.LogRecord) -> bool:
    return record.name != _NOT_FORWARDED and not record.name.startswith(_NOT_FORWARDED + ".")


class WorkerLogRelay:
    """Parent side: one pipe per worker slot and a thread that forwards what arrives."""

    def __init__(self, context: Any, slots: int, log: Any, level: int = logging.INFO):
        pipes = [context.Pipe(duplex=False) for _ in range(slots)]
        self.readers = [reader for reader, _ in pipes]
        self.writers = [writer for _, writer in pipes]
        self.level = level
        self._log = log
        self._stopping = threading.Event()
        self._forwarding_failed = False
        self._thread = threading.Thread(target=self._forward, name="worker-logs", daemon=True)
        self._thread.start()

    def release_writers(self) -> None:
        """Close this process's copies of the write ends once every worker has its own, so a
        pipe reports its end when its worker exits."""
        for writer in self.writers:
            writer.close()

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
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join(1.0)
        if self._thread.is_alive():
            self._log.warning("worker log forwarding did not finish: late records may be lost")
            return
        for reader in self.readers:
            with contextlib.suppress(OSError):
                reader.close()

    def _forward(self) -> None:
        open_readers = list(self.readers)
        while open_readers and not self._stopping.is_set():
            for reader in wait(open_readers, timeout=0.1):
                try:
                    record = reader.recv()
                except (EOFError, OSError):
                    open_readers.remove(reader)
                    continue
                try:
                    forward(self._log, record)
                except Exception:  # the thread must go on reading, or workers block in send
                    if not self._forwarding_failed:  # say so once, not once per record
                        self._forwarding_failed = True
                        with contextlib.suppress(Exception):
                            logging.getLogger(__name__).exception("could not forward a record")


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
        if not _forwardable(record):
            return
        # If the owner is gone or its pipe broke, there is nowhere left to report to.
        with contextlib.suppress(Exception):
            self._writer.send(
                {"level": record.levelno, "worker": self._worker, "message": _text(record)}
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


class DirectHandler(logging.Handler):
    """For pools of one worker, which run tasks in this process: the same forwarding, for the
    records of one thread only (the step process runs others, whose records are not ours)."""

    def __init__(self, log: Any, level: int, thread: int, worker: str = "in-process"):
        super().__init__(level)
        self._log = log
        self._thread = thread
        self._worker = worker
        self.forwarding = False  # only that thread gets past the check, so a flag suffices

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() != self._thread or self.forwarding:
            return
        if not _forwardable(record):
            return
        self.forwarding = True  # the forwarded record must not come back through us
        try:
            forward(
                self._log,
                {"level": record.levelno, "worker": self._worker, "message": _text(record)},
            )
        finally:
            self.forwarding = False


@contextlib.contextmanager
def this_threads_records_to(log: Any, level: int, worker: str = "in-process") -> Iterator[None]:
    """While the block runs, forward to ``log`` what the calling thread logs or prints at
    ``level`` or above, through any logger, tagged ``[worker]``. The root logger's level is
    lowered for the block if it would drop such records, and restored when the last such block
    in this process ends."""
    handler = DirectHandler(log, level, threading.get_ident(), worker)
    _lower_root_level(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _this_threads_output_to(handler):
            yield
    finally:
        root.removeHandler(handler)
        _restore_root_level()


@contextlib.contextmanager
def _this_threads_output_to(handler: logging.Handler) -> Iterator[None]:
    """While the block runs, lines the calling thread prints go to ``handler`` as records
    (stdout at INFO, stderr at WARNING); other threads' output goes where it went before."""
    replaced = {"stdout": sys.stdout, "stderr": sys.stderr}
    lines = {
        name: _ThreadLines(stream, name, level, handler)
        for (name, stream), level in zip(
            replaced.items(), (STDOUT_LEVEL, STDERR_LEVEL), strict=True
        )
    }
    sys.stdout, sys.stderr = lines["stdout"], lines["stderr"]
    try:
        yield
    finally:
        for name, stream in lines.items():
            stream.finish()
            if getattr(sys, name) is stream:  # unless someone replaced it meanwhile
                setattr(sys, name, replaced[name])


class _ThreadLines:
    """A text stream that sends one thread's lines as records and passes everything else on
    to the stream it stands in for."""

    def __init__(self, original: Any, name: str, level: int, handler: logging.Handler):
        self._original, self._name, self._level, self._handler = original, name, level, handler
        self._thread = threading.get_ident()
        self._pending = ""

    def write(self, text: str) -> int:
        # What the handler's own log prints while forwarding (a console handler) goes on.
        if threading.get_ident() != self._thread or getattr(self._handler, "forwarding", False):
            return self._original.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._send(line)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() != self._thread:
            self._original.flush()

    def finish(self) -> None:
        if self._pending:
            self._send(self._pending)
            self._pending = ""

    def _send(self, line: str) -> None:
        if self._level >= self._handler.level:
            self._handler.handle(
                logging.LogRecord(self._name, self._level, "", 0, line, None, None)
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


_root_level_lock = threading.Lock()
_root_level_users = 0
_root_level_before = logging.NOTSET
_root_handlers_kept_at_their_level: list[logging.Handler] = []


def _at_least_the_level_before(record: logging.LogRecord) -> bool:
    return record.levelno >= _root_level_before


def _lower_root_level(level: int) -> None:
    """Lower the root logger's level to ``level`` if needed. Its other handlers meanwhile drop
    what the level before would have dropped, so for them, and for every other thread,
    nothing changes."""
    global _root_level_users, _root_level_before
    with _root_level_lock:
        root = logging.getLogger()
        if _root_level_users == 0:
            _root_level_before = root.level
            if root.level > level:  # NOTSET (0) already lets everything through
                _root_handlers_kept_at_their_level[:] = root.handlers
                for handler in root.handlers:
                    handler.addFilter(_at_least_the_level_before)
        _root_level_users += 1
        if root.level > level:
            root.setLevel(level)


def _restore_root_level() -> None:
    global _root_level_users
    with _root_level_lock:
        _root_level_users -= 1
        if _root_level_users == 0:
            root = logging.getLogger()
            if root.level != _root_level_before:  # setLevel clears every logger's cache
                root.setLevel(_root_level_before)
            for handler in _root_handlers_kept_at_their_level:
                handler.removeFilter(_at_least_the_level_before)
            _root_handlers_kept_at_their_level.clear()


def _text(record: logging.LogRecord) -> str:
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    return f"{text}\n{record.exc_text}" if record.exc_text else text
