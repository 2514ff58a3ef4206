"""Where the wall time of a pool went, filled in by the pool as it runs."""

from dataclasses import dataclass, field


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
