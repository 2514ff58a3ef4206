"""One thread's log records and printed lines, forwarded to a log while a block runs: tasks
that run in this process (a one-worker pool, a Dask worker's thread)."""

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from data_pipeline.parallel.worker_logs import (
    STDERR_LEVEL,
    STDOUT_LEVEL,
    forward,
    forwardable,
    record_text,
)


class DirectHandler(logging.Handler):
    """For pools of one worker, which run tasks in this process: the same forwarding, for the
    records of one thread only (the step process runs others, whose records are not ours)."""

    def __init__(self, log: Any, level: int, thread: int, worker: str = "in-process"):
        """A handler for the records of ``thread`` only.

        Args:
            log: where the records go (its ``log(level, message)``).
            level: records at this level or above are forwarded.
            thread: the thread whose records these are (``threading.get_ident()``).
            worker: the tag the forwarded lines carry.
        """
        super().__init__(level)
        self._log = log
        self._thread = thread
        self._worker = worker
        self.forwarding = False  # only that thread gets past the check, so a flag suffices

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() != self._thread or self.forwarding:
            return
        if not forwardable(record):
            return
        self.forwarding = True  # the forwarded record must not come back through us
        try:
            forward(
                self._log,
                {"level": record.levelno, "worker": self._worker, "message": record_text(record)},
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
    lower_root_level(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _this_threads_output_to(handler):
            yield
    finally:
        root.removeHandler(handler)
        restore_root_level()


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


def lower_root_level(level: int) -> None:
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


def restore_root_level() -> None:
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
