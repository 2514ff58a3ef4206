"""Every strategy for the transform and the cleaning, side by side, on the same input.

    python benchmarks/strategies.py [--values 400000] [--repeats 3] [--workers N]

Serial Python is the reference; each row is timed by the measuring core (every strategy
warmed up, repeats in alternating order, medians with min and max), its output checked
against serial Python, and a row that crashes or disagrees is marked FAILED. Above
--sample-python-above values the Python-kernel rows run on a sample and are compared per
value (the table says so). The machine is shared: run it when nothing else heavy runs.
"""

import argparse
import os
import platform

import numba
import numpy
import pyarrow

from data_pipeline.measure.strategies.compare import compare_strategies
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.settings import DEFAULT_START_METHOD


def machine() -> str:
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    return (
        f"{available_cpus()} CPUs available ({os.cpu_count()} on the machine), load average "
        f"{load}; Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"numba {numba.__version__}, pyarrow {pyarrow.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-values", type=int, default=2_000)
    parser.add_argument("--sample-python-above", type=int, default=400_000)
    parser.add_argument("--python-sample-values", type=int, default=200_000)
    parser.add_argument("--lines-path", default=None, help="a numbers file to clean")
    parser.add_argument("--start-method", default=DEFAULT_START_METHOD)
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    report = compare_strategies(
        args.values,
        lines_path=args.lines_path,
        repeats=args.repeats,
        workers=args.workers,
        chunk_values=args.chunk_values,
        sample_python_above=args.sample_python_above,
        python_sample_values=args.python_sample_values,
        start_method=args.start_method,
    )
    print()
    print(report.markdown())
    print(f"Machine afterwards: {machine()}")


if __name__ == "__main__":
    main()
