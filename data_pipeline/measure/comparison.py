"""Run cleaning and the transform serially and on a pool, prove the results identical, and
explain where the time went. No Dagster here: the report asset and the benchmark share it."""

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.pipeline import (
    CLEANED_SCHEMA,
    CleaningSummary,
    ParquetOutput,
    TransformSummary,
    clean_file,
    transform_cleaned,
)
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.pool import PoolSettings
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.stats import PoolStats

# Below this speedup the pool is not worth its processes.
_PAYS_OFF_SPEEDUP = 1.2
# Worth a sentence when workers need this much more CPU time than one process.
_NOTABLE_CONTENTION = 1.1
# Worth a sentence when workers wait this share of their time for a CPU.
_NOTABLE_CPU_WAIT = 0.1


class OutputMismatchError(AssertionError):
    """The serial and parallel runs disagreed: a correctness bug, never a timing question."""


@dataclass(frozen=True)
class StageComparison:
    """One step (cleaning or transform) run both ways on the same input."""

    name: str
    items: int
    serial_seconds: float
    parallel_seconds: float
    pool: PoolStats
    serial_cpu_seconds: float
    serial_digest: str
    parallel_digest: str

    @property
    def speedup(self) -> float:
        return self.serial_seconds / self.parallel_seconds if self.parallel_seconds else 0.0

    @property
    def efficiency(self) -> float:
        return self.speedup / self.pool.workers

    @property
    def serial_microseconds_per_item(self) -> float:
        return 1e6 * self.serial_seconds / max(1, self.items)

    @property
    def cpu_contention(self) -> float:
        """CPU time of all workers over the serial run's CPU time for the same work: above 1,
        each CPU got less done per CPU-second while the others were busy (shared physical
        cores, caches, memory bandwidth, other virtual machines on the host), a cost no pool
        design removes."""
        return self.pool.cpu_seconds / self.serial_cpu_seconds if self.serial_cpu_seconds else 0.0

    @property
    def cpu_wait_share(self) -> float:
        """Share of the workers' time in tasks spent waiting for a CPU that another process
        held: too many workers for the CPUs, or other load on the machine."""
        busy = self.pool.busy_seconds
        return max(0.0, 1 - self.pool.cpu_seconds / busy) if busy else 0.0


@dataclass(frozen=True)
class Comparison:
    cleaning: StageComparison
    transform: StageComparison
    cpus_available: int

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
        return self.serial_seconds / self.parallel_seconds if self.parallel_seconds else 0.0

    @property
    def workers(self) -> int:
        return max(stage.pool.workers for stage in self.stages)

    @property
    def efficiency(self) -> float:
        return self.speedup / self.workers

    def total(self, attribute: str) -> float:
        """Sum of one :class:`PoolStats` figure over both parallel runs."""
        return sum(getattr(stage.pool, attribute) for stage in self.stages)


def compare_serial_and_parallel(
    numbers_path: Path,
    pool_settings: PoolSettings,
    cleaning_chunk_bytes: int,
    transform_chunk_values: int,
    log: Any = pool_logger,
) -> Comparison:
    """Clean and transform ``numbers_path`` twice, serially (same worker functions, this
    process, no pool) and on a pool, with identical chunks. Raises
    :class:`OutputMismatchError` if the two disagree in any value or in order.

    Outputs stream through SHA-256 digests (and the cleaned values through a temporary
    Parquet file beside the input, the transform's input), so memory does not grow with the
    input."""
    serial = PoolSettings(workers=1)
    _warm_up()
    with tempfile.TemporaryDirectory(dir=numbers_path.parent, prefix=".comparison-") as scratch:
        cleaned_paths = {run: Path(scratch) / f"cleaned-{run}.parquet" for run in RUNS}

        def run_cleaning(run: str, settings: PoolSettings) -> StreamedRun:
            summary, digest = CleaningSummary(), StreamDigest()
            started = time.perf_counter()
            with ParquetOutput(cleaned_paths[run], CLEANED_SCHEMA) as cleaned:
                for accepted, rejected in clean_file(
                    numbers_path, settings, cleaning_chunk_bytes, summary, log
                ):
                    cleaned.write(accepted)
                    digest.update(accepted, rejected)
            seconds = time.perf_counter() - started
            return StreamedRun(seconds, digest, summary.pool, summary.lines)

        def run_transform(settings: PoolSettings) -> StreamedRun:
            summary, digest = TransformSummary(), StreamDigest()
            cleaned = pq.ParquetFile(cleaned_paths["serial"])
            chunk_count = -(-cleaned.metadata.num_rows // transform_chunk_values)
            batches = cleaned.iter_batches(batch_size=transform_chunk_values)
            started = time.perf_counter()
            for batch in transform_cleaned(batches, chunk_count, settings, summary, log):
                digest.update(batch)
            seconds = time.perf_counter() - started
            return StreamedRun(seconds, digest, summary.pool, summary.rows)

        cleaning = _stage(
            "cleaning", run_cleaning("serial", serial), run_cleaning("parallel", pool_settings)
        )
        transform = _stage("transform", run_transform(serial), run_transform(pool_settings))
    return Comparison(cleaning=cleaning, transform=transform, cpus_available=available_cpus())


RUNS = ("serial", "parallel")


class StreamDigest:
    """SHA-256 of record batches as they pass, in Arrow's IPC format, and their rows."""

    def __init__(self):
        self._sha256 = hashlib.sha256()
        self.rows = 0

    def update(self, *batches: pa.RecordBatch) -> None:
        for batch in batches:
            self._sha256.update(batch.serialize())
            self.rows += batch.num_rows

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


@dataclass(frozen=True)
class StreamedRun:
    seconds: float
    digest: StreamDigest
    pool: PoolStats
    items: int


def _stage(name: str, serial: StreamedRun, parallel: StreamedRun) -> StageComparison:
    """Both runs of one stage, after proving their outputs identical."""
    if serial.digest.hexdigest() != parallel.digest.hexdigest():
        raise OutputMismatchError(
            f"{name}: the serial and parallel outputs differ ({serial.digest.rows} rows "
            f"serially, {parallel.digest.rows} in parallel; digests "
            f"{serial.digest.hexdigest()[:12]} vs {parallel.digest.hexdigest()[:12]})"
        )
    return StageComparison(
        name=name,
        items=serial.items,
        serial_seconds=serial.seconds,
        parallel_seconds=parallel.seconds,
        pool=parallel.pool,
        serial_cpu_seconds=serial.pool.cpu_seconds,
        serial_digest=serial.digest.hexdigest(),
        parallel_digest=parallel.digest.hexdigest(),
    )


def _warm_up() -> None:
    """Run both stages once on a few lines, untimed: libraries set some things up on first
    use (pyarrow's conversions took 0.4 s once), which would otherwise be charged to
    whichever run goes first."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "warm_up.txt"
        path.write_bytes(b"1\n-2\n1,234\n12.0\nx\n\n")
        batches = [pair[0] for pair in clean_file(path, PoolSettings(1), 1024, CleaningSummary())]
        for _ in transform_cleaned(batches, len(batches), PoolSettings(1), TransformSummary()):
            pass


def verdict(comparison: Comparison) -> str:
    """One sentence: did parallelism pay off, and why."""
    transform, cleaning = comparison.transform, comparison.cleaning
    startup = comparison.total("startup_seconds")
    if comparison.speedup >= _PAYS_OFF_SPEEDUP:
        sentence = (
            f"Parallelism paid off: {comparison.speedup:.2f}x faster on {comparison.workers} "
            f"workers ({comparison.efficiency:.0%} efficiency), because the transform costs "
            f"{transform.serial_microseconds_per_item:.1f} µs per value, far more than the "
            f"{startup:.2f} s of pool start-up and the pickling of each chunk."
        )
    elif comparison.workers == 1:
        sentence = (
            "Parallelism could not pay off: only one worker ran (one CPU available, workers=1, "
            "or a single chunk), so the 'parallel' run was serial too."
        )
    else:
        sentence = (
            f"Parallelism did not pay off: {comparison.speedup:.2f}x on {comparison.workers} "
            f"workers. The input is too small for the work per item "
            f"({transform.serial_microseconds_per_item:.1f} µs per value) to outweigh "
            f"{startup:.2f} s of pool start-up and the cost of moving chunks between processes."
        )
    if transform.cpu_contention > _NOTABLE_CONTENTION and comparison.workers > 1:
        sentence += (
            f" The workers needed {transform.cpu_contention - 1:.0%} more CPU time for the "
            "transform than one process alone: the CPUs slow each other down here (shared "
            "physical cores or caches, or other virtual machines on the host), which caps "
            "the speedup below the worker count."
        )
    if transform.cpu_wait_share > _NOTABLE_CPU_WAIT and comparison.workers > 1:
        sentence += (
            f" The workers waited for a CPU {transform.cpu_wait_share:.0%} of the time: other "
            "processes were competing for the CPUs."
        )
    if cleaning.speedup < _PAYS_OFF_SPEEDUP <= transform.speedup:
        sentence += (
            f" Cleaning alone gained only {cleaning.speedup:.2f}x: parsing a line costs "
            f"{cleaning.serial_microseconds_per_item:.1f} µs, too little to beat the overheads."
        )
    return sentence


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a Markdown table a person reads at a glance."""
    rows = [
        "| stage | items | serial s | parallel s | speedup | efficiency | pool start s "
        "| compute s | worker idle s | shutdown s | parent collect s | CPU contention "
        "| waiting for CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in comparison.stages:
        pool = stage.pool
        rows.append(
            f"| {stage.name} | {stage.items:,} | {stage.serial_seconds:.2f} "
            f"| {stage.parallel_seconds:.2f} | {stage.speedup:.2f}x | {stage.efficiency:.0%} "
            f"| {pool.startup_seconds:.2f} | {pool.compute_seconds:.2f} "
            f"| {pool.idle_seconds:.2f} | {pool.shutdown_seconds:.2f} "
            f"| {pool.collect_seconds:.2f} | {stage.cpu_contention:.2f}x "
            f"| {stage.cpu_wait_share:.0%} |"
        )
    rows.append(
        f"| **total** | | **{comparison.serial_seconds:.2f}** "
        f"| **{comparison.parallel_seconds:.2f}** | **{comparison.speedup:.2f}x** "
        f"| **{comparison.efficiency:.0%}** | {comparison.total('startup_seconds'):.2f} "
        f"| {comparison.total('compute_seconds'):.2f} | {comparison.total('idle_seconds'):.2f} "
        f"| {comparison.total('shutdown_seconds'):.2f} "
        f"| {comparison.total('collect_seconds'):.2f} | | |"
    )
    notes = (
        "Parallel time = pool start + compute + worker idle + shutdown (the parent's "
        "collecting overlaps the compute). CPU contention above 1.00x means the workers "
        "together needed more CPU time than one process alone for the same work; waiting "
        "for CPU is the share of their time other processes held the CPUs."
    )
    return "\n".join(rows) + f"\n\n{verdict(comparison)}\n\n{notes}\n"
