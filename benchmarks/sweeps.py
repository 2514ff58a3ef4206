"""When does the pool pay? Sweeps of the pipeline's own steps by size and by workers.

    python benchmarks/sweeps.py [--sizes 10,100,...,4000000] [--repeats 3] [--workers N]
                                [--chart scaling_chart.png] [--seconds-per-size 5]
    python benchmarks/sweeps.py --auto-against-choices [--repeats 7]

Cleaning and the transform, with the python kernel and the fastest installed one, each timed
serially, on the pool, on threads (the transform with a kernel that releases the GIL, where
auto may choose threads) and with mode auto at every size (warm-up first, repeats in
alternating order, medians with min and max, outputs compared with the serial run's), then on
1 to 2x the CPUs workers. Prints the crossover sizes, Amdahl's fit and how close auto came to
the best choice, and writes the chart. --auto-against-choices instead times auto's every run
against each of its choices and prints the reasons of auto's runs wherever it missed 1.10x.
The machine is shared: run it when nothing else runs.
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from data_pipeline.measure.sweeps.auto_choices import (
    AUTO_GOAL,
    AUTO_REPEATS,
    AUTO_SIZES,
    auto_markdown,
    auto_misses,
    compare_auto,
)
from data_pipeline.measure.sweeps.sweep import (
    PYTHON_TRANSFORM_MAX_SIZE,
    SECONDS_PER_SIZE,
    SIZES,
    sweep_all,
)
from data_pipeline.numbers.kernel_choice import PYTHON, kernel_named
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.settings import DEFAULT_START_METHOD


def machine() -> str:
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    return (
        f"{available_cpus()} CPUs available ({os.cpu_count()} on the machine), load average "
        f"{load}; Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=None,
        help=f"comma-separated (default {','.join(str(size) for size in SIZES)}; with "
        f"--auto-against-choices {','.join(str(size) for size in AUTO_SIZES)})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs of each strategy per size, at least (default 3; with "
        "--auto-against-choices 7, at least 3)",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--python-transform-max-size", type=int, default=PYTHON_TRANSFORM_MAX_SIZE)
    parser.add_argument("--chart", default="scaling_chart.png", help="where to write the PNG")
    parser.add_argument("--start-method", default=DEFAULT_START_METHOD)
    parser.add_argument(
        "--seconds-per-size",
        type=float,
        default=SECONDS_PER_SIZE,
        help="repeat each size until its serial runs add up to this (3 to 20x --repeats runs)",
    )
    parser.add_argument(
        "--auto-against-choices",
        action="store_true",
        help=(
            "only how close auto comes to the best of its choices (serial, processes, and threads "
            "for the transform) with the fastest kernel, every run counted"
        ),
    )
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")}) if args.sizes else None
    kernels = list(dict.fromkeys([PYTHON, kernel_named("auto")]))
    print(f"Machine: {machine()}", flush=True)
    started = time.perf_counter()
    if args.auto_against_choices:
        with tempfile.TemporaryDirectory(prefix="auto-choices-") as inputs:
            rows = compare_auto(
                kernel_named("auto"),
                Path(inputs),
                args.workers or available_cpus(),
                args.start_method,
                max(args.repeats or AUTO_REPEATS, 3),
                sizes or AUTO_SIZES,
                progress=lambda line: print(f"  {line}", flush=True),
            )
        print(auto_markdown(rows))
        misses = auto_misses(rows)
        if misses:
            print(f"\nWhere auto missed {AUTO_GOAL:.2f}x:\n{misses}")
        print(f"Took {time.perf_counter() - started:.0f} s. Machine afterwards: {machine()}")
        return
    with tempfile.TemporaryDirectory(prefix="sweeps-") as inputs:
        report = sweep_all(
            kernels,
            Path(inputs),
            args.workers or available_cpus(),
            args.repeats or 3,
            sizes or SIZES,
            args.python_transform_max_size,
            args.start_method,
            progress=lambda line: print(f"  {line}", flush=True),
            seconds_per_size=args.seconds_per_size,
        )
    Path(args.chart).write_bytes(report.chart_png())
    print()
    print(report.markdown())
    print(f"Chart: {args.chart}. Took {time.perf_counter() - started:.0f} s.")
    print(f"Machine afterwards: {machine()}")


if __name__ == "__main__":
    main()
