"""The numba transform at 4,000,000 values: one process, one thread, threads, and the local
process pool, in one run on the same values.

    python benchmarks/threads.py [--values 4000000] [--repeats 5] [--workers N]
        [--chunks 50000] [--thread-chunks 25000,50000,200000] [--step]
        [--cleaning-lines 4000000] [--cleaning-chunks 262144,1048576]

Rows: ``numba, one process`` (one call over every value: the baseline); the project's thread
pool (``backend: threads``) of 1 and of ``--workers`` threads over chunks, Arrow columns per
chunk as the transform step uses them (joined only to be compared, untimed); the local
process pool with input and results in shared memory (the strategies
table's best process row) and with results pickled. The kernel is loaded in this process
before timing (what a step's self-check does); after that nothing is warmed up: runs
alternate (A B C, C B A, ...) and the first run of each is counted in its median (the process
pool's first run starts the fork server). Every output is compared with the baseline's.
``--thread-chunks`` adds rows of the thread pool at other chunk sizes (to choose the default);
``--step`` adds the transform step as it runs (Parquet in, Arrow batches, Parquet out): serial,
threads and the local pool, files compared by digest. ``--cleaning-lines`` adds the cleaning
step (the vectorized fast path) on a generated file: serial, threads at each of
``--cleaning-chunks`` bytes per task, and the local pool.
"""

import argparse
import functools
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.measure.strategies.compare import VALUE_RANGE
from data_pipeline.measure.strategies.pools import PRELOAD_MODULES
from data_pipeline.measure.strategies.shared_columns import transform_in_shared_memory
from data_pipeline.measure.timing import Outcome, measure_alternately
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba, warm_up
from data_pipeline.numbers.stages.chunk_sizes import default_cleaning_chunk_bytes
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.parquet_output import CLEANED_SCHEMA
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.threads.thread_pool import ThreadPool


def one_process(values: np.ndarray) -> Outcome:
    return Outcome(transform_columns_numba(values), None)


def on_pool(pool: ThreadPool | ProcessPool, values: np.ndarray, chunk: int) -> Outcome:
    chunks = [values[start : start + chunk] for start in range(0, len(values), chunk)]
    with pool:
        parts = list(pool.map(transform_columns_numba, chunks))
    # Columns per chunk, as the transform step uses them (a batch each); joined only to be
    # compared, outside the timed run.
    return Outcome(parts, pool.stats.startup_seconds)


def on_threads(workers: int, values: np.ndarray, chunk: int) -> Outcome:
    return on_pool(ThreadPool(workers), values, chunk)


def on_processes_pickled(workers: int, values: np.ndarray, chunk: int) -> Outcome:
    return on_pool(ProcessPool(workers, "forkserver", PRELOAD_MODULES), values, chunk)


def on_processes_shared(workers: int, values: np.ndarray, chunk: int) -> Outcome:
    with ProcessPool(workers, "forkserver", PRELOAD_MODULES) as pool:
        columns = transform_in_shared_memory(values, pool, chunk)
    return Outcome(columns, pool.stats.startup_seconds)


def joined(output: dict | list) -> dict:
    if isinstance(output, dict):
        return output
    return {name: pa.concat_arrays([part[name] for part in output]) for name in TRANSFORM_COLUMNS}


def different_columns(reference: dict, output: dict | list) -> str | None:
    output = joined(output)
    for name in TRANSFORM_COLUMNS:
        if not reference[name].equals(output[name]):
            return f"column {name} differs"
    return None


def step_run(cleaned: Path, settings: PoolSettings, chunk: int) -> Outcome:
    """The transform step's own work: cleaned Parquet in, transformed Parquet out."""
    with tempfile.TemporaryDirectory(prefix="threads_step_") as directory:
        summary = transform_to_parquet(
            cleaned, Path(directory) / "t.parquet", settings, chunk, kernel=kernel_named("numba")
        )
    return Outcome(summary.digests, summary.run.stats.startup_seconds)


def cleaning_run(source: Path, settings: PoolSettings, chunk_bytes: int) -> Outcome:
    """The cleaning step's own work: the numbers file in, two Parquet files out."""
    with tempfile.TemporaryDirectory(prefix="threads_cleaning_") as directory:
        out = Path(directory)
        summary = clean_to_parquet(
            source,
            out / "c.parquet",
            out / "r.parquet",
            settings,
            chunk_bytes,
            kernel=kernel_named("numba"),
        )
    return Outcome(summary.digests, summary.run.stats.startup_seconds)


def cleaning_table(lines: int, workers: int, chunk_sizes: list[int], repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="threads_cleaning_input_") as directory:
        source = Path(directory) / "numbers.txt"
        write_numbers_file(source, lines, seed=42, dirty_fraction=0.05)
        local = default_cleaning_chunk_bytes("local")
        runs = {"cleaning, serial": (PoolSettings(workers, mode="serial"), local)}
        for size in chunk_sizes:
            runs[f"cleaning, {workers} threads, {size // 1024:,} KiB tasks"] = (
                PoolSettings(workers, mode="parallel", backend="threads"),
                size,
            )
        runs[f"cleaning, local pool of {workers}"] = (PoolSettings(workers, mode="parallel"), local)
        timed = {
            name: functools.partial(cleaning_run, source, settings, size)
            for name, (settings, size) in runs.items()
        }
        title = f"The cleaning step, vectorized ({lines:,} lines)"
        table(title, timed, repeats, different_files)


def different_files(reference: dict, output: dict) -> str | None:
    return None if reference == output else "the files differ"


def table(title: str, runs: dict, repeats: int, differences) -> None:
    measured = measure_alternately(runs, repeats, differences)
    baseline = measured.measurements[next(iter(runs))].seconds.median
    print(f"\n{title}\n")
    print("| strategy | seconds, median (min-max) | vs the first row | start-up s |")
    print("|---|---:|---:|---:|")
    for name, measurement in measured.measurements.items():
        startup = [detail for detail in measurement.details if detail is not None]
        start = f"{np.median(startup):.3f}" if startup else "-"
        ratio = baseline / measurement.seconds.median
        print(f"| {name} | {measurement.seconds} | {ratio:.2f}x | {start} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--thread-chunks", default="")
    parser.add_argument("--step", action="store_true")
    parser.add_argument("--cleaning-lines", type=int, default=0)
    parser.add_argument("--cleaning-chunks", default="262144,1048576")
    args = parser.parse_args()
    workers = args.workers or available_cpus()
    warm_up(in_place=True)
    low, high = VALUE_RANGE
    values = np.random.default_rng(42).integers(low, high + 1, args.values, dtype=np.int64)
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(
        f"Machine: {available_cpus()} CPUs available, load average {load}; Python "
        f"{platform.python_version()}; {args.values:,} values in [{low:,}, {high:,}]; "
        f"{workers} workers; chunks of {args.chunks:,}; medians of {args.repeats}, first "
        "runs counted"
    )
    chunk = args.chunks
    runs = {
        "numba, one process": functools.partial(one_process, values),
        "numba, 1 thread (thread pool)": functools.partial(on_threads, 1, values, chunk),
        f"numba, {workers} threads (thread pool)": functools.partial(
            on_threads, workers, values, chunk
        ),
        f"numba, local pool of {workers}, shared memory": functools.partial(
            on_processes_shared, workers, values, chunk
        ),
        f"numba, local pool of {workers}, results pickled": functools.partial(
            on_processes_pickled, workers, values, chunk
        ),
    }
    for size in (int(text) for text in args.thread_chunks.split(",") if text):
        runs[f"numba, {workers} threads, chunks of {size:,}"] = functools.partial(
            on_threads, workers, values, size
        )
    table("The numba transform (columns in memory)", runs, args.repeats, different_columns)
    if args.step:
        with tempfile.TemporaryDirectory(prefix="threads_input_") as directory:
            cleaned = Path(directory) / "cleaned.parquet"
            line_numbers = pa.array(np.arange(1, len(values) + 1, dtype=np.int64))
            pq.write_table(
                pa.table([line_numbers, pa.array(values)], schema=CLEANED_SCHEMA), cleaned
            )
            steps = {
                "transform step, serial": PoolSettings(workers, mode="serial"),
                f"transform step, {workers} threads": PoolSettings(
                    workers, mode="parallel", backend="threads"
                ),
                f"transform step, local pool of {workers}": PoolSettings(workers, mode="parallel"),
            }
            step_runs = {
                name: functools.partial(step_run, cleaned, settings, chunk)
                for name, settings in steps.items()
            }
            table(
                "The transform step (Parquet in and out)", step_runs, args.repeats, different_files
            )
    if args.cleaning_lines:
        sizes = [int(text) for text in args.cleaning_chunks.split(",") if text]
        cleaning_table(args.cleaning_lines, workers, sizes, args.repeats)
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(f"\nLoad average afterwards: {load}; every output identical to the first row's.")


if __name__ == "__main__":
    main()
