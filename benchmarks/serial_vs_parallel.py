"""Serial vs process pool for cleaning and for the transform, at three input sizes.

    python benchmarks/serial_vs_parallel.py [--sizes 20000 100000 400000] [--repeats 5]

Each size goes through the report's own comparison: both paths warmed up, then serial and
parallel alternately (serial, pool, pool, serial, ...), a fresh pool per run as in a Dagster
step, outputs proven identical outside the timed region. The table shows medians with the
fastest and slowest run. "contention" is the workers' CPU time over the serial run's for the
same work (working threads only): above 1 the CPUs slow each other down.

Shared machines are noisy, so it also measures the raw ceiling the same way: the same
CPU-bound work in one process vs split over already-started processes, one task each and
next to no data to pickle. Compare the pool's speedup with that ceiling, not with 2.0.
"""

import argparse
import tempfile
from itertools import chain
from pathlib import Path

from data_pipeline.measure.comparison import compare_serial_and_parallel
from data_pipeline.measure.timing import Outcome, measure_alternately
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.stages.chunk_sizes import (
    DEFAULT_CLEANING_CHUNK_BYTES,
    DEFAULT_TRANSFORM_CHUNK_VALUES,
)
from data_pipeline.numbers.transforms import transform_values
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.settings import DEFAULT_START_METHOD, PoolSettings

CEILING_VALUES = list(range(100_000, 160_000))


def raw_ceiling(workers: int, start_method: str, repeats: int) -> tuple[float, str]:
    """Speedup of ``workers`` already-started processes over one on identical work, each
    given one equal contiguous share (start-up excluded), and the two spreads."""
    share = -(-len(CEILING_VALUES) // workers)
    slices = [
        CEILING_VALUES[start : start + share] for start in range(0, len(CEILING_VALUES), share)
    ]
    with ProcessPool(workers, start_method, ["data_pipeline.numbers.transforms"]) as pool:

        def split() -> Outcome:
            parts = list(pool.map(transform_values, slices))
            joined = {
                key: list(chain.from_iterable(part[key] for part in parts)) for key in parts[0]
            }
            return Outcome(joined, None)

        measured = measure_alternately(
            {
                "one process": lambda: Outcome(transform_values(CEILING_VALUES), None),
                "processes": split,
            },
            repeats,
            lambda expected, actual: None if expected == actual else "results differ",
            warm_ups={
                "one process": lambda: transform_values(CEILING_VALUES[:100]),
                "processes": lambda: list(pool.map(transform_values, [CEILING_VALUES[:100]] * 4)),
            },
        )
    one, split_run = measured.measurements["one process"], measured.measurements["processes"]
    spreads = f"one process {one.seconds}, {workers} processes {split_run.seconds}"
    return one.seconds.median / split_run.seconds.median, spreads


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
        f"{args.start_method}, median of {args.repeats} runs each, alternating\n"
    )
    ceiling, spreads = raw_ceiling(workers, args.start_method, args.repeats)
    print(f"raw ceiling (bare processes, same work): {ceiling:.2f}x ({spreads})\n")
    header = (
        f"{'stage':<10} {'lines':>8} {'items':>8} {'serial s (min-max)':>19} "
        f"{'parallel s (min-max)':>21} {'speedup':>8} {'efficiency':>10} {'µs/item':>8} "
        f"{'contention':>10}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes:
            path = Path(directory) / f"numbers-{size}.txt"
            write_numbers_file(path, size, seed=42, dirty_fraction=0.05)
            comparison = compare_serial_and_parallel(
                path,
                parallel,
                args.cleaning_chunk_bytes,
                args.transform_chunk_values,
                repeats=args.repeats,
            )
            for stage in comparison.stages:
                serial, pooled = stage.serial.seconds, stage.parallel.seconds
                per_item = stage.serial_microseconds_per_item or 0.0
                print(
                    f"{stage.name:<10} {size:>8,} {stage.items:>8,} "
                    f"{f'{serial.median:.3f} ({serial.minimum:.2f}-{serial.maximum:.2f})':>19} "
                    f"{f'{pooled.median:.3f} ({pooled.minimum:.2f}-{pooled.maximum:.2f})':>21} "
                    f"{stage.speedup:>7.2f}x {stage.efficiency:>10.0%} {per_item:>8.1f} "
                    f"{stage.cpu_contention:>9.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
