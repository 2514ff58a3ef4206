"""The cleaning and transform steps as plain functions over Arrow data (no Dagster).

Workers run the pure functions of :mod:`data_pipeline.numbers.parsing` and
:mod:`data_pipeline.numbers.transforms`; this module plans their chunks, keeps the results in input
order and turns them into Arrow record batches that stream straight into Parquet.
"""

import itertools
import os
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.chunking import (
    ByteRange,
    byte_range_at,
    count_lines,
    plan_byte_ranges,
)
from data_pipeline.numbers.kernel_choice import PYTHON, Kernel
from data_pipeline.numbers.kernels.columns import ARROW_TYPES as TRANSFORMED_TYPES
from data_pipeline.numbers.parsing import CleanedChunk
from data_pipeline.numbers.storage import atomic_output
from data_pipeline.numbers.transforms import ValueChunk
from data_pipeline.parallel.decision import Decision
from data_pipeline.parallel.pool import PoolSettings
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import LONG_TASK_SECONDS, PoolRun
from data_pipeline.parallel.stats import PoolStats

# Measured on a 2-core machine (see benchmarks/): parsing costs ~2 µs a line and a task
# round trip ~0.2 ms, so 256 KiB (~35,000 lines, ~70 ms of work) keeps the per-chunk cost
# under 1 % while still giving a few chunks per worker for a 3 MB file to balance the load.
DEFAULT_CLEANING_CHUNK_BYTES = 256 * 1024
# The python kernel costs 20-23 µs a value of the default input (medians, 2 cores, shared):
# 2,000 values are ~45 ms of work per task, so the ~0.2 ms round trip and the pickling of
# 2,000 ints (16 kB) stay under 1 %, and a default input gives ~200 tasks, which keeps both
# workers busy until the end.
DEFAULT_TRANSFORM_CHUNK_VALUES = 2_000
# Compiled kernels: numba 0.75 µs a value, numpy 1.6 µs in chunks of 50,000 (4.9 µs in chunks
# of 2,000, about the ~0.3 ms a task's round trip costs). 50,000 values are 40-80 ms of work.
COMPILED_TRANSFORM_CHUNK_VALUES = 50_000
# Values are not all that cheap: a prime near 2**63 costs 50-60 ms in every kernel (trial
# division to 2**20 and a Miller-Rabin test, in the reference, to which the compiled kernels
# hand such values), 2,500 times a default value. So tasks are cut by what the values cost,
# once measured (see _CostSizedPieces): about this long each, never more values than a chunk.
# Long enough that a task's round trip is nothing; short enough that a small file of costly
# values spreads over every worker, and the last task does not keep one worker busy alone.
TARGET_TASK_SECONDS = 0.5
# Before anything is measured, the first tasks hold this many values, then twice that, and so
# on: 4 costly values are ~0.2 s, which `mode: auto` spends in the step process as its sample.
FIRST_TASK_VALUES = 4


# On a Dask cluster a task costs far more: a ~5 ms round trip, and the scheduler's own work,
# which on one machine shares the CPUs with the workers (measured here: 196 transform tasks of
# 2,000 values took 2.8 s of the step process's CPU on a LocalCluster against 0.9 s on the
# local pool, and ran 1.35x slower; tasks of 10,000 values took 1.2 s and came within 10 %
# of the local pool). So Dask's tasks are this many times larger: ~0.25 s of work each.
DASK_CHUNK_SCALE = 5


def default_transform_chunk_values(kernel: Kernel, backend: str = "local") -> int:
    """Values per transform task when the configuration does not say: per kernel and
    backend."""
    values = (
        DEFAULT_TRANSFORM_CHUNK_VALUES
        if kernel.name == "python"
        else COMPILED_TRANSFORM_CHUNK_VALUES
    )
    return values * DASK_CHUNK_SCALE if backend == "dask" else values


def default_cleaning_chunk_bytes(backend: str = "local") -> int:
    """Bytes per cleaning task when the configuration does not say: per backend."""
    scale = DASK_CHUNK_SCALE if backend == "dask" else 1
    return DEFAULT_CLEANING_CHUNK_BYTES * scale


# With `mode: auto`, the step first cleans (transforms) a few tasks itself, timed, until the
# ones after the first took ~10 ms (parallel.pool_run): cleaning plans start with ranges this
# small, doubling up to the chunk size, so the sample costs ~5 ms of the reference parser; the
# transform's first tasks are FIRST_TASK_VALUES, then sized by their cost. Every sample's
# output is used, not thrown away.
DECISION_SAMPLE_BYTES = 16 * 1024
CLEANED_SCHEMA = pa.schema([("line_number", pa.int64()), ("value", pa.int64())])
REJECTED_SCHEMA = pa.schema(
    [("line_number", pa.int64()), ("raw", pa.string()), ("reason", pa.string())]
)
TRANSFORMED_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("value", pa.int64()),
        # The square of an int64 needs up to 127 bits: a 38-digit decimal holds it exactly.
        *TRANSFORMED_TYPES.items(),
    ]
)


@dataclass
class _StepSummary:
    """What every pooled step keeps: its chunks, the run (decision and pool statistics) and
    the SHA-256 of each file written, by digest_key (storage.py)."""

    chunks: int = 0
    run: PoolRun | None = None
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> PoolStats | None:
        return self.run.stats if self.run else None

    @property
    def decision(self) -> Decision | None:
        return self.run.decision if self.run else None


@dataclass
class CleaningSummary(_StepSummary):
    """Counts of one cleaning run; filled in while the batches stream past."""

    lines: int = 0
    accepted: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    # The first line (from 1) rejected for each reason, to show the user where to look.
    first_line_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def note_rejections(self, chunk: CleanedChunk, first_line_number: int) -> None:
        """Count a chunk's rejected lines by reason, keeping the first line of each."""
        self.rejected_by_reason.update(chunk.rejected_reasons)
        for position, reason in zip(chunk.rejected_positions, chunk.rejected_reasons, strict=True):
            self.first_line_by_reason.setdefault(reason, first_line_number + position)


@dataclass
class TransformSummary(_StepSummary):
    rows: int = 0


def clean_file(
    path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    summary: CleaningSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    label: str = "cleaning",
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Parse every line of ``path`` on a pool with the kernel's cleaning function; yield
    (accepted, rejected) batches in file order. With ``mode: auto``, the first ranges are
    small and cleaned in this process, timed, and decide whether the rest goes to a pool.

    Line numbers count from 1 and include blank and rejected lines, so accepted + rejected
    always equals the lines in the file.
    """
    first_bytes = DECISION_SAMPLE_BYTES if pool_settings.mode == "auto" else chunk_bytes
    byte_ranges = _growing_then_even(path, chunk_bytes, first_bytes)
    summary.chunks = len(byte_ranges)

    def describe(byte_range: ByteRange) -> str:
        # Only on failure: counting the lines before the chunk reads the file up to it.
        first_line = count_lines(path, byte_range.start) + 1
        return f"{byte_range}, from line {first_line}"

    summary.run = pool_settings.map(
        kernel.clean,
        byte_ranges,
        log=log,
        label=label,
        unit="bytes",
        progress_unit="lines",
        describe=describe,
        size_of=_byte_count,
        count_items=_line_count,
        preload_modules=kernel.worker_modules,
    )
    for chunk in summary.run:
        first_line_number = summary.lines + 1
        summary.lines += chunk.line_count
        summary.accepted += len(chunk.accepted_values)
        summary.note_rejections(chunk, first_line_number)
        yield _cleaned_batches(chunk, first_line_number)


def _growing_then_even(path: Path, chunk_bytes: int, first_bytes: int) -> list[ByteRange]:
    """Ranges of ``first_bytes``, twice that, and so on up to ``chunk_bytes``, then the rest
    of the file in ranges of ``chunk_bytes``."""
    file_size = os.path.getsize(path)
    ranges: list[ByteRange] = []
    start, size = 0, min(first_bytes, chunk_bytes)
    while size < chunk_bytes and start < file_size:
        ranges.append(byte_range_at(path, len(ranges), start, size))
        start, size = ranges[-1].end, 2 * size
    return ranges + plan_byte_ranges(path, chunk_bytes, start=start, first_index=len(ranges))


def _byte_count(byte_range: ByteRange) -> int:
    return byte_range.end - byte_range.start


def _line_count(chunk: CleanedChunk) -> int:
    return chunk.line_count


def _row_count(columns: dict[str, list]) -> int:
    return len(columns["square"])


def _cleaned_batches(
    chunk: CleanedChunk, first_line_number: int
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    accepted = pa.record_batch(
        [
            _line_numbers(chunk.accepted_positions, first_line_number),
            pa.array(chunk.accepted_values, pa.int64()),
        ],
        schema=CLEANED_SCHEMA,
    )
    rejected = pa.record_batch(
        [
            _line_numbers(chunk.rejected_positions, first_line_number),
            pa.array(chunk.rejected_raw, pa.string()),
            pa.array(chunk.rejected_reasons, pa.string()),
        ],
        schema=REJECTED_SCHEMA,
    )
    return accepted, rejected


def _line_numbers(positions: array, first_line_number: int) -> pa.Array:
    return pa.array([first_line_number + position for position in positions], pa.int64())


def transform_cleaned(
    cleaned: Iterable[pa.RecordBatch],
    chunk_count: int,
    pool_settings: PoolSettings,
    summary: TransformSummary,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    total_values: int | None = None,
    label: str = "transform",
    *,
    long_chunk_seconds: float = LONG_TASK_SECONDS,
) -> Iterator[pa.RecordBatch]:
    """Transform cleaned (line_number, value) batches on a pool with the kernel's transform;
    yield the transformed batches in the same order. Tasks are pieces of the batches, cut by
    what the values cost (see :class:`_CostSizedPieces`), so costly values spread over every
    worker; with ``mode: auto`` the first ones run in this process, timed, and decide for the
    rest (``total_values`` sharpens the prediction; without it, every batch is taken to be as
    long as the first). A chunk running ``long_chunk_seconds`` is named in the log."""
    cleaned = (batch for batch in cleaned if batch.num_rows)
    first = next(cleaned, None)
    batches = () if first is None else itertools.chain([first], cleaned)
    batch_values = first.num_rows if first is not None else 0
    total_values = total_values or chunk_count * batch_values
    # On Dask a task costs ~5 ms of scheduling: its first tasks are whole chunks.
    first_values = None if pool_settings.backend == "dask" else FIRST_TASK_VALUES
    pieces = _CostSizedPieces(first_values, batch_values, lambda: summary.run.seconds_per_unit())
    waiting: deque[pa.RecordBatch] = deque()

    def tasks() -> Iterator[ValueChunk]:
        values_cut = 0
        for index, batch in enumerate(pieces.cut(batches)):
            values_cut += batch.num_rows
            summary.run.expect_tasks(index + 1 + pieces.count_for(total_values - values_cut))
            line_numbers = batch.column("line_number")
            waiting.append(batch)
            yield ValueChunk(
                index=index,
                first_line_number=line_numbers[0].as_py(),
                last_line_number=line_numbers[-1].as_py(),
                values=array("q", batch.column("value").to_pylist()),
            )

    summary.run = pool_settings.map(
        kernel.transform,
        tasks(),
        log=log,
        label=label,
        unit="values",
        describe=str,
        size_of=_value_count,
        count_items=_row_count,
        total_size=total_values,
        total_tasks=pieces.count_for(total_values),
        preload_modules=kernel.worker_modules,
        long_task_seconds=long_chunk_seconds,
    )
    for columns in summary.run:
        # Results come back in task order, so the oldest waiting batch is their input.
        batch = _transformed_batch(waiting.popleft(), columns)
        summary.rows += batch.num_rows
        summary.chunks += 1
        yield batch


class _CostSizedPieces:
    """Batches cut into the transform's tasks. Until a task has finished, tasks hold
    ``first_values``, then twice that, and so on (whole batches if None); then as many values
    as take TARGET_TASK_SECONDS at the cost per value ``seconds_per_value()`` measured last.
    A task never holds more than its batch (a chunk), nor fewer than one value, so cheap
    values go in whole chunks, as planned, and costly ones in pieces of a few."""

    def __init__(
        self,
        first_values: int | None,
        batch_values: int,
        seconds_per_value: Callable[[], float | None],
    ):
        self._values = first_values
        self._growing = first_values is not None
        self._batch_values = max(1, batch_values)
        self._seconds_per_value = seconds_per_value

    def cut(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            done = 0
            while done < batch.num_rows:
                piece = batch.slice(done, self._next_values(batch.num_rows - done))
                done += piece.num_rows
                yield piece

    def _next_values(self, rows_left: int) -> int:
        seconds = self._seconds_per_value()
        if seconds is not None:
            self._growing = False
            self._values = max(1, int(TARGET_TASK_SECONDS / seconds)) if seconds > 0 else None
        values = rows_left if self._values is None else min(self._values, rows_left)
        if self._growing:
            self._values = 2 * self._values
        return values

    def count_for(self, values: int) -> int:
        """The tasks ``values`` more would make, if tasks keep being cut as now."""
        whole_batches = -(-values // self._batch_values)
        if self._values is None or not self._growing:
            size = self._values or self._batch_values
            return max(whole_batches, -(-values // size))
        count, size = 0, self._values
        while values > 0:  # growing: a few dozen turns at most
            values, size, count = values - min(size, self._batch_values), 2 * size, count + 1
        return count


def _value_count(task: ValueChunk) -> int:
    return len(task.values)


def _transformed_batch(cleaned: pa.RecordBatch, columns: dict[str, Any]) -> pa.RecordBatch:
    """The batch of one chunk: its line numbers and values, and the kernel's columns, given
    as lists (the reference) or as Arrow arrays already of the output's types."""
    arrays = [cleaned.column("line_number"), cleaned.column("value")]
    for name in TRANSFORMED_SCHEMA.names[2:]:
        column, wanted = columns[name], TRANSFORMED_SCHEMA.field(name).type
        arrays.append(column if isinstance(column, pa.Array) else pa.array(column, wanted))
    return pa.record_batch(arrays, schema=TRANSFORMED_SCHEMA)


def clean_to_parquet(
    source: Path,
    cleaned_path: Path,
    rejected_path: Path,
    pool_settings: PoolSettings,
    chunk_bytes: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
    accept: Callable[[CleaningSummary], None] | None = None,
) -> CleaningSummary:
    """Clean ``source`` into two Parquet files, streamed chunk by chunk; each appears
    complete or not at all (:func:`atomic_output`). ``accept`` may refuse the result (raise)
    before either file is in place."""
    summary = CleaningSummary()
    with (
        atomic_output(cleaned_path, summary.digests) as cleaned_temporary,
        atomic_output(rejected_path, summary.digests) as rejected_temporary,
        ParquetOutput(cleaned_temporary, CLEANED_SCHEMA) as cleaned_writer,
        ParquetOutput(rejected_temporary, REJECTED_SCHEMA) as rejected_writer,
    ):
        for accepted, rejected in clean_file(
            source, pool_settings, chunk_bytes, summary, log, kernel
        ):
            cleaned_writer.write(accepted)
            rejected_writer.write(rejected)
        if accept is not None:
            accept(summary)
    return summary


def transform_to_parquet(
    cleaned_path: Path,
    transformed_path: Path,
    pool_settings: PoolSettings,
    chunk_values: int,
    log: Any = pool_logger,
    kernel: Kernel = PYTHON,
) -> TransformSummary:
    """Transform the cleaned values into a Parquet file, streamed chunk by chunk."""
    parquet = pq.ParquetFile(cleaned_path)
    chunk_count = -(-parquet.metadata.num_rows // chunk_values)
    summary = TransformSummary()
    batches = parquet.iter_batches(batch_size=chunk_values)
    with (
        atomic_output(transformed_path, summary.digests) as temporary,
        ParquetOutput(temporary, TRANSFORMED_SCHEMA) as writer,
    ):
        for batch in transform_cleaned(
            batches, chunk_count, pool_settings, summary, log, kernel, parquet.metadata.num_rows
        ):
            writer.write(batch)
    return summary


class ParquetOutput:
    """A Parquet file written batch by batch in row groups of exactly ROW_GROUP_ROWS rows (the
    last one fewer; one per chunk would make thousands of tiny row groups on a large input),
    zstd-compressed, with increasing line numbers delta-encoded: about a quarter of pyarrow's
    default size. The same rows give the same bytes whatever batches they came in, so outputs
    of runs with other chunk sizes, or on another backend, compare by their SHA-256."""

    ROW_GROUP_ROWS = 1 << 16

    def __init__(self, path: Path, schema: pa.Schema):
        self._schema = schema
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            use_dictionary=[name for name in schema.names if name != "line_number"],
            column_encoding={"line_number": "DELTA_BINARY_PACKED"},
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.ROW_GROUP_ROWS:
            pending = pa.Table.from_batches(self._pending, self._schema)
            self._write_group(pending.slice(0, self.ROW_GROUP_ROWS))
            rest = pending.slice(self.ROW_GROUP_ROWS)
            self._pending, self._pending_rows = rest.to_batches(), rest.num_rows

    def _write_group(self, rows: pa.Table) -> None:
        # One contiguous chunk per column: how the rows were batched leaves no trace.
        self._writer.write_table(rows.combine_chunks(), row_group_size=self.ROW_GROUP_ROWS)

    def _flush(self) -> None:
        if self._pending_rows:
            self._write_group(pa.Table.from_batches(self._pending, self._schema))
        self._pending, self._pending_rows = [], 0

    def __enter__(self) -> "ParquetOutput":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._writer.close()
