"""Two pooled steps at once: the budgeted plan against the naive one.

    python benchmarks/cpu_budget.py [--values 100000] [--repeats 3]

Two processes each transform the same values on a pool, at the same time, as two pooled
steps of concurrent runs would. Naive: each pool takes os.cpu_count() workers, so the two
oversubscribe the CPUs. Budgeted: the plan for two steps at once (DATA_PIPELINE_STEPS_AT_ONCE
=2) gives each its share. Prints the median wall time until both are done.
"""

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pyarrow as pa

from data_pipeline.defs.resources import DEFAULT_TRANSFORM_CHUNK_VALUES
from data_pipeline.numbers.pipeline import TransformSummary, transform_cleaned
from data_pipeline.parallel.budget import STEPS_VARIABLE, cpu_plan
from data_pipeline.parallel.pool import PoolSettings


def one_step(task: tuple[int, int]) -> float:
    """A pooled step: transform `values` values on a pool of `workers`; its wall time."""
    values, workers = task
    cleaned = pa.table(
        {"line_number": pa.array(range(1, values + 1)), "value": pa.array(range(values))}
    )
    batches = cleaned.to_batches(max_chunksize=DEFAULT_TRANSFORM_CHUNK_VALUES)
    started = time.perf_counter()
    for _ in transform_cleaned(batches, len(batches), PoolSettings(workers), TransformSummary()):
        pass
    return time.perf_counter() - started


def two_steps_at_once(values: int, workers: int) -> float:
    context = get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as steps:
        # Warm both step processes up first, so only the steps themselves are timed.
        list(steps.map(one_step, [(2_000, 1)] * 2))
        started = time.perf_counter()
        list(steps.map(one_step, [(values, workers)] * 2))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import os

    naive_workers = os.cpu_count() or 1
    plan = cpu_plan({STEPS_VARIABLE: "2"})
    print(f"{plan}\nnaive: each step takes os.cpu_count() = {naive_workers} workers\n")
    timings: dict[str, list[float]] = {"naive": [], "budgeted": []}
    for _ in range(args.repeats):
        timings["naive"].append(two_steps_at_once(args.values, naive_workers))
        timings["budgeted"].append(two_steps_at_once(args.values, plan.workers_per_step))
    naive, budgeted = (statistics.median(timings[name]) for name in ("naive", "budgeted"))
    print(f"two steps of {args.values:,} values each, median of {args.repeats}:")
    print(f"  naive    ({2 * naive_workers} workers on {plan.cpus_available} CPUs): {naive:.2f} s")
    print(f"  budgeted ({plan.processes} workers on {plan.cpus_available} CPUs): {budgeted:.2f} s")
    print(f"  budgeted is {naive / budgeted:.2f}x as fast")


if __name__ == "__main__":
    main()
