"""Serial or a pool, and how many workers: ``mode`` serial and parallel force the choice;
``auto`` predicts both from measured costs (the step's own work on a sample of its input,
the pool's start-up and per-task cost on this machine) and takes the faster.

The model: serial = items x seconds per item. A pool of ``w`` workers = start-up + the work
split ``w`` ways (each item also pickled in a worker) or the owner's share (unpickling each
item's result), whichever is longer + one task round trip per chunk.
"""

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["auto", "serial", "parallel"]
MODES: tuple[Mode, ...] = ("auto", "serial", "parallel")


@dataclass(frozen=True)
class PoolCosts:
    """What a pool of ``workers`` costs here, measured: its start-up in a process that has
    not started one yet (``cold``: the fork server starts and preloads the kernel first) and
    in one that has (``warm``), and the round trip of one trivial task."""

    workers: int
    cold_startup_seconds: float
    warm_startup_seconds: float
    task_seconds: float
    measured_at: float

    def startup_seconds(self, warm: bool) -> float:
        return self.warm_startup_seconds if warm else self.cold_startup_seconds


@dataclass(frozen=True)
class WorkSample:
    """The step's own work on a small piece of its input, timed in this process."""

    items: int
    seconds: float
    pickle_seconds: float
    unpickle_seconds: float

    @classmethod
    def of(cls, work: Callable[[], Any], items: int) -> "WorkSample":
        """Time ``work()`` (once untimed, then timed) and the round trip of its result."""
        work()  # lazy imports and caches are not the work's cost
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        pickled_at = time.perf_counter()
        pickle.loads(pickled)
        return cls(items, seconds, pickled_at - started, time.perf_counter() - pickled_at)

    def per_item(self, seconds: float) -> float:
        return seconds / self.items if self.items else 0.0


@dataclass(frozen=True)
class Decision:
    """What a step runs on, and why, in words and numbers."""

    mode: Mode
    workers: int
    reason: str
    predicted_serial_seconds: float | None = None
    predicted_parallel_seconds: float | None = None
    seconds_per_item: float | None = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def metadata(self) -> dict[str, object]:
        """Plain values for the step's metadata (predictions only where ``auto`` made them)."""
        figures: dict[str, object] = {
            "mode": self.mode,
            "decision": "parallel" if self.parallel else "serial",
            "decision_reason": self.reason,
        }
        if self.predicted_serial_seconds is not None:
            figures["predicted_serial_seconds"] = self.predicted_serial_seconds
            figures["predicted_parallel_seconds"] = self.predicted_parallel_seconds
            figures["sampled_microseconds_per_item"] = (self.seconds_per_item or 0.0) * 1e6
        return figures


def decide(
    mode: Mode,
    workers: int,
    items: int,
    chunks: int,
    unit: str,
    sample: Callable[[], WorkSample],
    costs: Callable[[int], PoolCosts],
    warm: bool,
) -> Decision:
    """Serial (one worker, in this process) or a pool of ``workers`` for ``items`` in
    ``chunks``. ``sample`` and ``costs`` are called only when ``auto`` has to predict."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a mode: choose one of {', '.join(MODES)}")
    workers = max(1, min(workers, chunks))
    if mode == "serial" or workers == 1:
        why = "as configured" if mode == "serial" else _why_one_worker(chunks)
        return Decision(mode, 1, f"serial: {why}")
    if mode == "parallel":
        return Decision(mode, workers, f"parallel on {workers} workers: as configured")
    measured, pool = sample(), costs(workers)
    per_item = measured.per_item(measured.seconds)
    serial = items * per_item
    startup = pool.startup_seconds(warm)
    workers_share = items * (per_item + measured.per_item(measured.pickle_seconds)) / workers
    owners_share = items * measured.per_item(measured.unpickle_seconds)
    parallel = startup + max(workers_share, owners_share) + chunks * pool.task_seconds
    choice = "parallel" if parallel < serial else "serial"
    reason = (
        f"{choice}: {items:,} {unit} x {per_item * 1e6:.2f} µs = {_duration(serial)} of work "
        f"{'>' if parallel < serial else '<='} a pool of {workers}: "
        f"{_duration(startup)} start-up ({'warm' if warm else 'cold'}) + "
        f"{_duration(max(workers_share, owners_share))} + {chunks:,} tasks x "
        f"{_duration(pool.task_seconds)} = {_duration(parallel)}"
    )
    return Decision(
        mode,
        workers if choice == "parallel" else 1,
        reason,
        predicted_serial_seconds=serial,
        predicted_parallel_seconds=parallel,
        seconds_per_item=per_item,
    )


def _why_one_worker(chunks: int) -> str:
    return "one chunk, nothing to split" if chunks <= 1 else "one worker configured"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
