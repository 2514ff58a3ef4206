"""The lines a Dask pool's tasks log or print, as they arrive through the cluster's events:
forwarded to the owner's log, counted, and waited for before the pool closes."""

import contextlib
import threading
import time
from typing import Any

# After the last result, log lines still on their way from the workers get this long.
LOG_DRAIN_SECONDS = 5.0


class ForwardedLines:
    """Forwards each line to ``log``; knows how many the finished tasks sent."""

    def __init__(self, log: Any):
        self._log = log
        self._sent = 0
        self._received = 0
        self._lock = threading.Lock()

    def forward(self, event: tuple[float, dict]) -> None:
        """A line a task logged or printed (runs in the client's event-loop thread)."""
        _, line = event
        with contextlib.suppress(Exception):  # a log that fails must not stop the others
            self._log.log(line["level"], line["message"])
        with self._lock:
            self._received += 1

    def sent(self, lines: int) -> None:
        """A finished task says it sent this many lines."""
        with self._lock:
            self._sent += lines

    def drain(self) -> None:
        """Wait (bounded) for the lines the finished tasks sent but that have not arrived:
        they travel through the scheduler, apart from the results."""
        deadline = time.monotonic() + LOG_DRAIN_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                if self._received >= self._sent:
                    return
            time.sleep(0.01)
        self._log.warning("some log lines of the Dask workers did not arrive in time")
