"""The sweep's inputs, made once per size before any timing, and one timed run of a stage on
them: a numbers file for the cleaning, clean values in the pipeline's batches for the transform."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from data_pipeline.measure.labels import CLEANING, PARALLEL, SERIAL
from data_pipeline.measure.sweeps.series import THREADS
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import Kernel
from data_pipeline.numbers.stages.chunk_sizes import (
    DEFAULT_CLEANING_CHUNK_BYTES,
    default_transform_chunk_values,
)
from data_pipeline.numbers.stages.cleaning import clean_file
from data_pipeline.numbers.stages.summaries import CleaningSummary, TransformSummary
from data_pipeline.numbers.stages.transform import transform_cleaned
from data_pipeline.parallel.settings import PoolSettings

# Small inputs get chunks small enough for every worker to get some (at least this many
# chunks per worker); large ones the pipeline's own chunk sizes.
CHUNKS_PER_WORKER = 4


@dataclass(frozen=True)
class SweepRunDetail:
    """What one sweep run tells besides its time: its chunks, its pool's start-up, what it ran
    and why."""

    chunks: int
    startup_seconds: float
    choice: str
    reason: str = ""


class SweepInputs:
    """The sweep's inputs, made once per size: a numbers file of ``size`` lines for the
    cleaning; for the transform, ``size`` clean values in the pipeline's batches."""

    def __init__(self, directory: Path, stage: str, kernel: Kernel):
        self.directory, self.stage, self.kernel = directory, stage, kernel
        self.unit = "lines" if stage == CLEANING else "values"
        self._tables: dict[int, pa.Table] = {}

    def numbers_file(self, lines: int) -> Path:
        path = self.directory / f"numbers_{lines}.txt"
        if not path.exists():
            write_numbers_file(path, count=lines, seed=lines, dirty_fraction=0.02)
        return path

    def values(self, count: int) -> pa.Table:
        """Clean values as the transform sees them, made once and kept in memory, so no
        timed run pays for reading them."""
        if count not in self._tables:
            source = self.numbers_file(count + count // 10 + 10)  # some to spare
            summary = CleaningSummary()
            batches = [pair[0] for pair in clean_file(source, PoolSettings(1), 1 << 20, summary)]
            self._tables[count] = pa.Table.from_batches(batches).slice(0, count)
        return self._tables[count]

    def prepare(self, size: int) -> None:
        if self.stage == CLEANING:
            self.numbers_file(size)
        else:
            self.values(size)

    def runner(self, settings: PoolSettings, size: int, workers: int) -> Callable[[], Outcome]:
        return lambda: self.run(settings, size, workers)

    def run(self, settings: PoolSettings, size: int, workers: int) -> Outcome:
        if self.stage == CLEANING:
            path = self.numbers_file(size)
            chunk = min(DEFAULT_CLEANING_CHUNK_BYTES, _share(path.stat().st_size, workers))
            summary = CleaningSummary()
            batches = [
                pair for pair in clean_file(path, settings, chunk, summary, kernel=self.kernel)
            ]
            output = (
                pa.Table.from_batches([pair[0] for pair in batches]),
                pa.Table.from_batches([pair[1] for pair in batches]),
            )
        else:
            table = self.values(size)
            chunk = min(default_transform_chunk_values(self.kernel), _share(size, workers))
            pieces = table.to_batches(max_chunksize=chunk)
            summary = TransformSummary()
            output = (
                pa.Table.from_batches(
                    list(
                        transform_cleaned(
                            pieces,
                            len(pieces),
                            settings,
                            summary,
                            kernel=self.kernel,
                            total_values=size,  # as the pipeline tells auto
                        )
                    )
                ),
            )
        decision = summary.decision
        choice = {"parallel": PARALLEL, THREADS: THREADS}.get(
            decision.choice if decision else SERIAL, SERIAL
        )
        startup = summary.pool.startup_seconds if summary.pool else 0.0
        reason = decision.reason if decision else ""
        return Outcome(output, SweepRunDetail(summary.chunks, startup, choice, reason))


def _share(total: int, workers: int) -> int:
    return max(1, math.ceil(total / (CHUNKS_PER_WORKER * workers)))
