"""Serial or a pool, and how many workers: the pure model behind ``mode`` (forced choices,
and ``auto``'s predictions from a timed sample and the pool's measured costs)."""

import dataclasses
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from data_pipeline.parallel.corrections import Corrections
from data_pipeline.parallel.settings import MODES, Mode

# No pool starts faster than this (measured: 25-50 ms warm, 0.2-0.8 s cold): less work than
# this runs serially without reading the pool's costs.
CHEAPEST_POOL_SECONDS = 0.01
# auto starts a pool only if it is predicted to be this many times faster than serial, until
# runs at this size have measured how far the model's pool is off.
PARALLEL_MARGIN = 1.1
# Runs shorter than this teach nothing (the machine's noise is as large as the model's
# error), and auto does not try the other choice on them.
LEARN_FROM_SECONDS = 0.05
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

    def started_ahead(self, seconds: float) -> "PoolCosts":
        """These costs when the fork server started ``seconds`` ago, ahead of the pool: that
        much of a cold start-up is paid already (never less than a warm one is left)."""
        left = max(self.warm_startup_seconds, self.cold_startup_seconds - seconds)
        return dataclasses.replace(self, cold_startup_seconds=left)


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
    # The items the predictions are for (what a run's time is divided by to learn).
    items: int | None = None
    # The model's serial and pool times, before what past runs taught (the pool: the one
    # chosen, or processes when serial is).
    model_seconds: tuple[float, float] | None = None
    # The pool's backend when ``auto`` chose it among several (None: the settings' own).
    backend: str | None = None
    predicted_threads_seconds: float | None = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    @property
    def choice(self) -> str:
        """``serial``, ``threads`` (chosen by ``auto`` beside processes) or ``parallel``."""
        if not self.parallel:
            return "serial"
        return "threads" if self.backend == "threads" else "parallel"

    def metadata(self) -> dict[str, object]:
        """Plain values for the step's metadata (predictions only where ``auto`` made them)."""
        figures: dict[str, object] = {
            "mode": self.mode,
            "decision": self.choice,
            "decision_reason": self.reason,
        }
        if self.seconds_per_item is not None:
            figures["sampled_microseconds_per_item"] = self.seconds_per_item * 1e6
        if self.predicted_serial_seconds is not None:
            figures["predicted_serial_seconds"] = self.predicted_serial_seconds
        if self.predicted_parallel_seconds is not None:
            figures["predicted_parallel_seconds"] = self.predicted_parallel_seconds
        if self.predicted_threads_seconds is not None:
            figures["predicted_threads_seconds"] = self.predicted_threads_seconds
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
    corrections: Callable[[int], Corrections] = Corrections,
) -> Decision:
    """``auto``'s choice for the ``items`` in ``chunks`` left after the sample: a pool only if
    it is predicted to be faster. ``cpus``, ``costs`` and ``corrections`` are not consulted
    when the work is too little for any pool to pay.

    The model, per item: ``c`` the work a worker can do, ``o`` the step's own work on each
    result (building Arrow batches: no pool splits it), ``p`` and ``u`` pickling a result in
    a worker and unpickling it in the step, ``m`` moving its bytes between the two. Serial =
    items x (c + o). A pool of ``w`` workers = start-up + the pace + one task round trip per
    chunk, where the pace is the slowest of: the workers' share, items x (c + p + m) / w;
    the step's, items x (u + m + o); and all of it on the CPUs there are, as the step's
    share competes with the workers when there are no more CPUs than workers.

    Both predictions are scaled by the median of what past runs of the same kind of step,
    at about the same size, took over the model's time (:class:`Corrections`). Until runs
    there have measured the pool, it must be predicted 1.1x faster; a close second (within
    1.25x) that runs there have not measured twice is run, so that a near tie is not
    decided by the model alone. Once both have run at a size, how their median times
    compared decides (this run's sample scales both).

    Args:
        workers: the pool's workers (at most one per chunk are used).
        items: the work left, in the step's unit.
        chunks: the tasks left.
        unit: the unit of ``items``, for the reason in words.
        sample: the first chunk(s), timed in the step process.
        costs: the pool's measured costs for a number of workers.
        warm: whether this process has started such a pool before.
        cpus: the CPUs available (or how to count them).
        corrections: what past runs of about this size taught, by size class.
    """
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
            f"{duration(serial)} of work "
            f"left, less than any pool takes to start ({duration(CHEAPEST_POOL_SECONDS)})"
        )
        return Decision("auto", 1, reason, serial, None, per_item + owners)
    pool, sample = costs(workers), sample.with_round_trip()
    startup, pace = pool_seconds(pool, workers, items, sample, warm, cpus)
    learned = corrections(size_class(items))
    model_serial, model_parallel = serial, startup + pace + chunks * pool.task_seconds
    serial = model_serial * learned.factor("serial")
    parallel = model_parallel * learned.factor("parallel")
    observed_serial = learned.observed_seconds("serial", items)
    observed_parallel = learned.observed_seconds("parallel", items)
    both_measured = observed_serial is not None and observed_parallel is not None
    if both_measured:
        # How the two compared in runs here decides; this run's sample scales both.
        parallel = serial * observed_parallel / observed_serial
    # Until runs at this size have measured the pool, it must win by a margin: the model
    # misses costs it cannot sample, and a near tie is not worth processes.
    margin = 1.0 if learned.parallel_ratios else PARALLEL_MARGIN
    faster = "parallel" if parallel * margin < serial else "serial"
    choice = faster
    # A close second never measured at this size is run once (twice if a near tie) so both
    # predictions rest on what runs here took: one mode's error says little of the other's.
    other = "serial" if faster == "parallel" else "parallel"
    times_the_faster = max(serial, parallel) / max(min(serial, parallel), 1e-9)
    chosen_seconds = parallel if faster == "parallel" else serial
    if chosen_seconds >= LEARN_FROM_SECONDS and learned.untried(other, times_the_faster):
        choice = other
    if both_measured:
        reason = (
            f"runs of this size here took {duration(observed_serial)} serially "
            f"({learned.runs('serial')} runs) {'>' if faster == 'parallel' else '<='} "
            f"{duration(observed_parallel)} on a pool of {workers} "
            f"({learned.runs('parallel')} runs), medians for {items:,} {unit}; this run's "
            f"sample: {duration(serial)} of work, so {duration(parallel)} on the pool"
        )
    else:
        reason = (
            f"{items:,} {unit} x {(per_item + owners) * 1e6:.2f} µs = "
            f"{duration(model_serial)}{_times(learned, 'serial')}"
            f"{' = ' + duration(serial) if learned.serial_ratios else ''} of work "
            f"{'>' if faster == 'parallel' else '<='} {margin:g} x a pool of {workers}: "
            f"({duration(startup)} start-up ({'warm' if warm else 'cold'}) + "
            f"{duration(pace)} + {chunks:,} tasks x {duration(pool.task_seconds)})"
            f"{_times(learned, 'parallel')} = {duration(parallel)}"
        )
        if learned.serial_ratios or learned.parallel_ratios:
            reason += (
                f" (x: what past runs of this size took over the model's time, median of "
                f"{learned.runs('serial')} serial and {learned.runs('parallel')} pooled)"
            )
    if choice != faster:
        prefix = (
            f"{choice}, to measure it at this size ({times_the_faster:.2f}x the "
            f"{faster} prediction, close enough to be worth knowing)"
        )
    else:
        prefix = choice
    workers = workers if choice == "parallel" else 1
    return Decision(
        "auto",
        workers,
        f"{prefix}: {reason}",
        serial,
        parallel,
        per_item + owners,
        learned,
        items,
        (model_serial, model_parallel),
    )


def pool_seconds(
    pool: PoolCosts,
    workers: int,
    items: int,
    sample: WorkSample,
    warm: bool,
    cpus: int | Callable[[], int],
    pickled: bool = True,
) -> tuple[float, float]:
    """A pool's start-up and its pace for ``items`` (see :func:`predicted`); on threads
    (``pickled`` False) results are neither pickled nor moved.

    Args:
        pool: the pool's measured costs.
        workers: its workers.
        items: the work left.
        sample: the first chunk(s), timed, with the round trip if ``pickled``.
        warm: whether this process has started such a pool before.
        cpus: the CPUs available (or how to count them).
        pickled: whether results travel from workers to this process as bytes.
    """
    per_item, owners = sample.per_item(sample.seconds), sample.per_item(sample.owner_seconds)
    moving = sample.per_item(sample.result_bytes) * pool.transfer_seconds_per_byte
    if not pickled:
        in_worker, in_step = per_item, owners
    else:
        in_worker = per_item + sample.per_item(sample.pickle_seconds) + moving
        in_step = sample.per_item(sample.unpickle_seconds) + moving + owners
    # The step's share runs beside the workers: on as many CPUs as workers, it takes theirs.
    cpus = cpus() if callable(cpus) else cpus
    all_cpu = items * (in_worker + in_step) / min(cpus, workers + 1)
    pace = max(items * in_worker / workers, items * in_step, all_cpu)
    return pool.startup_seconds(warm), pace


def size_class(items: int) -> int:
    """Sizes within about 1.4x of each other share their lessons (log2, rounded)."""
    return round(math.log2(max(items, 1)))


def _times(learned: Corrections, mode: str) -> str:
    """`` x1.37`` when past runs of this size corrected ``mode``'s model time."""
    return f" x{learned.factor(mode):.2f}" if learned.ratios(mode) else ""


def _why_one_worker(chunks: int) -> str:
    return "one chunk, nothing to split" if chunks <= 1 else "one worker configured"


def duration(seconds: float) -> str:
    """``seconds`` for a reason in words: s, ms or µs."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
