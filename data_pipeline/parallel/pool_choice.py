"""``auto``'s choice among serial, threads and processes, for work that releases the GIL (the
compiled kernels): each predicted from its own measured costs and what runs here taught."""

import dataclasses
import math
from collections.abc import Callable

from data_pipeline.parallel.corrections import Corrections
from data_pipeline.parallel.decision import (
    LEARN_FROM_SECONDS,
    PARALLEL_MARGIN,
    Decision,
    PoolCosts,
    WorkSample,
    duration,
    pool_seconds,
    predicted,
    size_class,
)

# A thread pool starts in under a millisecond (measured: 0.4 ms for two): less work than this
# runs serially without reading the threads' costs.
CHEAPEST_THREADS_SECONDS = 0.002

# The choices' names in the reason and the metadata; "parallel" is the pool of processes.
_NAMES = {"serial": "serial", "threads": "threads", "parallel": "processes"}


def predicted_among(
    workers: int,
    items: int,
    chunks: int,
    unit: str,
    sample: WorkSample,
    process_costs: Callable[[int], PoolCosts],
    thread_costs: Callable[[int], PoolCosts],
    warm: bool,
    cpus: int | Callable[[], int],
    corrections: Callable[[int], Corrections] = Corrections,
) -> Decision:
    """The fastest predicted of serial, ``workers`` processes (as :func:`.decision.predicted`
    predicts them) and ``workers`` threads of this process: the same model without pickling
    or moving results, with the threads' own measured start-up and cost per task, scaled by
    what past runs on threads here took over it. A pool not yet run at this size must be
    predicted 1.1x faster than the best other choice; the second best, if within 1.25x and
    not run twice at this size, is run to measure it; once serial and a pool have both run
    here, their median times compare directly (as :func:`.decision.predicted` does).

    Args:
        workers: the pool's workers (at most one per chunk are used).
        items: the work left, in the step's unit.
        chunks: the tasks left.
        unit: the unit of ``items``, for the reason in words.
        sample: the first chunk(s), timed in the step process.
        process_costs: the process pool's measured costs for a number of workers.
        thread_costs: the thread pool's measured costs for a number of threads.
        warm: whether this process has started a process pool before.
        cpus: the CPUs available (or how to count them).
        corrections: what past runs of about this size taught, by size class.
    """
    processes = predicted(
        workers, items, chunks, unit, sample, process_costs, warm, cpus, corrections
    )
    workers = max(1, min(workers, chunks))
    serial = processes.predicted_serial_seconds or 0.0
    if workers == 1 or serial < CHEAPEST_THREADS_SECONDS:
        return processes  # one worker, or too little work for any pool: nothing to weigh
    # Below processes' floor, predicted() weighed nothing: threads may still pay.
    learned = processes.corrections or corrections(size_class(items))
    model_serial, model_processes = processes.model_seconds or (serial, math.inf)
    pool = thread_costs(workers)
    startup, pace = pool_seconds(pool, workers, items, sample, True, cpus, pickled=False)
    model_threads = startup + pace + chunks * pool.task_seconds
    serial = model_serial * learned.factor("serial")
    predictions = {
        "serial": serial,
        "parallel": processes.predicted_parallel_seconds or math.inf,
        "threads": model_threads * learned.factor("threads"),
    }
    observed_serial = learned.observed_seconds("serial", items)
    observed_threads = learned.observed_seconds("threads", items)
    if observed_serial is not None and observed_threads is not None:
        # How the two compared in runs here decides; this run's sample scales both.
        predictions["threads"] = serial * observed_threads / observed_serial
    # A pool not yet run at this size must win by a margin: the model misses what it cannot
    # sample.
    weighed = {
        choice: seconds * (1.0 if choice == "serial" or learned.runs(choice) else PARALLEL_MARGIN)
        for choice, seconds in predictions.items()
    }
    ranked = sorted(weighed, key=weighed.__getitem__)
    faster, second = ranked[0], ranked[1]
    times_the_faster = weighed[second] / max(weighed[faster], 1e-9)
    choice = faster
    if predictions[faster] >= LEARN_FROM_SECONDS and learned.untried(second, times_the_faster):
        choice = second  # a close second never measured here: run it to measure it
    prefix = _NAMES[choice]
    if choice != faster:
        prefix += (
            f", to measure it at this size ({times_the_faster:.2f}x the {_NAMES[faster]} "
            "prediction, close enough to be worth knowing)"
        )
    factor = f" x{learned.factor('threads'):.2f}" if learned.threads_ratios else ""
    processes_seconds = predictions["parallel"]
    processes_reason = processes.reason.split(": ", 1)[1]
    reason = (
        f"{prefix}: predicted for {items:,} {unit}: serial {duration(predictions['serial'])}, "
        f"threads {duration(predictions['threads'])}, processes "
        f"{duration(processes_seconds) if processes_seconds < math.inf else 'not weighed'}; "
        f"{workers} threads: ({duration(startup)} "
        f"start-up + {duration(pace)} + {chunks:,} tasks x {duration(pool.task_seconds)})"
        f"{factor}, no pickling; serial and processes: {processes_reason}"
    )
    return dataclasses.replace(
        processes,
        predicted_serial_seconds=serial,
        corrections=learned,
        items=items,
        workers=1 if choice == "serial" else workers,
        reason=reason,
        model_seconds=(model_serial, model_threads if choice == "threads" else model_processes),
        backend="threads" if choice == "threads" else None,
        predicted_threads_seconds=predictions["threads"],
    )
