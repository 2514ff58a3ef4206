"""Where a pool's time went, as plain numbers for asset metadata and one line for people."""

from data_pipeline.parallel.stats import PoolStats

# Below this share of the pool's wall time spent computing, overheads are worth acting on.
_COMPUTE_SHARE_THAT_PAYS = 0.75


def pool_insight(stats: PoolStats) -> dict[str, float | int | str]:
    """Per-worker busy seconds, items and chunks (workers numbered by pid order, so keys stay
    the same across runs and the UI can plot them), load imbalance, and the time breakdown."""
    workers = sorted(stats.busy_seconds_by_worker)
    metadata: dict[str, float | int | str] = {
        "pool_start_seconds": stats.startup_seconds,
        "compute_seconds": stats.compute_seconds,
        "worker_idle_seconds": stats.idle_seconds,
        "collect_seconds": stats.collect_seconds,
        "shutdown_seconds": stats.shutdown_seconds,
        "load_imbalance": load_imbalance(stats),
        "conclusion": conclusion(stats),
    }
    for number, pid in enumerate(workers):
        metadata[f"worker_{number}_busy_seconds"] = stats.busy_seconds_by_worker[pid]
        metadata[f"worker_{number}_chunks"] = stats.chunks_by_worker.get(pid, 0)
        metadata[f"worker_{number}_items"] = stats.items_by_worker.get(pid, 0)
    return metadata


def load_imbalance(stats: PoolStats) -> float:
    """Busy time of the slowest worker over the fastest's (1.0 is a perfect balance)."""
    busy = list(stats.busy_seconds_by_worker.values())
    if len(busy) < 2 or max(busy) <= 0:
        return 1.0
    # A worker that got no chunk at all is floored at a millisecond: a huge ratio, not inf.
    return max(busy) / max(min(busy), 1e-3)


def conclusion(stats: PoolStats) -> str:
    """E.g. 'compute 94 %, start-up 4 %, idle 1 %, shutdown 0 %: parallelism pays'."""
    if stats.workers == 1:
        return "one worker: ran serially in the step process (no pool started)"
    wall = stats.wall_seconds or 1e-9
    shares = {
        "compute": stats.compute_seconds / wall,
        "start-up": stats.startup_seconds / wall,
        "idle (sending tasks, waiting for the slowest)": stats.idle_seconds / wall,
        "shutdown": stats.shutdown_seconds / wall,
    }
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    if shares["compute"] >= _COMPUTE_SHARE_THAT_PAYS:
        return f"{text}: parallelism pays"
    return f"{text}: overheads weigh too much (bigger chunks, more input, or fewer workers)"


def insight_markdown(stats: PoolStats) -> str:
    """A table of the workers and the one-line conclusion."""
    rows = [
        "| worker | pid | chunks | items | busy s | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for number, pid in enumerate(sorted(stats.busy_seconds_by_worker)):
        rows.append(
            f"| {number} | {pid} | {stats.chunks_by_worker.get(pid, 0)} "
            f"| {stats.items_by_worker.get(pid, 0):,} | {stats.busy_seconds_by_worker[pid]:.2f} "
            f"| {stats.cpu_seconds_by_worker.get(pid, 0.0):.2f} |"
        )
    return "\n".join(rows) + f"\n\nLoad imbalance {load_imbalance(stats):.2f}. {conclusion(stats)}."


def rounded(metadata: dict[str, object]) -> dict[str, object]:
    """Floats rounded to 4 decimals: the UI shows every digit, and timings are not that exact."""
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in metadata.items()
    }
