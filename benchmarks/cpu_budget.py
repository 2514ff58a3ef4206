"""Two pooled steps at once: the budgeted plan against the naive one.

    python benchmarks/cpu_budget.py [--values 150000] [--repeats 5]

Two processes each transform the same values on a pool, at the same time, as two pooled
steps of concurrent runs would. Naive: each pool takes os.cpu_count() workers, so the two
oversubscribe the CPUs. Budgeted: the plan for two steps at once (DATA_PIPELINE_STEPS_AT_ONCE
=2) gives each its share. Prints, through the measuring core (both warmed up, runs
alternating), the median wall time until both are done, with the fastest and slowest run.
"""

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pyarrow as pa

from data_pipeline.measure.timing import Outcome, measure_alternately
from data_pipeline.numbers.stages.chunk_sizes import DEFAULT_TRANSFORM_CHUNK_VALUES
from data_pipeline.numbers.stages.summaries import TransformSummary
from data_pipeline.numbers.stages.transform import transform_cleaned
from data_pipeline.parallel.budget import STEPS_VARIABLE, cpu_plan
from data_pipeline.parallel.settings import PoolSettings


def one_step(task: tuple[int, int]) -> int:
    """A pooled step: transform ``values`` values on a pool of ``workers``; the rows it made."""
    values, workers = task
    cleaned = pa.table(
        {"line_number": pa.array(range(1, values + 1)), "value": pa.array(range(values))}
    )
    batches = cleaned.to_batches(max_chunksize=DEFAULT_TRANSFORM_CHUNK_VALUES)
    summary = TransformSummary()
    for _ in transform_cleaned(batches, len(batches), PoolSettings(workers), summary):
        pass
    return summary.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    naive_workers = os.cpu_count() or 1
    plan = cpu_plan({STEPS_VARIABLE: "2"})
    print(f"{plan}\nnaive: each step takes os.cpu_count() = {naive_workers} workers\n")
    plans = {"naive": naive_workers, "budgeted": plan.workers_per_step}
    # Two step processes, started once, as two concurrent runs' pooled steps would be.
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as steps:

        def both_steps(workers: int, values: int) -> Outcome:
            return Outcome(sum(steps.map(one_step, [(values, workers)] * 2)), None)

        measured = measure_alternately(
            {
                name: lambda workers=workers: both_steps(workers, args.values)
                for name, workers in plans.items()
            },
            args.repeats,
            lambda expected, rows: None if rows == expected else f"{rows} rows, not {expected}",
            warm_ups={
                name: lambda workers=workers: both_steps(workers, 2_000)
                for name, workers in plans.items()
            },
        )
    naive, budgeted = (measured.measurements[name].seconds for name in ("naive", "budgeted"))
    print(
        f"two steps of {args.values:,} values each at once, median of {args.repeats} runs "
        "each (fastest-slowest), alternating:"
    )
    print(f"  naive    ({2 * naive_workers} workers on {plan.cpus_available} CPUs): {naive}")
    print(f"  budgeted ({plan.processes} workers on {plan.cpus_available} CPUs): {budgeted}")
    print(f"  budgeted is {naive.median / budgeted.median:.2f}x as fast")


if __name__ == "__main__":
    main()
