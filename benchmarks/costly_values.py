"""A small file of costly values: serial vs the pool, and how the work was shared.

    python benchmarks/costly_values.py [--values 1000] [--repeats 3] [--kernel python]

The transform of a file of ``--values`` lines, each a prime near 2**63 (trial division to
2**20 and a Miller-Rabin test: tens of milliseconds a value in every kernel), run in this
process (``mode: serial``) and on a pool of two workers (``mode: parallel``) and as ``mode:
auto`` decides, alternately, as the transformed_numbers asset runs it (one configured chunk
of 2,000 values). The table shows median wall times with the fastest and slowest run, the
tasks the values were cut into, and each worker's values in the median run. Outputs are
checked byte for byte against the serial run.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.stages.chunk_sizes import DEFAULT_TRANSFORM_CHUNK_VALUES
from data_pipeline.numbers.stages.parquet_output import CLEANED_SCHEMA
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.parallel.settings import PoolSettings

COSTLY_PRIME = 9_223_372_036_854_775_783
MODES = ("serial", "parallel", "auto")


def write_cleaned(path: Path, values: int) -> None:
    lines = pa.array(range(1, values + 1), pa.int64())
    table = pa.table([lines, pa.array([COSTLY_PRIME] * values, pa.int64())], CLEANED_SCHEMA)
    pq.write_table(table, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernel", default="python", choices=("python", "numpy", "numba"))
    parser.add_argument("--chunk-values", type=int, default=DEFAULT_TRANSFORM_CHUNK_VALUES)
    args = parser.parse_args()
    kernel = kernel_named(args.kernel)
    print(
        f"{args.values:,} values of {COSTLY_PRIME}, kernel {kernel.name}, chunks of "
        f"{args.chunk_values:,}, median of {args.repeats} runs each, alternating\n"
    )
    header = f"{'mode':<9} {'wall s (min-max)':>18} {'tasks':>6} {'workers':>8}  values per worker"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        cleaned = folder / "cleaned.parquet"
        write_cleaned(cleaned, args.values)
        runs: dict[str, list[tuple[float, dict]]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            for mode in MODES if repeat % 2 == 0 else reversed(MODES):
                settings = PoolSettings(2, mode=mode, costs_directory=directory)
                output = folder / f"{mode}.parquet"
                started = time.perf_counter()
                summary = transform_to_parquet(
                    cleaned, output, settings, args.chunk_values, kernel=kernel
                )
                seconds = time.perf_counter() - started
                if (
                    mode != "serial"
                    and output.read_bytes() != (folder / "serial.parquet").read_bytes()
                ):
                    raise SystemExit(f"{mode}: the output differs from the serial run's")
                runs[mode].append((seconds, summary.run.metadata()))
        for mode in MODES:
            times = sorted(seconds for seconds, _ in runs[mode])
            median = statistics.median(times)
            _, metadata = min(runs[mode], key=lambda run: abs(run[0] - median))
            per_worker = [
                f"{metadata[key]:,}" for key in sorted(metadata) if key.endswith("_items")
            ]
            print(
                f"{mode:<9} {f'{median:.2f} ({times[0]:.2f}-{times[-1]:.2f})':>18} "
                f"{metadata['chunks']:>6} {metadata['workers']:>8}  "
                f"{', '.join(per_worker) or '-'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
