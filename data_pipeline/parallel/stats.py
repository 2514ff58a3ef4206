"""Where the wall time of a pool went, filled in by the pool as it runs from each task's
timing."""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (pid, start, end, CPU seconds) of one task, as :func:`timed_call` measures it.
Timing = tuple[int, float, float, float]


def timed_call(function: Callable[[Any], Any], task: Any) -> tuple[Any, Timing]:
    """``function(task)`` and (pid, start, end, CPU seconds) of the call."""
    # time.monotonic() is one system-wide clock on Linux and macOS, so the owner can compare a
    # worker's timestamps with its own. Tasks run in the calling thread (a worker's main
    # thread), and thread_time() leaves out the process's other threads: in a one-worker pool
    # those are every thread of the step process.
    started, cpu_started = time.monotonic(), time.thread_time()
    result = function(task)
    return result, (os.getpid(), started, time.monotonic(), time.thread_time() - cpu_started)


@dataclass
class PoolStats:
    """Where the wall time of one pool went: ``startup + map + shutdown`` is the pool's life,
    and within ``map``, ``compute`` is the workers' mean busy time and ``idle`` the rest."""

    workers: int
    start_method: str
    chunks: int = 0
    wall_seconds: float = 0.0
    # From creating the pool until every worker process has started and answered.
    startup_seconds: float = 0.0
    # From the first task sent until the last result was used, over all map() calls.
    map_seconds: float = 0.0
    # Parent time spent on results (unpacking, the caller's use such as writing Parquet);
    # it overlaps the workers' compute, so it is not a slice of the wall time.
    collect_seconds: float = 0.0
    shutdown_seconds: float = 0.0
    # Wall-clock time inside tasks, and the CPU time the tasks used (less when the worker
    # had to wait for a CPU that another process held).
    busy_seconds_by_worker: dict[int, float] = field(default_factory=dict)
    cpu_seconds_by_worker: dict[int, float] = field(default_factory=dict)
    chunks_by_worker: dict[int, int] = field(default_factory=dict)
    items_by_worker: dict[int, int] = field(default_factory=dict)

    @property
    def busy_seconds(self) -> float:
        """Time inside tasks, summed over workers."""
        return sum(self.busy_seconds_by_worker.values())

    @property
    def cpu_seconds(self) -> float:
        """CPU time used by tasks, summed over workers."""
        return sum(self.cpu_seconds_by_worker.values())

    @property
    def compute_seconds(self) -> float:
        """Mean busy time per worker: the part of the map time that was real work."""
        return self.busy_seconds / max(1, self.workers)

    @property
    def idle_seconds(self) -> float:
        """Map time a worker spent not computing, on average: waiting for tasks to arrive or
        results to be taken, and for the slowest worker at the end."""
        return max(0.0, self.map_seconds - self.compute_seconds)

    def record(self, timing: Timing, items: int | None, tasks: int = 1) -> None:
        """Count finished tasks (one, or a batch of ``tasks`` timed together): their
        worker's busy and CPU time, the chunks, and ``items`` (None: not counted)."""
        pid, started, finished, cpu_seconds = timing
        self.chunks += tasks
        self.busy_seconds_by_worker[pid] = self.busy_seconds_by_worker.get(pid, 0.0) + (
            finished - started
        )
        self.cpu_seconds_by_worker[pid] = self.cpu_seconds_by_worker.get(pid, 0.0) + cpu_seconds
        self.chunks_by_worker[pid] = self.chunks_by_worker.get(pid, 0) + tasks
        if items is not None:
            self.items_by_worker[pid] = self.items_by_worker.get(pid, 0) + items

    def absorb(self, other: "PoolStats") -> None:
        """Count ``other``'s tasks as this pool's (both ran in the same process)."""
        self.chunks += other.chunks
        self.collect_seconds += other.collect_seconds
        self.map_seconds += other.map_seconds
        for mine, theirs in (
            (self.busy_seconds_by_worker, other.busy_seconds_by_worker),
            (self.cpu_seconds_by_worker, other.cpu_seconds_by_worker),
            (self.chunks_by_worker, other.chunks_by_worker),
            (self.items_by_worker, other.items_by_worker),
        ):
            for pid, value in theirs.items():
                mine[pid] = mine.get(pid, 0) + value
