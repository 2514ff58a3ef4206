"""Cleaning and the transform, serially and on a pool, on the same input and chunks: timed
fairly, proven identical, and kept for the report's check (no Dagster)."""

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_pipeline.measure.labels import CLEANING, PARALLEL, SERIAL, TRANSFORM
from data_pipeline.measure.timing import Measurement, Outcome, measure_alternately
from data_pipeline.numbers.kernel_choice import PYTHON, Kernel
from data_pipeline.numbers.stages.cleaning import clean_file
from data_pipeline.numbers.stages.parquet_output import (
    CLEANED_SCHEMA,
    REJECTED_SCHEMA,
    TRANSFORMED_SCHEMA,
    ParquetOutput,
)
from data_pipeline.numbers.stages.summaries import CleaningSummary, TransformSummary
from data_pipeline.numbers.stages.transform import transform_cleaned
from data_pipeline.numbers.storage import atomic_directory, atomic_output
from data_pipeline.numbers.verification import table_differences
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline.parallel.stats import PoolStats

DEFAULT_REPEATS = 3
# The outputs each run's tables are saved as, by stage: what the report's check compares.
OUTPUT_FILES = {
    CLEANING: ("cleaned", "rejected"),
    TRANSFORM: ("transformed",),
}


@dataclass(frozen=True)
class StageComparison:
    """One stage (cleaning or transform) timed both ways on the same input and chunks."""

    name: str
    items: int
    serial: Measurement[PoolStats]
    parallel: Measurement[PoolStats]
    # Each run's first output, one table per output file (OUTPUT_FILES), proven equal.
    serial_tables: tuple[pa.Table, ...]
    parallel_tables: tuple[pa.Table, ...]

    @property
    def serial_seconds(self) -> float:
        return self.serial.seconds.median

    @property
    def parallel_seconds(self) -> float:
        return self.parallel.seconds.median

    @property
    def speedup(self) -> float:
        """Median serial time over median parallel time."""
        return _ratio(self.serial_seconds, self.parallel_seconds)

    @property
    def workers(self) -> int:
        return self.parallel.details[0].workers

    @property
    def chunks(self) -> int:
        return self.parallel.details[0].chunks

    @property
    def efficiency(self) -> float:
        return self.speedup / self.workers

    def pool_median(self, attribute: str) -> float:
        """Median over the parallel runs of one :class:`PoolStats` figure."""
        return self.parallel.median(lambda stats: getattr(stats, attribute))

    @property
    def serial_microseconds_per_item(self) -> float | None:
        return 1e6 * self.serial_seconds / self.items if self.items else None

    @property
    def cpu_contention(self) -> float:
        """CPU time of all workers over the serial run's, for the same work (medians, working
        threads only): above 1, each CPU got less done per CPU-second while the others were
        busy (shared cores, caches, memory bandwidth, other virtual machines on the host)."""
        serial_cpu = self.serial.median(lambda stats: stats.cpu_seconds)
        return _ratio(self.pool_median("cpu_seconds"), serial_cpu)

    @property
    def cpu_wait_share(self) -> float:
        """Share of the workers' time in tasks spent waiting for a CPU another process held."""
        return self.parallel.median(
            lambda stats: max(0.0, 1 - _ratio(stats.cpu_seconds, stats.busy_seconds, 1.0))
        )

    @property
    def rows_compared(self) -> int:
        return sum(table.num_rows for table in self.serial_tables)


@dataclass(frozen=True)
class Comparison:
    cleaning: StageComparison
    transform: StageComparison
    cpus_available: int
    requested_workers: int
    repeats: int
    kernel: str = "python"

    @property
    def stages(self) -> tuple[StageComparison, StageComparison]:
        return self.cleaning, self.transform

    @property
    def serial_seconds(self) -> float:
        return sum(stage.serial_seconds for stage in self.stages)

    @property
    def parallel_seconds(self) -> float:
        return sum(stage.parallel_seconds for stage in self.stages)

    @property
    def speedup(self) -> float:
        return _ratio(self.serial_seconds, self.parallel_seconds)

    @property
    def workers(self) -> int:
        return max(stage.workers for stage in self.stages)

    @property
    def efficiency(self) -> float:
        return self.speedup / self.workers

    def total(self, attribute: str) -> float:
        """Sum over both stages of the median of one :class:`PoolStats` figure."""
        return sum(stage.pool_median(attribute) for stage in self.stages)

    @property
    def pool_fixed_seconds(self) -> float:
        """The pools' fixed costs, paid whatever the input's size: start-up (which holds the
        workers' kernel load, a fork server's preload) and shutdown, medians of both stages."""
        return self.total("startup_seconds") + self.total("shutdown_seconds")

    @property
    def pool_work_seconds(self) -> float:
        """The parallel time apart from the pools' fixed costs: the work on the pool."""
        return max(0.0, self.parallel_seconds - self.pool_fixed_seconds)


# How the log names each side's passes.
_PASS_NAMES = {SERIAL: "serial pass", PARALLEL: "pool pass"}


def compare_serial_and_parallel(
    numbers_path: Path,
    pool_settings: PoolSettings,
    cleaning_chunk_bytes: int,
    transform_chunk_values: int,
    repeats: int = DEFAULT_REPEATS,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> Comparison:
    """Clean and transform ``numbers_path`` serially (the same worker functions in this
    process) and on a fresh pool per run, ``repeats`` times each in alternating order, with
    identical chunks and the same kernel. Raises
    :class:`~data_pipeline.measure.timing.OutputMismatchError` if any run disagrees with the
    first serial run in any value or in order.

    A timed run covers what the pipeline's step does up to its output (pool start-up,
    the work, building Arrow batches) and not writing or comparing the output, which
    happens afterwards. The outputs are held in memory meanwhile (a peak of about 340 bytes
    a line, measured at 400,000 lines).

    Args:
        numbers_path: the day's numbers file to clean, then transform.
        pool_settings: the pool of the parallel side (its mode is forced to ``parallel``).
        cleaning_chunk_bytes: the cleaning's byte ranges, the same on both sides.
        transform_chunk_values: the transform's batches of cleaned values, the same too.
        repeats: timed runs of each side.
        log: where progress lines go (the pool's logger, or a step's ``context.log``).
        kernel: the kernel both sides run.
    """
    # The comparison is the point: both sides run as forced, whatever the step's mode says.
    settings = {
        SERIAL: PoolSettings(workers=1),
        PARALLEL: dataclasses.replace(pool_settings, mode="parallel"),
    }

    def cleaning_run(run: str) -> Outcome:
        summary, accepted, rejected = CleaningSummary(), [], []
        # Progress lines say which pass they belong to: the serial one or the pool's.
        for accepted_batch, rejected_batch in clean_file(
            numbers_path,
            settings[run],
            cleaning_chunk_bytes,
            summary,
            log,
            kernel,
            label=f"cleaning, {_PASS_NAMES[run]}",
        ):
            accepted.append(accepted_batch)
            rejected.append(rejected_batch)
        tables = (
            pa.Table.from_batches(accepted, CLEANED_SCHEMA),
            pa.Table.from_batches(rejected, REJECTED_SCHEMA),
        )
        return Outcome(tables, summary.pool)

    warm_ups = {run: lambda run=run: _warm_up(settings[run], kernel) for run in settings}
    cleaned = measure_alternately(
        {run: lambda run=run: cleaning_run(run) for run in settings},
        repeats,
        _differences_in(CLEANING),
        warm_ups,
    )
    transform_input = (
        cleaned.outputs[SERIAL][0].combine_chunks().to_batches(max_chunksize=transform_chunk_values)
    )

    def transform_run(run: str) -> Outcome:
        summary = TransformSummary()
        batches = list(
            transform_cleaned(
                transform_input,
                len(transform_input),
                settings[run],
                summary,
                log,
                kernel,
                label=f"transform, {_PASS_NAMES[run]}",
            )
        )
        return Outcome((pa.Table.from_batches(batches, TRANSFORMED_SCHEMA),), summary.pool)

    transformed = measure_alternately(
        {run: lambda run=run: transform_run(run) for run in settings},
        repeats,
        _differences_in(TRANSFORM),
        # The stage right before already warmed up both paths with this transform.
    )
    return Comparison(
        cleaning=_stage(CLEANING, cleaned, sum(len(t) for t in cleaned.outputs[SERIAL])),
        transform=_stage(TRANSFORM, transformed, len(transformed.outputs[SERIAL][0])),
        cpus_available=available_cpus(),
        requested_workers=pool_settings.workers or available_cpus(),
        repeats=repeats,
        kernel=kernel.name,
    )


def save_outputs(comparison: Comparison, directory: Path) -> dict[str, Path]:
    """Write each stage's serial and parallel outputs as Parquet files in ``directory``, for
    a check to compare independently; the set replaces the previous one as a whole. Returns
    the paths by name (e.g. ``cleaned_serial``)."""
    paths = {}
    with atomic_directory(directory) as staging:
        for stage in comparison.stages:
            runs = ((SERIAL, stage.serial_tables), (PARALLEL, stage.parallel_tables))
            for run, tables in runs:
                for output, table in zip(OUTPUT_FILES[stage.name], tables, strict=True):
                    name = f"{output}_{run}"
                    with (
                        atomic_output(staging / f"{name}.parquet") as temporary,
                        ParquetOutput(temporary, table.schema) as file,
                    ):
                        for batch in table.to_batches():
                            file.write(batch)
                    paths[name] = directory / f"{name}.parquet"
    return paths


def output_pairs(directory: Path) -> list[tuple[Path, Path]]:
    """(serial, parallel) file pairs that :func:`save_outputs` writes into ``directory``."""
    names = [output for outputs in OUTPUT_FILES.values() for output in outputs]
    return [
        (directory / f"{name}_{SERIAL}.parquet", directory / f"{name}_{PARALLEL}.parquet")
        for name in names
    ]


def _stage(name: str, measured, items: int) -> StageComparison:
    return StageComparison(
        name=name,
        items=items,
        serial=measured.measurements[SERIAL],
        parallel=measured.measurements[PARALLEL],
        serial_tables=measured.outputs[SERIAL],
        parallel_tables=measured.outputs[PARALLEL],
    )


def _differences_in(stage: str):
    """Compares two runs' tables of ``stage``, naming the output that differs."""

    def differences(expected: tuple[pa.Table, ...], actual: tuple[pa.Table, ...]) -> str | None:
        for output, left, right in zip(OUTPUT_FILES[stage], expected, actual, strict=True):
            difference = table_differences(left, right)
            if difference is not None:
                return f"{stage}, {output} output: {difference}"
        return None

    return differences


def _ratio(numerator: float, denominator: float, default: float = 0.0) -> float:
    return numerator / denominator if denominator else default


def _warm_up(settings: PoolSettings, kernel: Kernel) -> None:
    """Run both stages once on a few lines, untimed, with these settings and this kernel:
    libraries set things up on first use (pyarrow's conversions took 0.4 s once, a compiled
    kernel compiles), and the first pool of a process starts the fork server, which would
    otherwise be charged to the first timed run."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "warm_up.txt"
        path.write_bytes(b"1\n-2\n1,234\n12.0\nx\n\n")
        summary = CleaningSummary()
        batches = [pair[0] for pair in clean_file(path, settings, 4, summary, kernel=kernel)]
        summary = TransformSummary()
        for _ in transform_cleaned(batches, len(batches), settings, summary, kernel=kernel):
            pass
