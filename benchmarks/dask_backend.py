"""The pipeline's cleaning and transform serially, on the local pool and on a Dask LocalCluster,
in one run, on the same file.

    python benchmarks/dask_backend.py [--sizes 400000,4000000] [--repeats 3] [--workers N]

Each strategy is what a step with that configuration does: ``mode: serial``; ``mode:
parallel`` on the local process pool; ``mode: parallel, backend: dask`` with no scheduler
address, which starts a LocalCluster (scheduler, nannies, worker processes) on 127.0.0.1 and
closes it, once per pooled step. Chunks are each backend's defaults (Dask's five times the
local pool's: a Dask task costs more). Cleaning and transform write their Parquet files as the
steps do; all three strategies' files are compared by SHA-256 after every run. Timed by the
measuring core: one warm-up each, repeats in alternating order, medians with min and max.
The python kernel runs only at sizes up to --python-up-to (its serial run at 4,000,000 lines
takes minutes).
"""

import argparse
import functools
import os
import platform
import tempfile
from pathlib import Path

import distributed

from data_pipeline.measure.timing import Outcome, measure_alternately
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.stages.chunk_sizes import (
    default_cleaning_chunk_bytes,
    default_transform_chunk_values,
)
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.settings import PoolSettings


def strategies(workers: int) -> dict[str, PoolSettings]:
    return {
        "serial": PoolSettings(workers, mode="serial"),
        "local pool": PoolSettings(workers, mode="parallel"),
        "Dask LocalCluster": PoolSettings(workers, mode="parallel", backend="dask"),
    }


def pipeline_run(source: Path, settings: PoolSettings, kernel_name: str):
    """Clean and transform ``source`` as the two steps do: the files' digests, and the
    seconds the pools took to start (both steps)."""
    kernel = kernel_named(kernel_name)
    with tempfile.TemporaryDirectory(prefix="dask_bench_") as directory:
        out = Path(directory)
        cleaning = clean_to_parquet(
            source,
            out / "cleaned.parquet",
            out / "rejected.parquet",
            settings,
            default_cleaning_chunk_bytes(settings.backend),
            kernel=kernel,
        )
        transform = transform_to_parquet(
            out / "cleaned.parquet",
            out / "transformed.parquet",
            settings,
            default_transform_chunk_values(kernel, settings.backend),
            kernel=kernel,
        )
    startup = sum(summary.pool.startup_seconds for summary in (cleaning, transform))
    return Outcome({**cleaning.digests, **transform.digests}, startup)


def different(reference: dict, output: dict) -> str | None:
    return None if reference == output else f"files differ: {reference} != {output}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400000,4000000")
    parser.add_argument("--kernels", default="python,numba")
    parser.add_argument("--python-up-to", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    workers = args.workers or available_cpus()
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(
        f"Machine: {available_cpus()} CPUs available, load average {load}; Python "
        f"{platform.python_version()}, dask.distributed {distributed.__version__}; "
        f"{workers} workers; medians of {args.repeats} (min-max)"
    )
    print()
    print("| lines | kernel | strategy | seconds | vs serial | pool start-up s |")
    print("|---:|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="dask_bench_input_") as directory:
        for size in (int(text) for text in args.sizes.split(",")):
            source = Path(directory) / f"numbers_{size}.txt"
            write_numbers_file(source, size, seed=42, dirty_fraction=0.05)
            for kernel in args.kernels.split(","):
                if kernel == "python" and size > args.python_up_to:
                    continue
                runs = {
                    name: functools.partial(pipeline_run, source, settings, kernel)
                    for name, settings in strategies(workers).items()
                }
                measured = measure_alternately(runs, args.repeats, different, warm_ups=runs)
                serial = measured.measurements["serial"].seconds.median
                for name, measurement in measured.measurements.items():
                    startup = measurement.median(lambda detail: detail)
                    print(
                        f"| {size:,} | {kernel} | {name} | {measurement.seconds} "
                        f"| {serial / measurement.seconds.median:.2f}x | {startup:.2f} |",
                        flush=True,
                    )
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(f"\nLoad average afterwards: {load}; every strategy's files identical in every run.")


if __name__ == "__main__":
    main()
