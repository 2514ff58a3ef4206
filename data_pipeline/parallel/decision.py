"""Serial or a pool, and how many workers: ``mode`` serial and parallel force the choice;
``auto`` runs the step's first chunk in the step process, timed (its output is used, so tiny
inputs pay nothing for the decision), and predicts the rest both ways from that sample and
the pool's measured start-up and per-task cost; it starts a pool only if that is faster.

The model, per item: ``c`` the work a worker can do, ``o`` the step's own work on each
result (building Arrow batches: no pool splits it), ``p`` and ``u`` pickling a result in a
worker and unpickling it in the step, ``m`` moving its bytes between the two. Serial =
items x (c + o). A pool of ``w`` workers = start-up + the pace + one task round trip per
chunk, where the pace is the slowest of: the workers' share, items x (c + p + m) / w; the
step's, items x (u + m + o); and all of it on the CPUs there are, as the step's share
competes with the workers when there are no more CPUs than workers. A pool must be predicted
1.1x faster, and both predictions are scaled by what past runs of the same kind of step
taught (:class:`Corrections`).
"""

import dataclasses
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Mode = Literal["auto", "serial", "parallel"]
MODES: tuple[Mode, ...] = ("auto", "serial", "parallel")
# No pool starts faster than this (measured: 25-50 ms warm, 0.2-0.8 s cold): less work than
# this runs serially without reading the pool's costs.
CHEAPEST_POOL_SECONDS = 0.01
# auto starts a pool only if it is predicted to be this many times faster than serial.
PARALLEL_MARGIN = 1.1
Result = TypeVar("Result")


@dataclass(frozen=True)
class PoolCosts:
    """What a pool of ``workers`` costs here, measured: its start-up in a process that has
    not started one yet (``cold``: the fork server starts and preloads the kernel first) and
    in one that has (``warm``), the round trip of one trivial task, and the time to move a
    result's bytes from a worker into this process."""

    workers: int
    cold_startup_seconds: float
    warm_startup_seconds: float
    task_seconds: float
    measured_at: float
    # Moving a result from a worker into this process, per pickled byte.
    transfer_seconds_per_byte: float = 0.0

    def startup_seconds(self, warm: bool) -> float:
        return self.warm_startup_seconds if warm else self.cold_startup_seconds


@dataclass(frozen=True)
class WorkSample:
    """The step's first chunk, timed in the step process: the work a worker would do, the
    round trip its result would make from a worker (measured on ``result`` when first
    needed: tiny inputs never pay for it), and the step's own work on the result
    (``owner_seconds``, set by the caller with :meth:`with_owner_seconds`)."""

    items: int
    seconds: float
    pickle_seconds: float | None = None
    unpickle_seconds: float | None = None
    result_bytes: int | None = None
    owner_seconds: float = 0.0
    result: Any = dataclasses.field(default=None, repr=False, compare=False)
    # The items ``result`` holds, if fewer than the sample's (the last of several tasks).
    result_items: int | None = None

    @classmethod
    def timed(cls, work: Callable[[], Result], items: int) -> tuple["WorkSample", Result]:
        """Run ``work()`` once, timed."""
        started = time.perf_counter()
        result = work()
        return cls(items, time.perf_counter() - started, result=result), result

    def with_owner_seconds(self, seconds: float) -> "WorkSample":
        return dataclasses.replace(self, owner_seconds=seconds)

    def with_round_trip(self) -> "WorkSample":
        """This sample with its result's pickling there and back timed (if not yet)."""
        if self.pickle_seconds is not None:
            return self
        started = time.perf_counter()
        pickled = pickle.dumps(self.result, protocol=pickle.HIGHEST_PROTOCOL)
        pickled_at = time.perf_counter()
        pickle.loads(pickled)
        unpickled = time.perf_counter() - pickled_at
        # Scaled from the result's items to the sample's.
        scale = self.items / self.result_items if self.result_items else 1.0
        return dataclasses.replace(
            self,
            pickle_seconds=(pickled_at - started) * scale,
            unpickle_seconds=unpickled * scale,
            result_bytes=round(len(pickled) * scale),
            result=None,
        )

    def per_item(self, seconds: float | None) -> float:
        return (seconds or 0.0) / self.items if self.items else 0.0


@dataclass(frozen=True)
class Corrections:
    """What past runs of this kind of step taught: their time over the model's, per mode
    (1.0: as predicted). The model cannot sample everything a pool costs (workers slowing
    each other, pages touched the first time), and what it misses repeats from run to run."""

    serial: float = 1.0
    parallel: float = 1.0

    def after(self, decision: "Decision", observed_seconds: float) -> "Corrections":
        """Moved halfway (geometrically) towards what this run of ``decision`` took."""
        mode = "parallel" if decision.parallel else "serial"
        predicted_seconds = getattr(decision, f"predicted_{mode}_seconds")
        if not predicted_seconds or observed_seconds <= 0:
            return self
        moved = getattr(self, mode) * (observed_seconds / predicted_seconds) ** 0.5
        return dataclasses.replace(self, **{mode: min(max(moved, 0.5), 4.0)})

    def close_to(self, other: "Corrections", tolerance: float = 0.02) -> bool:
        """Within ``tolerance`` (relative) of ``other`` in both modes: not worth keeping."""
        return all(
            abs(mine - theirs) <= tolerance * abs(theirs)
            for mine, theirs in ((self.serial, other.serial), (self.parallel, other.parallel))
        )


@dataclass(frozen=True)
class Decision:
    """What a step runs on, and why, in words and numbers."""

    mode: Mode
    workers: int
    reason: str
    predicted_serial_seconds: float | None = None
    predicted_parallel_seconds: float | None = None
    seconds_per_item: float | None = None
    # What the decision learns from (set when the pool's costs were consulted).
    corrections: Corrections | None = None

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
        if self.seconds_per_item is not None:
            figures["sampled_microseconds_per_item"] = self.seconds_per_item * 1e6
        if self.predicted_serial_seconds is not None:
            figures["predicted_serial_seconds"] = self.predicted_serial_seconds
        if self.predicted_parallel_seconds is not None:
            figures["predicted_parallel_seconds"] = self.predicted_parallel_seconds
        return figures


def forced(mode: Mode, workers: int, chunks: int) -> Decision | None:
    """The decision when nothing needs measuring (a forced mode, one chunk, one worker);
    None when ``auto`` has to sample the work first."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a mode: choose one of {', '.join(MODES)}")
    workers = max(1, min(workers, chunks))
    if mode == "serial" or workers == 1:
        why = "as configured" if mode == "serial" else _why_one_worker(chunks)
        return Decision(mode, 1, f"serial: {why}")
    if mode == "parallel":
        return Decision(mode, workers, f"parallel on {workers} workers: as configured")
    return None


def predicted(
    workers: int,
    items: int,
    chunks: int,
    unit: str,
    sample: WorkSample,
    costs: Callable[[int], PoolCosts],
    warm: bool,
    cpus: int | Callable[[], int],
    corrections: Callable[[], Corrections] = Corrections,
) -> Decision:
    """``auto``'s choice for the ``items`` in ``chunks`` left after the sample, on ``cpus``
    CPUs, its predictions scaled by what past runs taught (``corrections``). ``cpus``,
    ``costs`` and ``corrections`` are not consulted when the work is too little for any pool
    to pay."""
    per_item = sample.per_item(sample.seconds)
    owners = sample.per_item(sample.owner_seconds)
    serial = items * (per_item + owners)
    workers = max(1, min(workers, chunks))
    if workers == 1:
        why = f"{_why_one_worker(chunks)} (after the first, timed in the step)"
        return Decision("auto", 1, f"serial: {why}", serial, None, per_item + owners)
    if serial < CHEAPEST_POOL_SECONDS:
        reason = (
            f"serial: {items:,} {unit} x {(per_item + owners) * 1e6:.2f} µs = "
            f"{_duration(serial)} of work "
            f"left, less than any pool takes to start ({_duration(CHEAPEST_POOL_SECONDS)})"
        )
        return Decision("auto", 1, reason, serial, None, per_item + owners)
    pool, sample = costs(workers), sample.with_round_trip()
    startup = pool.startup_seconds(warm)
    moving = sample.per_item(sample.result_bytes) * pool.transfer_seconds_per_byte
    in_worker = per_item + sample.per_item(sample.pickle_seconds) + moving
    in_step = sample.per_item(sample.unpickle_seconds) + moving + owners
    # The step's share runs beside the workers: on as many CPUs as workers, it takes theirs.
    cpus = cpus() if callable(cpus) else cpus
    all_cpu = items * (in_worker + in_step) / min(cpus, workers + 1)
    pace = max(items * in_worker / workers, items * in_step, all_cpu)
    learned = corrections()
    serial *= learned.serial
    parallel = (startup + pace + chunks * pool.task_seconds) * learned.parallel
    # A pool must win by a margin: the model misses costs it cannot sample (workers slowing
    # each other, pages touched for the first time), and a near tie is not worth processes.
    choice = "parallel" if parallel * PARALLEL_MARGIN < serial else "serial"
    reason = (
        f"{choice}: {items:,} {unit} x {(per_item + owners) * 1e6:.2f} µs = "
        f"{_duration(serial)} of work {'>' if choice == 'parallel' else '<='} "
        f"{PARALLEL_MARGIN:g} x a pool of "
        f"{workers}: {_duration(startup)} start-up ({'warm' if warm else 'cold'}) + "
        f"{_duration(pace)} + {chunks:,} tasks x "
        f"{_duration(pool.task_seconds)} = {_duration(parallel)}"
    )
    if (learned.serial, learned.parallel) != (1.0, 1.0):
        reason += (
            f" (past runs: serial x{learned.serial:.2f}, pool x{learned.parallel:.2f} "
            "the model's time)"
        )
    workers = workers if choice == "parallel" else 1
    return Decision("auto", workers, reason, serial, parallel, per_item + owners, learned)


def _why_one_worker(chunks: int) -> str:
    return "one chunk, nothing to split" if chunks <= 1 else "one worker configured"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
