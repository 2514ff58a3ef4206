"""What a thread pool's threads log or print, sent straight to the step's log (no queue: they
run in its process), each line tagged with the thread that wrote it."""

import logging
import sys
import threading
from typing import Any

from data_pipeline.parallel.thread_logs import lower_root_level, restore_root_level
from data_pipeline.parallel.worker_logs import (
    STDERR_LEVEL,
    STDOUT_LEVEL,
    forward,
    forwardable,
    record_text,
)


class PoolThreadRecords:
    """While open (a ``with`` block), the records the pool's threads log at ``level`` or
    above, through any logger, and the lines they print, go to ``log`` tagged ``[thread N tid
    T]``; every other thread's records and output go where they went before. Each pool thread
    calls :meth:`register` once, as it starts."""

    def __init__(self, log: Any, level: int):
        self.level = level
        self._names: dict[int, str] = {}  # thread ident -> its tag
        self._lock = threading.Lock()
        self._handler = _PoolThreadsHandler(log, level, self._names)
        self._replaced: dict[str, Any] = {}
        self._streams: dict[str, _PoolThreadsLines] = {}

    def register(self) -> str:
        """Count the calling thread as the pool's; its tag."""
        with self._lock:
            name = f"thread {len(self._names)} tid {threading.get_native_id()}"
            self._names[threading.get_ident()] = name
        return name

    def __enter__(self) -> "PoolThreadRecords":
        lower_root_level(self.level)
        logging.getLogger().addHandler(self._handler)
        for name, level in (("stdout", STDOUT_LEVEL), ("stderr", STDERR_LEVEL)):
            self._replaced[name] = getattr(sys, name)
            self._streams[name] = _PoolThreadsLines(
                self._replaced[name], name, level, self._handler, self._names
            )
            setattr(sys, name, self._streams[name])
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, stream in self._streams.items():
            stream.finish()
            if getattr(sys, name) is stream:  # unless someone replaced it meanwhile
                setattr(sys, name, self._replaced[name])
        logging.getLogger().removeHandler(self._handler)
        restore_root_level()


class _PoolThreadsHandler(logging.Handler):
    """Forwards the records of the registered threads only, each tagged with its thread."""

    def __init__(self, log: Any, level: int, names: dict[int, str]):
        super().__init__(level)
        self._log, self._names = log, names
        self._local = threading.local()  # per thread: forwarding now (must not come back)

    def forwarding(self) -> bool:
        return getattr(self._local, "forwarding", False)

    def emit(self, record: logging.LogRecord) -> None:
        name = self._names.get(threading.get_ident())
        if name is None or self.forwarding() or not forwardable(record):
            return
        self.send(name, record.levelno, record_text(record))

    def send(self, name: str, level: int, message: str) -> None:
        """``message`` to the log at ``level``, tagged ``[name]``."""
        self._local.forwarding = True
        try:
            forward(self._log, {"level": level, "worker": name, "message": message})
        finally:
            self._local.forwarding = False


class _PoolThreadsLines:
    """A text stream that sends the registered threads' lines as records (a line at a time,
    per thread) and passes everything else on to the stream it stands in for."""

    def __init__(
        self,
        original: Any,
        name: str,
        level: int,
        handler: _PoolThreadsHandler,
        names: dict[int, str],
    ):
        self._original, self._name, self._level = original, name, level
        self._handler, self._names = handler, names
        self._pending: dict[int, str] = {}

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        if thread not in self._names or self._handler.forwarding():
            return self._original.write(text)
        *lines, self._pending[thread] = (self._pending.get(thread, "") + text).split("\n")
        for line in lines:
            self._send(thread, line)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() not in self._names:
            self._original.flush()

    def finish(self) -> None:
        """Send what the threads left without a line end (the pool's threads are done)."""
        for thread, pending in self._pending.items():
            if pending:
                self._send(thread, pending)
        self._pending.clear()

    def _send(self, thread: int, line: str) -> None:
        if self._level >= self._handler.level:
            self._handler.send(self._names[thread], self._level, f"{self._name}: {line}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)
