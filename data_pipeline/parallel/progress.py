"""Progress lines for long pooled steps, so a materialization is never silent."""

import time
from collections.abc import Callable
from typing import Any


class Progress:
    """Logs chunks done / total, items per second and an ETA.

    A line is logged only when both 10 % more of the chunks are done and a few seconds have
    passed since the last line (whichever is rarer), so a short step logs nothing and a long
    one at most ten lines.
    """

    def __init__(
        self,
        log: Any,
        label: str,
        total_chunks: int,
        unit: str = "items",
        min_seconds: float = 5.0,
        min_fraction: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.label, self.total_chunks, self.unit = log, label, total_chunks, unit
        self.min_seconds, self.min_fraction, self._clock = min_seconds, min_fraction, clock
        self.chunks = self.items = 0
        self._started = self._last_time = clock()
        self._last_chunks = 0

    def update(self, items: int) -> None:
        self.chunks += 1
        self.items += items
        now = self._clock()
        enough_progress = (self.chunks - self._last_chunks) >= self.min_fraction * self.total_chunks
        if enough_progress and now - self._last_time >= self.min_seconds:
            self._last_time, self._last_chunks = now, self.chunks
            self.log.info(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        done = self.chunks / self.total_chunks if self.total_chunks else 1.0
        remaining = elapsed * (1 - done) / done if done else float("inf")
        return (
            f"{self.label}: {self.chunks}/{self.total_chunks} chunks ({done:.0%}), "
            f"{self.items / elapsed:,.0f} {self.unit}/s, ETA {remaining:.0f} s"
        )
