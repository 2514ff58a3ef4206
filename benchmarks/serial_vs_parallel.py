"""Serial vs process pool for cleaning and for the transform, at three input sizes.

    python benchmarks/serial_vs_parallel.py [--sizes 20000 100000 400000] [--repeats 5]

Each repeat runs serial then parallel back to back on the same file, a fresh pool each time
as in a Dagster step, through the report's own comparison (which also proves the outputs
identical); the table shows medians. "contention" is the workers' total CPU time over the
serial run's for the same work: above 1 the CPUs slow each other down.

Shared machines are noisy, so it also measures the raw ceiling: the same CPU-bound work in
one process vs split over already-started processes, one task each and next to no data to
pickle. Compare the pool's speedup with that ceiling, not with the textbook 2.0.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from data_pipeline.defs.resources import (
    DEFAULT_CLEANING_CHUNK_BYTES,
    DEFAULT_TRANSFORM_CHUNK_VALUES,
)
from data_pipeline.measure.comparison import compare_serial_and_parallel
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.transforms import transform_values
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.pool import DEFAULT_START_METHOD, PoolSettings, ProcessPool

CEILING_VALUES = list(range(100_000, 160_000))


def raw_ceiling(workers: int, start_method: str) -> float:
    """Speedup of `workers` already-started processes over one on identical work, each given
    one equal share (start-up excluded)."""
    started = time.perf_counter()
    transform_values(CEILING_VALUES)
    serial = time.perf_counter() - started
    # One slice per worker, sent once: the closest a pool gets to independent processes.
    slices = [CEILING_VALUES[index::workers] for index in range(workers)]
    with ProcessPool(workers, start_method, ["data_pipeline.numbers.transforms"]) as pool:
        started = time.perf_counter()
        list(pool.map(transform_values, slices))
        parallel = time.perf_counter() - started
    return serial / parallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 400_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--start-method", default=DEFAULT_START_METHOD)
    parser.add_argument("--cleaning-chunk-bytes", type=int, default=DEFAULT_CLEANING_CHUNK_BYTES)
    parser.add_argument(
        "--transform-chunk-values", type=int, default=DEFAULT_TRANSFORM_CHUNK_VALUES
    )
    args = parser.parse_args()
    parallel = PoolSettings(workers=args.workers, start_method=args.start_method)
    workers = args.workers or available_cpus()
    print(
        f"{available_cpus()} CPUs available, {workers} workers, start method "
        f"{args.start_method}, median of {args.repeats} runs\n"
    )
    ceilings = [raw_ceiling(workers, args.start_method) for _ in range(args.repeats)]
    print(
        f"raw ceiling (bare processes, same work): {statistics.median(ceilings):.2f}x "
        f"(min {min(ceilings):.2f}, max {max(ceilings):.2f})\n"
    )
    header = (
        f"{'stage':<10} {'lines':>8} {'items':>8} {'serial s':>9} {'parallel s':>10} "
        f"{'speedup':>8} {'efficiency':>10} {'µs/item':>8} {'contention':>10}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes:
            path = Path(directory) / f"numbers-{size}.txt"
            write_numbers_file(path, size, seed=42, dirty_fraction=0.05)
            # Each comparison runs serial then parallel back to back and checks that the
            # outputs are identical; a fresh pool each time, as in a Dagster step.
            runs = [
                compare_serial_and_parallel(
                    path, parallel, args.cleaning_chunk_bytes, args.transform_chunk_values
                )
                for _ in range(args.repeats)
            ]
            for stage in ("cleaning", "transform"):
                stages = [getattr(run, stage) for run in runs]
                serial_median = statistics.median(s.serial_seconds for s in stages)
                parallel_median = statistics.median(s.parallel_seconds for s in stages)
                contention = statistics.median(s.cpu_contention for s in stages)
                speedup = serial_median / parallel_median
                items = stages[0].items
                used_workers = stages[0].pool.workers  # 1 when there was a single chunk
                print(
                    f"{stage:<10} {size:>8,} {items:>8,} {serial_median:>9.3f} "
                    f"{parallel_median:>10.3f} {speedup:>7.2f}x {speedup / used_workers:>10.0%} "
                    f"{1e6 * serial_median / items:>8.1f} {contention:>9.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
