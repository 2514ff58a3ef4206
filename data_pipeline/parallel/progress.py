"""Progress lines for long pooled steps, so a materialization is never silent: as chunks
complete, and while a chunk runs long."""

import time
from collections.abc import Callable, Iterable
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
        total_chunks: int | None,
        unit: str = "items",
        min_seconds: float = 5.0,
        min_fraction: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        """Progress lines for ``total_chunks`` chunks.

        Args:
            log: where the lines go.
            label: starts each line (the step).
            total_chunks: the chunks there are (may be updated as tasks are planned; None:
                unknown, a line every ``min_seconds``).
            unit: what the items counted are, in the rate.
            min_seconds: at least this long between two lines.
            min_fraction: at least this share of the chunks done between two lines.
            clock: the time, in seconds.
        """
        self.log, self.label, self.total_chunks, self.unit = log, label, total_chunks, unit
        self.min_seconds, self.min_fraction, self._clock = min_seconds, min_fraction, clock
        self.chunks = self.items = 0
        self._started = self._last_time = clock()
        self._last_chunks = 0

    def update(self, items: int) -> None:
        self.chunks += 1
        self.items += items
        now = self._clock()
        total = self.total_chunks or 0
        enough_progress = (self.chunks - self._last_chunks) >= self.min_fraction * total
        if enough_progress and now - self._last_time >= self.min_seconds:
            self._last_time, self._last_chunks = now, self.chunks
            self.log.info(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        if self.total_chunks is None:
            rate = self.items / elapsed
            return f"{self.label}: {self.chunks:,} chunks, {rate:,.0f} {self.unit}/s"
        done = self.chunks / self.total_chunks if self.total_chunks else 1.0
        remaining = elapsed * (1 - done) / done if done else float("inf")
        return (
            f"{self.label}: {self.chunks}/{self.total_chunks} chunks ({done:.0%}), "
            f"{self.items / elapsed:,.0f} {self.unit}/s, ETA {remaining:.0f} s"
        )


class LongTasks:
    """Says which tasks have been running for ``threshold_seconds`` or more: one line at most
    every ``every_seconds`` while any is, so a chunk of costly values is never silent.

    The pool calls :meth:`check` with what is running whenever it has waited ``poll_seconds``
    for a result.
    """

    def __init__(
        self,
        log: Any,
        label: str,
        threshold_seconds: float = 10.0,
        every_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """A watch for tasks running ``threshold_seconds`` or more.

        Args:
            log: where the lines go.
            label: starts each line (the step).
            threshold_seconds: a task running this long is named.
            every_seconds: at least this long between two lines (``threshold_seconds``).
            clock: the time, in seconds (the clock the tasks' start times are on).
        """
        self.log, self.label, self.threshold_seconds = log, label, threshold_seconds
        self.every_seconds = threshold_seconds if every_seconds is None else every_seconds
        self._clock = clock
        self._last_time = -float("inf")

    @property
    def poll_seconds(self) -> float:
        return min(1.0, max(0.01, self.threshold_seconds / 4))

    def check(self, running: Iterable[tuple[str, float]]) -> None:
        """``running``: each task's description and when it started (on this clock)."""
        now = self._clock()
        long = [(name, now - started) for name, started in running]
        long = [(name, seconds) for name, seconds in long if seconds >= self.threshold_seconds]
        if long and now - self._last_time >= self.every_seconds:
            self._last_time = now
            self.log.info(
                f"{self.label}: "
                + ", ".join(f"{name} running for {_seconds(seconds)}" for name, seconds in long)
            )


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
